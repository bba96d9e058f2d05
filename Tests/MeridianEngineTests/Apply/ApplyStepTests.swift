import Foundation
import Testing
import MeridianTestHosts
import MeridianBasics
@testable import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianSSH

/// The pure half of apply: which steps a host plan becomes, the exact remote
/// command lines, and the scripts run by a local sh against hostile names.
@Suite struct ApplyStepTests {
    static let layout = ComponentSlotLayout(component: "inference", version: "2.0.0", address: "127.0.3.4", bluePort: 18101, greenPort: 18102,
                                            startCommand: ["bin/serve", "--address", "{address}", "--port", "{port}", "--slot={slot}", "{root}/x {version}"], healthPath: "/healthz")
    static let release = ReleaseRequirement(component: "inference", version: "2.0.0", artifact: "inference-2.0.0.tar", sha256: String(repeating: "a", count: 64))
    static let desired = DesiredHostState(
        region: "eu", host: "h1", address: "127.0.0.1", root: "/srv/m", roles: ["inference"],
        files: [ManagedFile(path: "config/inference/server.yaml", content: .bytes(Data("a: 1\n".utf8)), source: "t", component: "inference")],
        releases: [release], components: [layout])

    /// HostPlan has no public memberwise initializer: plans are made by the planner or read back from JSON.
    func hostPlan(_ actions: [PlanAction]) -> HostPlan {
        let encoder = JSONEncoder()
        let actionsJSON = String(decoding: (try? encoder.encode(actions)) ?? Data(), as: UTF8.self)
        let json = #"{"region":"eu","host":"h1","address":"127.0.0.1","root":"/srv/m","observed_state_sha256":"","sensitive_files":[],"warnings":[],"actions":"# + actionsJSON + "}"
        return try! JSONDecoder().decode(HostPlan.self, from: Data(json.utf8))
    }

