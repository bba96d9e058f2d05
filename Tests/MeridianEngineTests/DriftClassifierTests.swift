import Foundation
import Testing
import MeridianBasics
@testable import MeridianPlanning

/// Small tests: one per drift kind the classifier decides, on values only.
@Suite struct DriftClassifierTests {
    static let config = Data("port: 8081\n".utf8)
    static let bundle = Data("{\"region\":\"eu\"}".utf8)
    static let root = "/srv/meridian"

    static let applied = HostManifest(
        revision: "7", appliedAt: "2026-11-20T09:00:00Z", appliedBy: "ci@runner",
        files: [
            "config/inference.yaml": ManifestFile(sha256: SHA256.hex(config), maskedSHA256: nil, mode: 0o644, component: "inference"),
            "config/secrets.env": ManifestFile(sha256: nil, maskedSHA256: ManagedFileContent.sensitive(masked: "masked", references: []).fingerprint, mode: 0o600, component: "inference"),
            "governance/bundle.json": ManifestFile(sha256: SHA256.hex(bundle), maskedSHA256: nil, mode: 0o644, component: nil),
        ],
        releases: [ManifestRelease(component: "inference", version: "1.2.0", sha256: "ab")],
        components: ["inference": ManifestComponent(activeSlot: .blue, blue: ManifestSlot(version: "1.2.0", address: nil, port: 18101, weight: 100),
                                                    green: ManifestSlot(version: nil, address: nil, port: 18102, weight: 0))]
    )

    /// The observation of a host exactly as applied.
    static var clean: ObservedHostState {
        ObservedHostState(
            manifest: .present(applied, sha256: "m"),
            files: [
                "config/inference.yaml": .regular(sha256: SHA256.hex(config), mode: 0o644, size: config.count),
                "config/secrets.env": .regular(sha256: SHA256.hex("real secret"), mode: 0o600, size: 11),
                "governance/bundle.json": .regular(sha256: SHA256.hex(bundle), mode: 0o644, size: bundle.count),
            ],
            releases: [ObservedRelease(component: "inference", version: "1.2.0")],
            slots: [ObservedSlotLink(component: "inference", slot: .blue, target: "\(root)/releases/inference/1.2.0"),
                    ObservedSlotLink(component: "inference", slot: .green, target: nil)],
            processes: [ObservedProcess(component: "inference", slot: .blue, pid: 4242, alive: true)]
        )
    }

    static func classify(_ observed: ObservedHostState, lease: Bool = false, now: Int = 1_000, health: [ComponentHealth] = [],
                         source: AppliedManifestSource = .stateStore) -> [DriftFinding] {
        DriftClassifier.classify(HostDriftEvidence(region: "eu", host: "h1", applied: applied, appliedSource: source, observed: observed,
                                                   hostNow: now, regionLeaseHeld: lease, health: health))
    }

    static func kinds(_ findings: [DriftFinding]) -> [DriftKind] { findings.map(\.kind) }

    @Test func aHostAsAppliedHasNoFindings() {
        #expect(Self.classify(Self.clean).isEmpty)
        let healthy = ComponentHealth(component: "inference", slot: .blue, address: "127.0.3.4", port: 18101, path: "/healthz", outcome: .healthy)
        #expect(Self.classify(Self.clean, health: [healthy]).isEmpty)
    }

    @Test func modifiedAndMissingFiles() {
        var observed = Self.clean
        observed.files["config/inference.yaml"] = .regular(sha256: SHA256.hex("port: 9999\n"), mode: 0o644, size: 11)
        #expect(Self.kinds(Self.classify(observed)) == [.managedFileModified])
        observed.files["config/inference.yaml"] = .regular(sha256: SHA256.hex(Self.config), mode: 0o666, size: 11)
        #expect(Self.classify(observed).first?.detail == "mode expected 644, found 666")
        observed.files["config/inference.yaml"] = .missing
        let findings = Self.classify(observed)
        #expect(Self.kinds(findings) == [.managedFileMissing])
        #expect(findings.first?.subject == "config/inference.yaml")
        observed.files["config/inference.yaml"] = .notRegular
        #expect(Self.kinds(Self.classify(observed)) == [.managedFileModified])
    }

    @Test func sensitiveFilesAreJudgedByPresenceAndModeOnly() {
        var observed = Self.clean
        observed.files["config/secrets.env"] = .regular(sha256: SHA256.hex("another secret"), mode: 0o600, size: 14)
        #expect(Self.classify(observed).isEmpty)
        observed.files["config/secrets.env"] = .regular(sha256: SHA256.hex("another secret"), mode: 0o644, size: 14)
        #expect(Self.kinds(Self.classify(observed)) == [.managedFileModified])
        observed.files["config/secrets.env"] = .missing
        #expect(Self.kinds(Self.classify(observed)) == [.managedFileMissing])
    }

