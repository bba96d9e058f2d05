import Foundation
import Testing
import MeridianBasics
import MeridianModel
@testable import MeridianPlanning

@Suite struct PlannerTests {
    func host(_ plan: Plan, _ id: HostID) throws -> HostPlan {
        try #require(plan.hosts.first { $0.id == id })
    }

    func kinds(_ host: HostPlan) -> [String] {
        host.actions.map { "\($0.kind.rawValue) \($0.subject)" }
    }

    @Test func regionsAndHostsAreSorted() {
        let plan = PlanFixtures.plan
        #expect(plan.regions.map(\.name) == ["eu-west", "uk-south", "us-east"])
        #expect(plan.regions[0].hosts.map(\.host) == ["h1", "h2"])
        #expect(plan.formatVersion == 1)
        #expect(plan.basis == PlanFixtures.basis)
    }

    @Test func hostInSyncHasOneNoOp() throws {
        let plan = PlanFixtures.plan
        let h2 = try host(plan, "eu-west/h2")
        #expect(h2.actions == [PlanAction(id: "eu-west/h2:no_op:eu-west/h2", kind: .noOp, subject: "eu-west/h2")])
        #expect(!h2.hasChanges)
        #expect(h2.sensitiveFiles == ["config/knowledge-base/secrets.env"])
    }