    @Test func anUpgradeBecomesStopLinkStartHealthCheckBetweenPrepareAndManifest() {
        let plan = hostPlan([
            PlanAction(id: "1", kind: .installRelease, subject: "releases/inference/2.0.0", component: "inference"),
            PlanAction(id: "2", kind: .updateFile, subject: "config/inference/server.yaml", component: "inference"),
            PlanAction(id: "3", kind: .deleteFile, subject: "config/old.yaml"),
            PlanAction(id: "4", kind: .upgradeComponent, subject: "inference", component: "inference", fromVersion: "1.0.0", toVersion: "2.0.0", strategy: .recreate, slot: .blue, port: 18101),
        ])
        let steps = HostStep.steps(for: plan, desired: Self.desired, rewriteSensitive: ["config/secret.yaml"], writeManifest: false)
        #expect(steps == [
            .prepareHost(keeping: ["config/inference/server.yaml", "config/secret.yaml", "config/old.yaml"]),
            .installRelease(Self.release),
            .writeFile(path: "config/inference/server.yaml"),
            .deleteFile(path: "config/old.yaml"),
            .writeFile(path: "config/secret.yaml"),
            .stopComponent(component: "inference", slot: .blue),
            .linkSlot(component: "inference", slot: .blue, version: "2.0.0"),
            .startComponent(component: "inference", slot: .blue),
            .healthCheck(component: "inference", slot: .blue, address: "127.0.3.4", port: 18101, path: "/healthz"),
            .writeManifest,
        ])
    }

    @Test func aHostInSyncWithItsManifestHasNoSteps() {
        let plan = hostPlan([PlanAction(id: "n", kind: .noOp, subject: "eu/h1")])
        #expect(HostStep.steps(for: plan, desired: Self.desired, rewriteSensitive: [], writeManifest: false).isEmpty)
        #expect(HostStep.steps(for: plan, desired: Self.desired, rewriteSensitive: [], writeManifest: true) == [.prepareHost(keeping: []), .writeManifest])
    }

    @Test func commandLinesQuoteEveryWord() {
        #expect(RemoteScripts.deleteFile(root: "/srv/m", path: "config/it's $(x).yaml").line
                == "rm -f -- '/srv/m/config/it'\\''s $(x).yaml'")
        #expect(RemoteScripts.startArguments(Self.layout, slot: .green, root: "/r o") == ["bin/serve", "--address", "127.0.3.4", "--port", "18102", "--slot=green", "/r o/x 2.0.0"])
        #expect(RemoteScripts.pidFile(root: "/srv/m", component: "inference", slot: .green) == "/srv/m/run/inference-green.pid")
    }

    /// Runs a remote command line with the local sh, as sshd would hand it to the user's shell.
    /// It runs in a scratch folder that must stay empty (a hostile word that
    /// ran, such as `$(touch pwned)`, would leave its marker there) and is removed.
    func sh(_ command: RemoteCommand, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Int32 {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-sh-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command.line]
        process.currentDirectoryURL = scratch
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let left = (try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []
        #expect(left.isEmpty, "the shell created \(left) in its working folder: something in the command ran", sourceLocation: sourceLocation)
        return process.terminationStatus
    }

    @Test func scriptsHandleHostileNamesUnderARootWithSpaces() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("meridian apply $(touch pwned) '\"").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = "config/a b/it's $(x)\nline.yaml"
        try FileManager.default.createDirectory(atPath: root + "/config/a b", withIntermediateDirectories: true)
        try "old\n".write(toFile: root + "/" + path, atomically: true, encoding: .utf8)
        try "partial".write(toFile: root + "/config/a b/x" + SSHSession.temporaryMarker + "1", atomically: true, encoding: .utf8)
        #expect(try sh(RemoteScripts.prepareHost(root: root, keeping: [path, "config/new/n.yaml"])) == 0)
        #expect(try String(contentsOfFile: root + "/state/previous/" + path, encoding: .utf8) == "old\n")
        #expect(FileManager.default.fileExists(atPath: root + "/config/new"))
        #expect(!FileManager.default.fileExists(atPath: root + "/config/a b/x" + SSHSession.temporaryMarker + "1"))

        #expect(try sh(RemoteScripts.deleteFile(root: root, path: path)) == 0)
        #expect(!FileManager.default.fileExists(atPath: root + "/" + path))

        // A release unpacks through a dot-named folder renamed into place.
        let content = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-release-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: content) }
        try FileManager.default.createDirectory(atPath: content + "/bin", withIntermediateDirectories: true)
        try "v\n".write(toFile: content + "/bin/v", atomically: true, encoding: .utf8)
        let release = ReleaseRequirement(component: "inf $(x)", version: "1.0.0", artifact: "a.tar", sha256: String(repeating: "b", count: 64))
        try FileManager.default.createDirectory(atPath: root + "/releases/.incoming", withIntermediateDirectories: true)
        #expect(try sh(RemoteCommand(ArtifactPreparation.packArguments(folder: content, into: RemoteScripts.incomingPath(root: root, sha256: release.sha256)))) == 0)
        #expect(try sh(RemoteScripts.unpackRelease(root: root, release: release)) == 0)
        #expect(try String(contentsOfFile: root + "/releases/inf $(x)/1.0.0/bin/v", encoding: .utf8) == "v\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/releases/inf $(x)") == ["1.0.0"])

        #expect(try sh(RemoteScripts.linkSlot(root: root, component: "inf $(x)", slot: .blue, version: "1.0.0")) == 0)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/slots/inf $(x)/blue") == root + "/releases/inf $(x)/1.0.0")
    }

    @Test func stopEndsAProcessThatIgnoresTERMWithinTheGrace() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-stop-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/slots/c/blue", withIntermediateDirectories: true)
        let layout = ComponentSlotLayout(component: "c", version: "1", address: "127.0.3.4", bluePort: 1, greenPort: 2,
                                         startCommand: ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"], healthPath: "/")
        // Not waited for: Foundation's Process hands the child a descriptor that the
        // detached grandchild inherits (sshd does not), so the pid file is polled instead.
        let starter = Process()
        starter.executableURL = URL(fileURLWithPath: "/bin/sh")
        starter.arguments = ["-c", RemoteScripts.start(root: root, layout: layout, slot: .blue).line]
        try starter.run()
        let pidFile = RemoteScripts.pidFile(root: root, component: "c", slot: .blue)
        func recordedPid() -> Int32? {
            (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        #expect(Poll.blockingUntil { recordedPid() != nil }, "start wrote no pid to \(pidFile) within 20 s")
        let pid = try #require(recordedPid())
        #expect(kill(pid, 0) == 0)
        #expect(try sh(RemoteScripts.stop(root: root, component: "c", slot: .blue, graceSeconds: 1)) == 0)
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
        #expect(!FileManager.default.fileExists(atPath: RemoteScripts.pidFile(root: root, component: "c", slot: .blue)))
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        #expect(stat.isEmpty || stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") == true)
    }
}

/// Artifacts are packed deterministically and named by their hash.
@Suite struct ArtifactPreparationTests {
    func fleet(artifact: ArtifactSource) -> Fleet {
        let component = Component(name: "inference", artifact: artifact, start: ["bin/serve"], ports: SlotPorts(blue: 1, green: 2))
        let settings = FleetSettings(name: "t", defaults: FleetDefaults(), components: [component], platform: ["inference": Version(1, 0, 0)], waves: [], residency: ResidencySettings())
        return Fleet(settings: settings, regions: [], policies: [], fileHashes: [:], sources: SourceMap())
    }

    @Test func theSameFolderPacksToTheSameHashWhateverItsTimes() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-artifacts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let folder = root.appendingPathComponent("artifacts/inference/1.0.0/bin")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "#!/bin/sh\n".write(to: folder.appendingPathComponent("serve"), atomically: true, encoding: .utf8)
        try "b".write(to: folder.appendingPathComponent("b"), atomically: true, encoding: .utf8)
        let preparation = ArtifactPreparation(fleet: fleet(artifact: .path("artifacts/inference/{version}")), fleetRoot: root)
        let component = preparation.fleet.settings.components[0]
        let first = try preparation.prepare(component, version: Version(1, 0, 0)).get()
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 12345)], ofItemAtPath: folder.appendingPathComponent("serve").path)
        let second = try preparation.prepare(component, version: Version(1, 0, 0)).get()
        #expect(first == second)
        #expect(first.localPath == root.appendingPathComponent(".meridian/artifacts/\(first.artifact.sha256).tar").path)
        #expect(SHA256.hex(try Data(contentsOf: URL(fileURLWithPath: first.localPath))) == first.artifact.sha256)
        #expect(first.artifact.fileName == "inference-1.0.0.tar")

        try "changed".write(to: folder.appendingPathComponent("b"), atomically: true, encoding: .utf8)
        #expect(try preparation.prepare(component, version: Version(1, 0, 0)).get().artifact.sha256 != first.artifact.sha256)
    }

    /// Versions that share code through links (as the example stack's do) pack
    /// the linked files themselves; links out of the fleet, to devices or in a loop stop it.
    @Test func linksInsideTheFleetArePackedAsFilesAndOthersRefused() throws {
        let files = FileManager.default
        let root = files.temporaryDirectory.appendingPathComponent("meridian-links-\(UUID().uuidString)")
        defer { try? files.removeItem(at: root) }
        let shared = root.appendingPathComponent("stack/lib")
        try files.createDirectory(at: shared, withIntermediateDirectories: true)
        try "shared code\n".write(to: shared.appendingPathComponent("code.py"), atomically: true, encoding: .utf8)
        let release = root.appendingPathComponent("artifacts/inference/1.0.0")
        try files.createDirectory(at: release, withIntermediateDirectories: true)
        try files.createSymbolicLink(atPath: release.appendingPathComponent("lib").path, withDestinationPath: "../../../stack/lib")
        try "{}".write(to: release.appendingPathComponent("release.json"), atomically: true, encoding: .utf8)
        let preparation = ArtifactPreparation(fleet: fleet(artifact: .path("artifacts/inference/{version}")), fleetRoot: root)
        let component = preparation.fleet.settings.components[0]
        let packed = try preparation.prepare(component, version: Version(1, 0, 0)).get()
        let unpacked = root.appendingPathComponent("unpacked")
        try files.createDirectory(at: unpacked, withIntermediateDirectories: true)
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "-xf", packed.localPath, "-C", unpacked.path]
        try tar.run()
        tar.waitUntilExit()
        #expect(tar.terminationStatus == 0)
        #expect(try String(contentsOf: unpacked.appendingPathComponent("lib/code.py"), encoding: .utf8) == "shared code\n")
        #expect((try files.attributesOfItem(atPath: unpacked.appendingPathComponent("lib").path)[.type] as? FileAttributeType) == .typeDirectory)
        try files.removeItem(at: unpacked)

        func refusal() -> String {
            guard case .failure(let problem) = preparation.prepare(component, version: Version(1, 0, 0)) else { return "packed" }
            return problem.reason
        }
        let outside = release.appendingPathComponent("key")
        try files.createSymbolicLink(atPath: outside.path, withDestinationPath: files.temporaryDirectory.path)
        #expect(refusal() == "the link artifacts/inference/1.0.0/key leads outside the fleet repository: artifacts may link only to files inside it")
        try files.removeItem(at: outside)
        try files.createSymbolicLink(atPath: shared.appendingPathComponent("loop").path, withDestinationPath: "..")
        #expect(refusal() == "the link artifacts/inference/1.0.0/lib/loop leads back to a folder it is in: a release would never end")
        try files.removeItem(at: shared.appendingPathComponent("loop"))
        try files.createSymbolicLink(atPath: shared.appendingPathComponent("null").path, withDestinationPath: "/dev/null")
        #expect(refusal() == "the link artifacts/inference/1.0.0/lib/null leads outside the fleet repository: artifacts may link only to files inside it")
        try files.removeItem(at: shared.appendingPathComponent("null"))
        try files.createSymbolicLink(atPath: shared.appendingPathComponent("gone").path, withDestinationPath: "nothing-here")
        #expect(refusal() == "the link artifacts/inference/1.0.0/lib/gone leads nowhere: fix or remove it")
        try files.removeItem(at: shared.appendingPathComponent("gone"))
        #expect(mkfifo(shared.appendingPathComponent("pipe").path, 0o600) == 0)
        #expect(refusal() == "artifacts/inference/1.0.0/lib/pipe is neither a file nor a folder: an artifact holds only files and folders")
    }

    @Test func missingAndURLArtifactsAreSentences() {
        let root = FileManager.default.temporaryDirectory
        let missing = ArtifactPreparation(fleet: fleet(artifact: .path("artifacts/none/{version}")), fleetRoot: root)
        guard case .failure(let problem) = missing.prepare(missing.fleet.settings.components[0], version: Version(1, 0, 0)) else { Issue.record("expected a problem"); return }
        #expect(problem.description == "component inference 1.0.0: artifact artifacts/none/1.0.0 does not exist in the fleet repository: add the file or folder, or fix components.inference.artifact")
        let url = ArtifactPreparation(fleet: fleet(artifact: .url("https://example.invalid/{version}.tar", sha256: [:])), fleetRoot: root)
        guard case .failure(let urlProblem) = url.prepare(url.fleet.settings.components[0], version: Version(1, 0, 0)) else { Issue.record("expected a problem"); return }
        #expect(urlProblem.description.contains("not supported yet"))
    }
}

/// Real secrets replace the plan's placeholders only at apply time.
@Suite struct SensitiveRenderingTests {
    struct Secrets: SecretResolver {
        func resolve(_ reference: SecretReference) throws -> String { "va\"lue-\(reference.name)" }
    }

    @Test func placeholdersAndTheirJSONFormsAreReplaced() throws {
        let template = Template("plain: {{ vars.k }}\njson: {{ vars.k | json }}\n")
        let reference = SecretReference(source: .environment, name: "K")
        let masked = try ManagedFile.rendering(template, templatePath: "t", variables: ["vars.k": .secret(reference)], path: "config/s", source: "t").get()
        #expect(masked.mode == 0o600)
        let real = try SensitiveRendering.render(masked, secrets: Secrets())
        #expect(String(decoding: real, as: UTF8.self) == "plain: va\"lue-K\njson: \"va\\\"lue-K\"\n")
    }
}