    @Test func unmanagedFilesInManagedFolders() {
        var observed = Self.clean
        observed.unmanagedFiles = ["config/extra.conf"]
        let findings = Self.classify(observed)
        #expect(findings.map(\.kind) == [.unmanagedFile])
        #expect(findings.map(\.subject) == ["config/extra.conf"])
    }

    @Test func missingReleaseAndSwappedSlot() {
        var observed = Self.clean
        observed.releases = []
        #expect(Self.kinds(Self.classify(observed)) == [.releaseMismatch])
        observed = Self.clean
        observed.slots[0].target = "\(Self.root)/releases/inference/1.1.0"
        let findings = Self.classify(observed)
        #expect(Self.kinds(findings) == [.slotMismatch])
        #expect(findings.first?.subject == "slots/inference/blue")
        observed.slots[0].target = nil
        #expect(Self.kinds(Self.classify(observed)) == [.slotMismatch])
    }

    @Test func bundleHashDifferentOrMissing() {
        var observed = Self.clean
        observed.files["governance/bundle.json"] = .regular(sha256: SHA256.hex("{}"), mode: 0o644, size: 2)
        #expect(Self.kinds(Self.classify(observed)) == [.bundleMismatch])
        observed.files["governance/bundle.json"] = .missing
        #expect(Self.kinds(Self.classify(observed)) == [.bundleMismatch])
    }

    @Test func componentDownOrUnhealthy() {
        var observed = Self.clean
        observed.processes[0].alive = false
        #expect(Self.classify(observed).first?.detail == "pid 4242 in run/inference-blue.pid is not running")
        observed.processes = []
        #expect(Self.classify(observed).first?.detail == "no pid file run/inference-blue.pid")
        #expect(Self.kinds(Self.classify(observed)) == [.componentNotRunning])
        let sick = ComponentHealth(component: "inference", slot: .blue, address: "127.0.3.4", port: 18101, path: "/healthz", outcome: .unhealthy("HTTP 503 Service Unavailable"))
        let findings = Self.classify(Self.clean, health: [sick])
        #expect(Self.kinds(findings) == [.componentUnhealthy])
        #expect(findings.first?.detail == "GET 127.0.3.4:18101/healthz: HTTP 503 Service Unavailable")
    }

    @Test func lockLeftBehindWhenExpiredOrNoLease() {
        var observed = Self.clean
        observed.lock = RemoteLock(holder: "ops@laptop", runID: "9", pid: 1, startedAt: 100, expiresAt: 900)
        #expect(Self.kinds(Self.classify(observed, lease: true, now: 1_000)) == [.lockLeftBehind], "expired")
        #expect(Self.classify(observed, lease: true, now: 800).isEmpty, "a live run holds it")
        #expect(Self.kinds(Self.classify(observed, lease: false, now: 800)) == [.lockLeftBehind], "no run holds the lease")
    }

    @Test func hostManifestIsACrossCheck() {
        var observed = Self.clean
        var other = Self.applied
        other.revision = "8"
        observed.manifest = .present(other, sha256: "n")
        #expect(Self.kinds(Self.classify(observed)) == [.manifestMismatch])
        // When only the host's manifest is known, it is what is compared with.
        #expect(Self.classify(observed, source: .hostOnly).isEmpty)
        observed.manifest = .absent
        #expect(Self.kinds(Self.classify(observed)) == [.manifestMismatch])
    }

    @Test func neverAppliedHostHasNoDrift() {
        let evidence = HostDriftEvidence(region: "eu", host: "h1", applied: nil, appliedSource: nil, observed: ObservedHostState(unmanagedFiles: ["config/x"]),
                                         hostNow: nil, regionLeaseHeld: false)
        #expect(DriftClassifier.classify(evidence).isEmpty)
    }

    @Test func unreachableAndKeyChangedHosts() {
        #expect(DriftClassifier.unexamined(region: "eu", host: "h1", keyChanged: true, reason: "x").kind == .hostKeyChanged)
        #expect(DriftClassifier.unexamined(region: "eu", host: "h1", keyChanged: false, reason: "x").kind == .hostUnreachable)
    }

