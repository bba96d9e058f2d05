import Foundation
import Testing
import MeridianBasics
import MeridianModel
@testable import MeridianPlanning

/// Whether a file was sensitive is known from what was applied, and a plan
/// never carries the content, plain hash or diff of such a file; a saved
/// plan holds only what the planner could have produced.
@Suite struct SecretHistoryTests {
    static let secretText = "db_user=kb\ndb_password=hunter2\n"
    static let secretsPath = "config/knowledge-base/secrets.env"

    /// eu-west/h2 in sync, then its secrets template turned into fixed text.
    func plainAfterSensitive(observeInPlain: Bool) -> (Plan, DesiredHostState) {
        let applied = PlanFixtures.desiredHost(region: "eu-west", host: "h2", address: "10.0.1.12", inference: "1.2.0", maxTokens: 2048, chunk: 512, rules: PlanFixtures.euRulesAfter)
        var observed = PlanFixtures.observedInSync(applied, realSecretContent: Self.secretText)
        if observeInPlain {
            // What an older observation returned: the plain hash and the content.
            observed.fileContents[Self.secretsPath] = Data(Self.secretText.utf8)
        } else {
            observed.files[Self.secretsPath] = .sensitive(keyedSHA256: nil, mode: 0o600, size: Self.secretText.utf8.count)
        }
        var desired = applied
        let index = desired.files.firstIndex { $0.path == Self.secretsPath }!
        desired.files[index] = ManagedFile(path: Self.secretsPath, content: .bytes(Data("db_user=kb\n".utf8)), source: "templates/secrets.env (region eu-west)", component: "knowledge-base")
        let plan = Planner.plan(desired: [desired], observed: [desired.id: observed], basis: PlanFixtures.basis)
        return (plan, desired)
    }

    @Test(arguments: [false, true]) func sensitiveToPlainNeverShowsTheOldContent(observeInPlain: Bool) throws {
        let (plan, _) = plainAfterSensitive(observeInPlain: observeInPlain)
        let action = try #require(plan.hosts[0].actions.first { $0.subject == Self.secretsPath })
        #expect(action.kind == .updateFile)
        #expect(action.sensitive)
        #expect(action.beforeSHA256 == nil)
        #expect(action.reasons.contains("was sensitive when applied: its previous content is not shown"))
        #expect(plan.hosts[0].sensitiveFiles.contains(Self.secretsPath))
        for text in [plan.renderText(), String(decoding: plan.renderJSON(), as: UTF8.self)] {
            #expect(!text.contains("hunter2"))
            #expect(!text.contains(SHA256.hex(Self.secretText)))
        }
    }

    @Test func aManifestMarksItsSensitiveFilesEvenWhenTheScriptReturnedThemInPlain() throws {
        let script = ObserveScript(root: "/srv/meridian", files: [ObservedPathRequest(path: Self.secretsPath, expectedSHA256: nil, fetchContentIfDifferent: true)])
        let manifest = HostManifest(revision: "r", appliedAt: "t", appliedBy: "a", files: [Self.secretsPath: ManifestFile(sha256: nil, maskedSHA256: "m", mode: 0o600, component: nil)], releases: [], components: [:])
        let output = """
        meridian-observe 1
        lock-outcome not-requested
        lock none
        manifest x\(manifest.encoded().hexString)
        file 0 \(SHA256.hex(Self.secretText)) 600 31
        content 0 x\(Data(Self.secretText.utf8).hexString)
        releases x
        end

        """
        let state = try script.parse(Data(output.utf8), host: "eu/h").get().state
        #expect(state.fileContents.isEmpty)
        #expect(state.files[Self.secretsPath] == .sensitive(keyedSHA256: nil, mode: 0o600, size: 31))
    }

