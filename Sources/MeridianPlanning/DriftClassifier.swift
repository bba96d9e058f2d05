import Foundation
import MeridianBasics

/// Where the manifest a host is compared with came from. The state store's
/// record is authoritative (it is what meridian applied); the host's own
/// `state/manifest.json` is only a cross-check, and stands in when the store
/// has no record of the host (e.g. it was applied from another control plane).
public enum AppliedManifestSource: String, Sendable, Codable, Equatable {
    case stateStore = "state-store"
    case hostOnly = "host-manifest"
}

/// The health probe of one running component, as the engine saw it through
/// the host's SSH connection.
public struct ComponentHealth: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case healthy
        /// A non-2xx answer, a refused connection or a timeout, as a sentence.
        case unhealthy(String)
    }

    public var component: String
    public var slot: SlotName
    /// The service address asked, as the host reaches it.
    public var address: String
    public var port: Int
    public var path: String
    public var outcome: Outcome

    public init(component: String, slot: SlotName, address: String, port: Int, path: String, outcome: Outcome) {
        self.component = component
        self.slot = slot
        self.address = address
        self.port = port
        self.path = path
        self.outcome = outcome
    }
}

/// Everything known about one examined host, the input of classification.
/// Invariant: `applied` is the manifest of `appliedSource`, nil when neither
/// the store nor the host records an apply.
public struct HostDriftEvidence: Sendable, Equatable {
    public var region: String
    public var host: String
    public var applied: HostManifest?
    public var appliedSource: AppliedManifestSource?
    public var observed: ObservedHostState
    /// The host's clock (seconds since 1970) at the observation, for the lock's expiry.
    public var hostNow: Int?
    /// Whether some run holds an unexpired lease on the region in the state store.
    public var regionLeaseHeld: Bool
    public var health: [ComponentHealth]

    public init(region: String, host: String, applied: HostManifest?, appliedSource: AppliedManifestSource?, observed: ObservedHostState,
                hostNow: Int?, regionLeaseHeld: Bool, health: [ComponentHealth] = []) {
        self.region = region
        self.host = host
        self.applied = applied
        self.appliedSource = appliedSource
        self.observed = observed
        self.hostNow = hostNow
        self.regionLeaseHeld = regionLeaseHeld
        self.health = health
    }
}

/// Pure classification of drift: what meridian last applied against what a
/// host shows. Never looks at git; git's differences are `pendingChanges`.
public enum DriftClassifier {
    /// The observation a drift run needs for an applied manifest: every
    /// managed path, by its recorded hash, with no content fetched (drift
    /// shows hashes, not diffs), sensitive files by keyed hash under
    /// `fileKey`, and the managed folders listed.
    public static func observeScript(root: String, applied: HostManifest?, fileKey: HostFileKey? = nil) -> ObserveScript {
        let files = (applied?.files ?? [:]).keys.sorted().map { path in
            ObservedPathRequest(path: path, expectedSHA256: applied?.files[path]?.sha256, fetchContentIfDifferent: false,
                                sensitive: applied?.files[path]?.isSensitive ?? false)
        }
        return ObserveScript(root: root, files: files, fileKey: fileKey)
    }