    @Test func pendingChangesAreNotDrift() {
        let desired = DesiredHostState(region: "eu", host: "h1", address: "127.0.0.1", root: Self.root, roles: ["inference"], files: [
            ManagedFile(path: "config/inference.yaml", content: .bytes(Data("port: 8082\n".utf8)), source: "regions/eu.yaml config[0]"),
            ManagedFile(path: "governance/bundle.json", content: .bytes(Self.bundle), source: "bundle"),
            ManagedFile(path: "config/new.yaml", content: .bytes(Data()), source: "regions/eu.yaml config[1]"),
            ManagedFile(path: "config/secrets.env", content: .sensitive(masked: "masked", references: []), source: "regions/eu.yaml config[2]"),
        ], releases: [], components: [])
        let pending = DriftClassifier.pendingChanges(desired: desired, desiredVersions: ["inference": "1.3.0"], applied: Self.applied)
        #expect(pending.map(\.subject) == ["config/inference.yaml", "config/new.yaml", "inference"])
        #expect(pending.last?.description == "version 1.2.0 → 1.3.0")
        #expect(DriftClassifier.pendingChanges(desired: desired, desiredVersions: [:], applied: nil).count == 1)
    }

    @Test func remediationTouchesOnlyNamedKindsAndOnlyAppliedContent() {
        var observed = Self.clean
        observed.files["config/inference.yaml"] = .missing
        observed.files["governance/bundle.json"] = .regular(sha256: SHA256.hex("{}"), mode: 0o644, size: 2)
        observed.lock = RemoteLock(holder: "ops", runID: "9", pid: 1, startedAt: 1, expiresAt: 2)
        let evidence = HostDriftEvidence(region: "eu", host: "h1", applied: Self.applied, appliedSource: .stateStore, observed: observed, hostNow: 1_000, regionLeaseHeld: false)
        let findings = DriftClassifier.classify(evidence)
        #expect(Set(Self.kinds(findings)) == [.managedFileMissing, .bundleMismatch, .lockLeftBehind])
        let desired = DesiredHostState(region: "eu", host: "h1", address: "127.0.0.1", root: Self.root, roles: [], files: [
            ManagedFile(path: "config/inference.yaml", content: .bytes(Self.config), source: "t"),
            ManagedFile(path: "governance/bundle.json", content: .bytes(Data("{\"changed\":1}".utf8)), source: "bundle"),
        ], releases: [], components: [])
        let remedies = DriftRemediationPlanner.plan(findings: findings, kinds: [.managedFileMissing, .bundleMismatch], evidence: ["eu/h1": evidence], desired: ["eu/h1": desired])
        #expect(remedies.count == 2, "the lock was not named")
        #expect(remedies.allSatisfy { if case .throughApply(_, let actions) = $0 { return actions.isEmpty } else { return false } })
        // The full plan also rewrites the bundle; the cut keeps only the applied file's write.
        let plan = Planner.plan(desired: [desired], observed: ["eu/h1": observed], basis: PlanBasis(fleetFiles: [:], gitCommit: nil))
        #expect(plan.hosts[0].actions.contains { $0.subject == "governance/bundle.json" })
        let (cut, decided) = DriftApplyFilter.filter(plan, remedies: remedies, applied: ["eu/h1": Self.applied], desired: ["eu/h1": desired])
        #expect(cut.hosts.map(\.id) == ["eu/h1"])
        #expect(cut.hosts[0].actions.map(\.subject) == ["config/inference.yaml"])
        #expect(decided.contains { if case .throughApply(let f, let actions) = $0 { return f.kind == .managedFileMissing && actions.count == 1 } else { return false } })
        // The bundle in git changed since the apply: restoring would apply a pending change, so it is not done.
        #expect(decided.contains { if case .notRemediated(let f, _) = $0 { return f.kind == .bundleMismatch } else { return false } })
        let lockOnly = DriftRemediationPlanner.plan(findings: findings, kinds: [.lockLeftBehind], evidence: ["eu/h1": evidence], desired: ["eu/h1": desired])
        #expect(lockOnly == [.removeStaleLock(finding: findings.first { $0.kind == .lockLeftBehind }!, root: Self.root, runID: "9", leaseFree: true)])
    }

    @Test func staleLockScriptQuotesItsValues() {
        let script = LockReleaseScript(root: "/srv/it's here", runID: "$(reboot)\n", condition: .stale(leaseFree: false)).script
        #expect(script.contains("root='/srv/it'\\''s here'"))
        #expect(script.contains("[ \"$run\" = '$(reboot) ' ]"))
        #expect(script.contains("ok=0"))
        #expect(LockReleaseScript.parse(Data("unlock released\n".utf8), host: "h") == .success(.released))
        #expect(LockReleaseScript.parse(Data("unlock kept x72756e3d390a\n".utf8), host: "h")
            == .success(.kept(RemoteLock(holder: "unknown", runID: "9", pid: nil, startedAt: nil, expiresAt: nil))))
    }
}