    @Test func changedHostActionsAreInExecutionOrder() throws {
        let h1 = try host(PlanFixtures.plan, "eu-west/h1")
        #expect(kinds(h1) == [
            "install_release releases/inference/1.3.0",
            "update_file governance/bundle.json",
            "update_file config/knowledge-base/kb.conf",
            "update_file config/knowledge-base/secrets.env",
            "delete_file config/inference/legacy.yaml",
            "upgrade_component inference",
            "restart_component knowledge-base",
        ])
        let upgrade = h1.actions[5]
        #expect(upgrade.fromVersion == "1.2.0" && upgrade.toVersion == "1.3.0")
        #expect(upgrade.strategy == .recreate && upgrade.slot == .blue && upgrade.port == 8081)
        #expect(upgrade.reasons == ["configuration changed: config/inference/legacy.yaml"])
        #expect(h1.actions[6].reasons == ["configuration changed: config/knowledge-base/kb.conf, config/knowledge-base/secrets.env"])
        #expect(h1.actions.map(\.id).contains("eu-west/h1:update_file:governance/bundle.json"))
    }

    @Test func freshHostGetsEverything() throws {
        let h1 = try host(PlanFixtures.plan, "us-east/h1")
        #expect(kinds(h1) == [
            "install_release releases/inference/1.3.0",
            "install_release releases/knowledge-base/2.0.0",
            "create_file governance/bundle.json",
            "create_file config/inference/inference.yaml",
            "create_file config/knowledge-base/kb.conf",
            "create_file config/knowledge-base/secrets.env",
            "upgrade_component inference",
            "upgrade_component knowledge-base",
        ])
        #expect(h1.observedManifestSHA256 == nil)
        #expect(h1.actions[6].fromVersion == nil)
        #expect(h1.actions[6].reasons == ["not deployed on this host yet"])
        let secrets = h1.actions[5]
        #expect(secrets.sensitive && secrets.afterSHA256 == nil && secrets.modeAfter == FileMode(0o600))
    }

    @Test func textDiffsComeFromObservedContent() throws {
        let h1 = try host(PlanFixtures.plan, "eu-west/h1")
        let bundle = h1.actions[1]
        #expect(bundle.beforeSHA256 == SHA256.hex(PlanFixtures.bundle("eu-west", rules: PlanFixtures.euRulesBefore)))
        #expect(bundle.afterSHA256 == SHA256.hex(PlanFixtures.bundle("eu-west", rules: PlanFixtures.euRulesAfter)))
        guard case .text(let unified)? = bundle.diff else { Issue.record("expected a text diff"); return }
        #expect(unified.contains("-    \"pii-redaction\"\n+    \"pii-redaction\",\n+    \"retention-30d\"\n"))
    }

    @Test func sensitiveFilesNeverCarryRealHashesOrValues() throws {
        let plan = PlanFixtures.plan
        let json = String(decoding: plan.renderJSON(), as: UTF8.self)
        let realHash = SHA256.hex("db_user=kb\ndb_password=hunter2\n")
        #expect(!json.contains(realHash))
        #expect(!json.contains("hunter2"))
        let secrets = try host(plan, "eu-west/h1").actions[3]
        #expect(secrets.sensitive && secrets.beforeSHA256 == nil && secrets.afterSHA256 == nil)
        guard case .text(let unified)? = secrets.diff else { Issue.record("expected a masked diff"); return }
        #expect(unified.hasSuffix("-db_user=kb\n+db_user=kb_reader\n (sensitive)\n"))
        #expect(!unified.contains(MaskingSecretResolver.marker))
    }

    @Test func sensitiveFileWithSameRenderingIsLeftToApply() throws {
        // Same template and references, different real content on the host
        // (a rotated secret): the plan cannot tell and does not try.
        let desired = PlanFixtures.desired[1]
        let observed = PlanFixtures.observedInSync(desired, realSecretContent: "db_user=kb\ndb_password=rotated\n")
        let plan = Planner.plan(desired: [desired], observed: [desired.id: observed], basis: PlanFixtures.basis)
        #expect(plan.hosts[0].actions.map(\.kind) == [.noOp])
        #expect(plan.hosts[0].sensitiveFiles == ["config/knowledge-base/secrets.env"])
    }

    @Test func sensitiveUpdateWithoutPreviousRenderingSaysSo() throws {
        let plan = Planner.plan(desired: PlanFixtures.desired, observed: PlanFixtures.observed, basis: PlanFixtures.basis)
        let secrets = try host(plan, "eu-west/h1").actions[3]
        #expect(secrets.diff == nil)
        #expect(secrets.reasons == ["template or secret references changed; previous rendering not available"])
    }

    @Test func deadProcessRestartsAndPortChangeRestarts() throws {
        let desired = PlanFixtures.desired[1]
        var observed = PlanFixtures.observedInSync(desired)
        observed.processes[0].alive = false
        var moved = desired
        moved.components[1].bluePort = 9181
        let plan = Planner.plan(desired: [moved], observed: [desired.id: observed], basis: PlanFixtures.basis)
        #expect(plan.hosts[0].actions.map { "\($0.kind.rawValue) \($0.subject) \($0.reasons)" } == [
            "restart_component inference [\"not running (pid 4100)\"]",
            "restart_component knowledge-base [\"port 9081 → 9181\"]",
        ])
    }

    @Test func swappedSlotLinkIsRelinkedAndRestarted() throws {
        let desired = PlanFixtures.desired[1]
        var observed = PlanFixtures.observedInSync(desired)
        let index = try #require(observed.slots.firstIndex { $0.component == "inference" })
        let slot = observed.slots[index].slot
        observed.slots[index].target = "/srv/meridian/releases/inference/0.9.0"
        let plan = Planner.plan(desired: [desired], observed: [desired.id: observed], basis: PlanFixtures.basis)
        let upgrade = try #require(plan.hosts[0].actions.first { $0.subject == "inference" })
        #expect(upgrade.kind == .upgradeComponent && upgrade.slot == slot)
        #expect(upgrade.reasons == ["slot link points at /srv/meridian/releases/inference/0.9.0"])
        #expect(upgrade.toVersion == upgrade.fromVersion, "the same version, relinked")
    }

    @Test func modeChangeAndUnknownPreviousContent() throws {
        var desired = PlanFixtures.desired[1]
        desired.files[0].mode = 0o640
        desired.files[1].content = .bytes(Data("changed\n".utf8))
        let observed = PlanFixtures.observedInSync(PlanFixtures.desired[1])
        let plan = Planner.plan(desired: [desired], observed: [desired.id: observed], basis: PlanFixtures.basis)
        let actions = plan.hosts[0].actions
        #expect(actions[0].subject == "config/inference/inference.yaml")
        #expect(actions[0].reasons == ["mode 0644 → 0640"] && actions[0].diff == nil)
        #expect(actions[1].reasons.first?.hasPrefix("previous content not available (remote hash ") == true)
        #expect(actions[1].diff == nil)
    }

    @Test func versionIsReadFromSlotLinkWithoutManifest() throws {
        let desired = PlanFixtures.desired[1]
        var observed = PlanFixtures.observedInSync(desired)
        observed.manifest = .absent
        let plan = Planner.plan(desired: [desired], observed: [desired.id: observed], basis: PlanFixtures.basis)
        // Files match by hash, links name the right versions, processes run:
        // only the sensitive file, unrecorded, must be rewritten.
        #expect(kinds(plan.hosts[0]) == [
            "update_file config/knowledge-base/secrets.env",
            "restart_component knowledge-base",
        ])
        #expect(Planner.versionFromLink("/srv/meridian/releases/inference/1.2.0", component: "inference") == "1.2.0")
        #expect(Planner.versionFromLink("../../releases/other/1.2.0", component: "inference") == nil)
    }

    @Test func inputOrderDoesNotChangeThePlan() {
        let shuffled = Planner.plan(desired: PlanFixtures.desired.reversed(), observed: PlanFixtures.observed, basis: PlanFixtures.basis, previousContents: PlanFixtures.previousContents)
        #expect(shuffled == PlanFixtures.plan)
        #expect(shuffled.hash == PlanFixtures.plan.hash)
    }

    @Test func summaryCountsActions() {
        #expect(PlanFixtures.plan.summary == PlanSummary(create: 7, update: 3, delete: 1, upgrade: 3, restart: 1, regionsChanged: 2, hostsChanged: 2, hostsUnchanged: 2))
    }

    @Test func jsonRoundTripsAndHashIsStable() throws {
        let plan = PlanFixtures.plan
        let decoded = try Plan.decode(plan.renderJSON())
        #expect(decoded == plan)
        #expect(decoded.hash == plan.hash)
        #expect(plan.hash.count == 64)
        var changed = plan
        changed.basis.gitCommit = "ffff"
        #expect(changed.hash != plan.hash)
    }

    @Test func decodeRefusesOtherFormats() {
        #expect(throws: PlanDecodingError.self) { try Plan.decode(Data(#"{"format_version": 2}"#.utf8)) }
        #expect(throws: PlanDecodingError.self) { try Plan.decode(Data("[]".utf8)) }
    }

    @Test func stalenessNamesChangedHosts() {
        let plan = PlanFixtures.plan
        var observed = PlanFixtures.observed
        observed["us-east/h1"] = ObservedHostState()
        #expect(plan.staleHosts(observed: observed) == [])

        // Processes, the lock and a sensitive file's real hash do not make a plan stale.
        observed["eu-west/h2"]?.processes[0].alive = false
        observed["eu-west/h2"]?.lock = RemoteLock(holder: "x", runID: "r", pid: 1, startedAt: 1, expiresAt: 2)
        observed["eu-west/h2"]?.files["config/knowledge-base/secrets.env"] = .regular(sha256: SHA256.hex("other"), mode: 0o600, size: 5)
        #expect(plan.staleHosts(observed: observed) == [])

        observed["eu-west/h2"]?.files["config/inference/inference.yaml"] = .regular(sha256: SHA256.hex("edited"), mode: 0o644, size: 6)
        observed["us-east/h1"]?.manifest = .unreadable(sha256: SHA256.hex("x"), reason: "r")
        observed["uk-south/h1"] = nil
        let stale = plan.staleHosts(observed: observed)
        #expect(stale.map(\.host) == ["eu-west/h2", "uk-south/h1", "us-east/h1"])
        #expect(stale[0].description == "host eu-west/h2: its files, releases or slots changed since the plan was made; run `meridian plan` again")
        #expect(stale[1].reasons == ["it was not observed"])
        #expect(stale[2].reasons.first == "its manifest changed (none → \(SHA256.hex("x").prefix(12)))")
    }

    @Test func desiredStateProblems() {
        var host = PlanFixtures.desired[0]
        host.root = "srv"
        host.files.append(ManagedFile(path: "../etc/passwd", content: .bytes(Data()), source: "templates/evil"))
        host.files.append(ManagedFile(path: "config/inference/inference.yaml", content: .bytes(Data()), source: "templates/dup"))
        host.components[0].version = "9.9.9"
        #expect(host.problems == [
            "host us-east/h1: root srv must be an absolute path",
            "host us-east/h1: templates/evil: managed path ../etc/passwd must not contain empty, `.` or `..` components",
            "host us-east/h1: config/inference/inference.yaml is declared twice (again by templates/dup)",
            "host us-east/h1: component inference runs version 9.9.9 but no release of it is required",
        ])
        #expect(PlanFixtures.desired.allSatisfy { $0.problems.isEmpty })
    }

    @Test func fileModesReadAsOctal() throws {
        #expect(FileMode(0o640).description == "0640")
        let data = try JSONEncoder().encode([FileMode(0o4755)])
        #expect(String(decoding: data, as: UTF8.self) == #"["4755"]"#)
        #expect(try JSONDecoder().decode([FileMode].self, from: Data(#"["0600"]"#.utf8)) == [FileMode(0o600)])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([FileMode].self, from: Data(#"["0999"]"#.utf8)) }
    }

    @Test func unobservedHostsAndUnreadableManifestsWarn() throws {
        var observed = PlanFixtures.observed
        observed["us-east/h1"] = nil
        observed["eu-west/h2"]?.manifest = .unreadable(sha256: SHA256.hex("x"), reason: "not a meridian manifest (no schema_version)")
        let plan = Planner.plan(desired: PlanFixtures.desired, observed: observed, basis: PlanFixtures.basis)
        #expect(try host(plan, "us-east/h1").warnings == ["the host was not observed: planned as an empty host"])
        let h2 = try host(plan, "eu-west/h2")
        #expect(h2.warnings == ["state/manifest.json cannot be used (not a meridian manifest (no schema_version)): planned as if meridian had not applied anything here"])
        #expect(kinds(h2) == ["update_file config/knowledge-base/secrets.env", "restart_component knowledge-base"])
        #expect(try host(plan, "eu-west/h1").warnings == [])
        #expect(plan.renderText().contains("  host h2 (10.0.1.12)\n    ! state/manifest.json cannot be used"))

        let inSync = PlanFixtures.desired[3]
        let quiet = Planner.plan(desired: [inSync], observed: [inSync.id: PlanFixtures.observedInSync(inSync)], basis: PlanFixtures.basis)
        #expect(quiet.renderText() == "Region uk-south: no changes (1 host)\n\nNo changes. The fleet matches the configuration.\n")
    }

    @Test func glyphsAreFixed() {
        #expect(PlanActionKind.allCases.map(\.glyph) == ["+", "~", "-", "+", ">", "r", "="])
    }
}