    /// Every finding on one examined host, sorted.
    public static func classify(_ evidence: HostDriftEvidence) -> [DriftFinding] {
        var findings: [DriftFinding] = []
        func add(_ kind: DriftKind, _ subject: String, _ detail: String) {
            findings.append(DriftFinding(region: evidence.region, host: evidence.host, kind: kind, subject: subject, detail: detail))
        }
        let observed = evidence.observed

        if evidence.appliedSource == .stateStore, let applied = evidence.applied {
            switch observed.manifest {
            case .absent:
                add(.manifestMismatch, HostManifest.path, "missing; the state store records run \(applied.revision) applied at \(applied.appliedAt)")
            case .unreadable(_, let reason):
                add(.manifestMismatch, HostManifest.path, "cannot be read (\(reason)); the state store records run \(applied.revision)")
            case .present(let onHost, _):
                if onHost != applied {
                    add(.manifestMismatch, HostManifest.path, "records run \(onHost.revision) applied at \(onHost.appliedAt), the state store run \(applied.revision) applied at \(applied.appliedAt); another control plane may have applied here")
                }
            }
        }
        guard let applied = evidence.applied else {
            // Never applied: there is nothing to have drifted from, only pending changes.
            return findings.sorted()
        }

        for (path, entry) in applied.files.sorted(by: { $0.key < $1.key }) {
            // The bundle and the gateway configuration have kinds of their own.
            let own: DriftKind? = path == DesiredHostState.governanceBundlePath ? .bundleMismatch
                : HostStep.isGatewayFile(path) ? .gatewayConfigModified : nil
            switch observed.files[path] ?? .missing {
            case .missing:
                add(own ?? .managedFileMissing, path, "missing; applied with sha256 \(short(entry.sha256 ?? entry.maskedSHA256))")
            case .notRegular:
                add(own ?? .managedFileModified, path, "is not a regular file (a folder, link or device, or unreadable)")
            case .regular(let sha256, let mode, _):
                if let expected = entry.sha256, expected != sha256 {
                    add(own ?? .managedFileModified, path, "sha256 expected \(short(expected)), found \(short(sha256))")
                } else if mode != entry.mode {
                    add(own ?? .managedFileModified, path, "mode expected \(octal(entry.mode)), found \(octal(mode))")
                }
            case .sensitive(let keyed, let mode, _):
                // Compared by keyed hash only: neither content nor a plain hash is ever shown.
                if let expected = entry.keyedSHA256, let keyed, expected != keyed {
                    add(own ?? .managedFileModified, path, "sensitive: its content differs from what was applied (compared by keyed hash; content not shown)")
                } else if mode != entry.mode {
                    add(own ?? .managedFileModified, path, "mode expected \(octal(entry.mode)), found \(octal(mode))")
                }
            }
        }
        for path in observed.unmanagedFiles {
            add(.unmanagedFile, path, "not written by meridian, in a folder meridian manages")
        }

        let present = Set(observed.releases)
        for release in applied.releases where !present.contains(ObservedRelease(component: release.component, version: release.version)) {
            add(.releaseMismatch, "releases/\(release.component)/\(release.version)", "missing; the manifest lists \(release.component) \(release.version)")
        }

        for (name, component) in applied.components.sorted(by: { $0.key < $1.key }) {
            for slot in SlotName.allCases {
                guard let version = component.slot(slot).version else { continue }
                let target = observed.slotTarget(component: name, slot: slot)
                let found = Planner.versionFromLink(target, component: name)
                if found != version {
                    let what = target.map { "points at \($0)" } ?? "is missing"
                    add(.slotMismatch, "slots/\(name)/\(slot.rawValue)", "\(what); the manifest says \(name) \(version)")
                }
            }
            let active = component.activeSlot
            guard component.activeVersion != nil else { continue }
            let subject = "\(name) (\(active.rawValue))"
            if let process = observed.process(component: name, slot: active) {
                if !process.alive {
                    add(.componentNotRunning, subject, process.pid.map { "pid \($0) in run/\(name)-\(active.rawValue).pid is not running" }
                        ?? "run/\(name)-\(active.rawValue).pid holds no pid")
                } else if let health = evidence.health.first(where: { $0.component == name && $0.slot == active }),
                          case .unhealthy(let reason) = health.outcome {
                    add(.componentUnhealthy, subject, "GET \(HostPort(health.address, health.port))\(health.path): \(reason)")
                }
            } else {
                add(.componentNotRunning, subject, "no pid file run/\(name)-\(active.rawValue).pid")
            }
        }

        if let lock = observed.lock {
            let holder = "held by \(lock.holder) for run \(lock.runID)"
            if let expires = lock.expiresAt, let now = evidence.hostNow, now >= expires {
                add(.lockLeftBehind, "state/lock", "\(holder), expired \(now - expires) s ago")
            } else if !evidence.regionLeaseHeld {
                add(.lockLeftBehind, "state/lock", "\(holder), but no run holds region \(evidence.region)'s lease")
            }
        }
        return findings.sorted()
    }

    /// The finding for a host that could not be examined: its key changed, or
    /// it could not be reached.
    public static func unexamined(region: String, host: String, keyChanged: Bool, reason: String) -> DriftFinding {
        DriftFinding(region: region, host: host, kind: keyChanged ? .hostKeyChanged : .hostUnreachable, subject: host, detail: reason)
    }

    /// What the fleet repository asks for that differs from what was applied:
    /// files whose rendering changed, files added or dropped, component
    /// versions. `desiredVersions` maps component → version from the fleet
    /// (so pending versions show even before their artifacts are prepared).
    public static func pendingChanges(desired: DesiredHostState, desiredVersions: [String: String], applied: HostManifest?) -> [PendingChange] {
        var changes: [PendingChange] = []
        func add(_ subject: String, _ description: String) {
            changes.append(PendingChange(region: desired.region, host: desired.host, subject: subject, description: description))
        }
        guard let applied else {
            if !desired.files.isEmpty || !desiredVersions.isEmpty {
                add("host", "meridian has not applied to this host yet: \(desired.files.count) files, \(desiredVersions.count) components")
            }
            return changes
        }
        for file in desired.files {
            guard let entry = applied.files[file.path] else {
                add(file.path, "new file from \(file.source)")
                continue
            }
            let recorded = file.content.isSensitive ? entry.maskedSHA256 : entry.sha256
            if recorded != file.content.fingerprint {
                add(file.path, file.content.isSensitive ? "its template or secret references changed (sensitive)" : "its rendering changed (\(short(recorded)) → \(short(file.content.fingerprint)))")
            } else if entry.mode != file.mode {
                add(file.path, "mode \(octal(entry.mode)) → \(octal(file.mode))")
            }
        }
        let wanted = Set(desired.files.map(\.path))
        for path in applied.files.keys.sorted() where !wanted.contains(path) {
            add(path, "no longer in the fleet repository; apply will delete it")
        }
        for (component, version) in desiredVersions.sorted(by: { $0.key < $1.key }) {
            let current = applied.components[component]?.activeVersion
            if current != version { add(component, "version \(current ?? "none") → \(version)") }
        }
        for component in applied.components.keys.sorted() where desiredVersions[component] == nil {
            add(component, "no longer runs on this host")
        }
        return changes
    }

    static func short(_ hash: String?) -> String {
        guard let hash else { return "none" }
        return String(hash.prefix(12))
    }

    static func octal(_ mode: Int) -> String { String(mode, radix: 8) }
}