    /// The script itself, run by the local sh on a laid-out root: a path
    /// listed in state/sensitive-paths is hashed under the key only.
    @Test func theScriptHashesListedPathsUnderTheKeyOnly() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-keyed-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root.appendingPathComponent("config/kb"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("state"), withIntermediateDirectories: true)
        try Self.secretText.write(to: root.appendingPathComponent("config/kb/secrets.env"), atomically: true, encoding: .utf8)
        try "x\(Data("config/kb/secrets.env".utf8).hexString)\n".write(to: root.appendingPathComponent(HostManifest.sensitivePathsFile), atomically: true, encoding: .utf8)
        let key = HostFileKey(bytes: Data((0..<32).map { UInt8($0 * 7 % 256) }))
        for fileKey in [key, nil] {
            let script = ObserveScript(root: root.path, files: [ObservedPathRequest(path: "config/kb/secrets.env", expectedSHA256: SHA256.hex("other"), fetchContentIfDifferent: true)], fileKey: fileKey)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", script.script]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let text = String(decoding: output, as: UTF8.self)
            #expect(!text.contains(SHA256.hex(Self.secretText)))
            #expect(!text.contains(Data("hunter2".utf8).hexString))
            let state = try script.parse(output, host: "eu/h").get().state
            #expect(state.files["config/kb/secrets.env"] == .sensitive(keyedSHA256: fileKey?.keyedHash(Data(Self.secretText.utf8)), mode: 0o644, size: Self.secretText.utf8.count))
        }
    }

    @Test func hmacMatchesRFC4231AndSplitsAtTheInnerDigest() {
        let key = Data("Jefe".utf8)
        let message = Data("what do ya want for nothing?".utf8)
        #expect(HMACSHA256.hex(key: key, message: message) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        let inner = Data(SHA256.digest(HMACSHA256.innerPad(key) + message))
        #expect(HMACSHA256.finish(key: key, innerDigest: inner).hexString == HMACSHA256.hex(key: key, message: message))
        let long = Data(repeating: 0xaa, count: 131)
        #expect(HMACSHA256.hex(key: long, message: Data("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        let a = HostFileKey.derive(fleetKey: key, region: "eu", host: "h1"), b = HostFileKey.derive(fleetKey: key, region: "eu", host: "h2")
        #expect(a != b && a.bytes.count == 32)
    }

    @Test func keyedRewritesAreActionsWithoutContentAndRestartTheirComponent() throws {
        let applied = PlanFixtures.desiredHost(region: "eu-west", host: "h2", address: "10.0.1.12", inference: "1.2.0", maxTokens: 2048, chunk: 512, rules: PlanFixtures.euRulesAfter)
        let observed = PlanFixtures.observedInSync(applied)
        let plan = Planner.plan(desired: [applied], observed: [applied.id: observed], basis: PlanFixtures.basis, keyedRewrites: [applied.id: [Self.secretsPath]])
        let host = plan.hosts[0]
        #expect(host.keyedRewrites == [Self.secretsPath])
        #expect(host.actions.map(\.id) == ["eu-west/h2:update_file:\(Self.secretsPath)", "eu-west/h2:restart_component:knowledge-base"])
        #expect(host.actions[0].sensitive && host.actions[0].diff == nil && host.actions[0].afterSHA256 == nil)
        #expect(Planner.plan(desired: [applied], observed: [applied.id: observed], basis: PlanFixtures.basis).hosts[0].keyedRewrites == nil)
    }

    @Test func editedPlansBreakTheRulesOrDifferFromReplanning() throws {
        let desired = PlanFixtures.desired
        let observed = PlanFixtures.observed
        let plan = Planner.plan(desired: desired, observed: observed, basis: PlanFixtures.basis)
        let byID = Dictionary(uniqueKeysWithValues: desired.map { ($0.id, $0) })
        for host in plan.hosts {
            #expect(PlanChecks.ruleViolations(host, desired: byID[host.id]!, manifest: observed[host.id]?.manifest.manifest) == [])
        }
        #expect(PlanChecks.differences(saved: plan.regions, fresh: plan.regions) == [])

        var forged = plan
        var host = forged.regions[0].hosts[0]
        let escape = "../../../../victim.txt"
        host.actions.append(PlanAction(id: "\(host.id):delete_file:\(escape)", kind: .deleteFile, subject: escape))
        host.actions.append(PlanAction(id: "\(host.id):delete_file:config/unmanaged", kind: .deleteFile, subject: "config/unmanaged"))
        host.actions.append(PlanAction(id: "\(host.id):install_release:releases/x/1", kind: .installRelease, subject: "releases/x/1", component: "x"))
        host.actions.append(PlanAction(id: "\(host.id):restart_component:sshd", kind: .restartComponent, subject: "sshd"))
        host.root = "/"
        forged.regions[0].hosts[0] = host
        let problems = PlanChecks.ruleViolations(host, desired: byID[host.id]!, manifest: observed[host.id]?.manifest.manifest)
        #expect(problems.count == 5, "\(problems)")
        #expect(problems.contains { $0.contains("delete_file \(escape): managed path \(escape) must not contain") })
        #expect(problems.contains { $0.contains("delete_file config/unmanaged: the host's manifest does not list it") })
        #expect(problems.contains { $0.contains("install_release releases/x/1: no declared component") })
        #expect(problems.contains { $0.contains("restart_component sshd: the host runs no declared component") })
        #expect(problems.contains { $0.contains("the plan's root / is not the host's root /srv/meridian") })
        let differences = PlanChecks.differences(saved: forged.regions, fresh: plan.regions)
        #expect(differences.count == 1 && differences[0].contains("\(host.id):delete_file:\(escape) would not be planned"), "\(differences)")

        // Diffs and reasons are for people: editing them changes nothing apply does.
        var reworded = plan
        reworded.regions[0].hosts[0].actions[0].reasons = ["anything"]
        #expect(PlanChecks.differences(saved: reworded.regions, fresh: plan.regions) == [])
    }

    @Test func leftOutRegionsAreNamedAndNeverCalledMatching() {
        let plan = Planner.plan(desired: [PlanFixtures.desired[3]], observed: PlanFixtures.observed, basis: PlanFixtures.basis)
        #expect(plan.renderText().hasSuffix("No changes. The fleet matches the configuration.\n"))
        let text = plan.renderText(leftOut: [LeftOutRegion(name: "us-east", reasons: ["host us-east/h1: unreachable"])])
        #expect(!text.contains("The fleet matches the configuration"))
        #expect(text.contains("Region us-east: left out, not compared\n  ! host us-east/h1: unreachable\n"))
        #expect(text.contains("Checked: uk-south. Left out: us-east (hosts could not be observed).\n"))
        #expect(text.hasSuffix("No changes in the checked regions; 1 region left out was not compared.\n"))
    }
}
