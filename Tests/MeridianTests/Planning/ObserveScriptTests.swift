import Foundation
import Testing
import MeridianBasics
@testable import MeridianPlanning

/// Runs `script` with /bin/sh (`-c`, or on standard input) and returns its
/// standard output. The shell runs in a scratch folder of its own, which must
/// be empty afterwards (a hostile word that ran, such as `$(touch pwned)`,
/// would leave its marker there) and is removed, so nothing is left behind.
func runShell(_ script: String, onStandardInput: Bool = false, shell: String = "/bin/sh",
              sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Data {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-shell-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: shell)
    process.currentDirectoryURL = scratch
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    if onStandardInput {
        let input = Pipe()
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(Data(script.utf8))
        try input.fileHandleForWriting.close()
    } else {
        process.arguments = ["-c", script]
        try process.run()
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let left = (try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []
    #expect(left.isEmpty, "the shell created \(left) in its working folder: something in the script ran", sourceLocation: sourceLocation)
    return data
}

/// A temporary folder laid out like a host's root, removed by `remove()`.
struct HostRootFixture {
    let base: URL
    let root: URL

    init(rootName: String = "host root") throws {
        base = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-observe-\(UUID().uuidString)")
        root = base.appendingPathComponent(rootName)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
    }

    func mkdir(_ path: String) throws {
        try FileManager.default.createDirectory(at: root.appendingPathComponent(path), withIntermediateDirectories: true)
    }

    func link(_ path: String, to target: String) throws {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: target)
    }

    func read(_ path: String) -> String? {
        (try? Data(contentsOf: root.appendingPathComponent(path))).map { String(decoding: $0, as: UTF8.self) }
    }

    func remove() { try? FileManager.default.removeItem(at: base) }
}

@Suite struct ObserveScriptTests {
    static let hostileName = "we ird\nname's $(touch pwned) `x` \"q\".txt"

    func observe(_ script: ObserveScript, stdin: Bool = false, shell: String = "/bin/sh") throws -> Observation {
        try script.parse(try runShell(script.script, onStandardInput: stdin, shell: shell), host: "eu-west/h1").get()
    }

    /// Hosts' sh is dash on Debian and bash elsewhere; both must read the script alike.
    @Test(arguments: [(false, "/bin/sh"), (true, "/bin/sh"), (false, "/bin/bash")])
    func observesALaidOutRoot(onStandardInput: Bool, shell: String) throws {
        let fixture = try HostRootFixture(rootName: "host root 'quoted' $(touch pwned)")
        defer { fixture.remove() }
        let manifest = HostManifest(
            revision: "run-7", appliedAt: "2026-11-23T10:00:00Z", appliedBy: "ci",
            files: ["config/inference/app.yaml": ManifestFile(sha256: SHA256.hex("a: 0\n"), maskedSHA256: nil, mode: 0o644, component: "inference")],
            releases: [ManifestRelease(component: "inference", version: "1.2.0", sha256: String(repeating: "a", count: 64))],
            components: ["inference": ManifestComponent(activeSlot: .blue, blue: ManifestSlot(version: "1.2.0", address: nil, port: 8081, weight: 100), green: ManifestSlot(version: nil, address: nil, port: 8082, weight: 0))]
        )
        try fixture.write("state/manifest.json", String(decoding: manifest.encoded(), as: UTF8.self))
        try fixture.write("config/inference/app.yaml", "a: 1\n")
        try fixture.write("config/inference/\(Self.hostileName)", "hostile\n")
        try fixture.write("config/kb/secret.env", "password=x\n", mode: 0o600)
        try fixture.write("governance/bundle.json", "{}\n")
        try fixture.mkdir("config/dir-instead")
        try fixture.mkdir("releases/inference/1.2.0")
        try fixture.mkdir("releases/inference/1.3.0")
        try fixture.mkdir("releases/knowledge base/v 1\n2")
        try fixture.write("releases/not-a-component-dir", "x")
        try fixture.link("slots/inference/blue", to: "../../releases/inference/1.2.0")
        try fixture.link("slots/knowledge base/green", to: "/abs/releases/knowledge base/v 1\n2")
        try fixture.write("run/inference-blue.pid", "\(ProcessInfo.processInfo.processIdentifier)\n")
        try fixture.write("run/inference-green.pid", "2147483646\n")
        try fixture.write("run/knowledge base-green.pid", "garbage")
        try fixture.write("run/stray.pid", "1")

        let script = ObserveScript(root: fixture.root.path, files: [
            ObservedPathRequest(path: "config/inference/app.yaml", expectedSHA256: SHA256.hex("a: 2\n"), fetchContentIfDifferent: true),
            ObservedPathRequest(path: "governance/bundle.json", expectedSHA256: SHA256.hex("{}\n"), fetchContentIfDifferent: true),
            ObservedPathRequest(path: "config/kb/secret.env", expectedSHA256: nil, fetchContentIfDifferent: false),
            ObservedPathRequest(path: "config/absent.yaml", expectedSHA256: nil, fetchContentIfDifferent: true),
            ObservedPathRequest(path: "config/dir-instead", expectedSHA256: nil, fetchContentIfDifferent: true),
        ])
        let observation = try observe(script, stdin: onStandardInput, shell: shell)
        let state = observation.state

        #expect(observation.lock == .notRequested)
        #expect(state.lock == nil)
        #expect(state.manifest.manifest == manifest)
        #expect(state.manifest.sha256 == SHA256.hex(manifest.encoded()))
        #expect(state.files["config/inference/app.yaml"] == .regular(sha256: SHA256.hex("a: 1\n"), mode: 0o644, size: 5))
        #expect(state.files["governance/bundle.json"] == .regular(sha256: SHA256.hex("{}\n"), mode: 0o644, size: 3))
        #expect(state.files["config/kb/secret.env"] == .regular(sha256: SHA256.hex("password=x\n"), mode: 0o600, size: 11))
        #expect(state.files["config/absent.yaml"] == .missing)
        #expect(state.files["config/dir-instead"] == .notRegular)
        // Content only for the file whose hash differed and that asked for it.
        #expect(state.fileContents == ["config/inference/app.yaml": Data("a: 1\n".utf8)])
        #expect(state.releases == [
            ObservedRelease(component: "inference", version: "1.2.0"),
            ObservedRelease(component: "inference", version: "1.3.0"),
            ObservedRelease(component: "knowledge base", version: "v 1\n2"),
        ])
        #expect(state.slots == [
            ObservedSlotLink(component: "inference", slot: .blue, target: "../../releases/inference/1.2.0"),
            ObservedSlotLink(component: "inference", slot: .green, target: nil),
            ObservedSlotLink(component: "knowledge base", slot: .blue, target: nil),
            ObservedSlotLink(component: "knowledge base", slot: .green, target: "/abs/releases/knowledge base/v 1\n2"),
        ])
        #expect(state.processes == [
            ObservedProcess(component: "inference", slot: .blue, pid: Int(ProcessInfo.processInfo.processIdentifier), alive: true),
            ObservedProcess(component: "inference", slot: .green, pid: 2147483646, alive: false),
            ObservedProcess(component: "knowledge base", slot: .green, pid: nil, alive: false),
        ])
        #expect(state.unmanagedFiles == ["config/inference/\(Self.hostileName)"])
        // Nothing in a name or the root was ever run by the shell.
        #expect(!FileManager.default.fileExists(atPath: fixture.root.appendingPathComponent("pwned").path))
        #expect(!FileManager.default.fileExists(atPath: fixture.base.appendingPathComponent("pwned").path))
    }

    @Test func contentIsFetchedOnlyUpToTheLimitAndHostileHashesAreInert() throws {
        let fixture = try HostRootFixture()
        defer { fixture.remove() }
        try fixture.write("config/small", "12345")
        try fixture.write("config/large", "123456")
        let script = ObserveScript(root: fixture.root.path + "//", files: [
            ObservedPathRequest(path: "config/small", expectedSHA256: "\"; touch pwned; echo \"", fetchContentIfDifferent: true),
            ObservedPathRequest(path: "config/large", expectedSHA256: nil, fetchContentIfDifferent: true),
        ], contentLimit: 5)
        #expect(script.root == fixture.root.path)
        let observation = try observe(script)
        #expect(observation.state.fileContents == ["config/small": Data("12345".utf8)])
        #expect(observation.state.files["config/large"]?.sha256 == SHA256.hex("123456"))
        #expect(observation.state.unmanagedFiles == [])
        #expect(ObserveScript.metaWord(SHA256.hex("x")) == SHA256.hex("x"))
        #expect(ObserveScript.metaWord("abc") == "-")
    }

    @Test func emptyRootObservesNothing() throws {
        let fixture = try HostRootFixture()
        defer { fixture.remove() }
        let observation = try observe(ObserveScript(root: fixture.root.appendingPathComponent("never-created").path, files: [
            ObservedPathRequest(path: "config/a", expectedSHA256: nil, fetchContentIfDifferent: true),
        ]))
        #expect(observation.state == ObservedHostState(manifest: .absent, files: ["config/a": .missing]))
    }

    @Test func unreadableManifestIsReportedNotFatal() throws {
        let fixture = try HostRootFixture()
        defer { fixture.remove() }
        try fixture.write("state/manifest.json", "{\"schema_version\": 99}")
        let newer = try observe(ObserveScript(root: fixture.root.path, files: []))
        guard case .unreadable(_, let reason) = newer.state.manifest else { Issue.record("expected unreadable"); return }
        #expect(reason.contains("newer meridian"))
        try fixture.write("state/manifest.json", "not json")
        let garbage = try observe(ObserveScript(root: fixture.root.path, files: []))
        #expect(garbage.state.manifest == .unreadable(sha256: SHA256.hex("not json"), reason: "not a meridian manifest (no schema_version)"))
    }

    func lockRequest(_ run: String, ttl: Int = 600) -> LockRequest {
        LockRequest(holder: "ops@laptop\n(meridian apply)", runID: run, pid: 4242, ttlSeconds: ttl)
    }

    @Test func lockIsTakenHeldAndTakenOverWhenExpired() throws {
        let fixture = try HostRootFixture()
        defer { fixture.remove() }
        let root = fixture.root.path

        let first = try observe(ObserveScript(root: root, files: [], lock: lockRequest("run-1")))
        #expect(first.lock == .acquired)
        #expect(first.state.lock?.runID == "run-1")
        #expect(first.state.lock?.holder == "ops@laptop (meridian apply)")
        #expect(first.state.lock?.pid == 4242)
        let started = try #require(first.state.lock?.startedAt)
        #expect(first.state.lock?.expiresAt == started + 600)

        let second = try observe(ObserveScript(root: root, files: [], lock: lockRequest("run-2")))
        guard case .heldByOther(let holder) = second.lock else { Issue.record("expected held, got \(second.lock)"); return }
        #expect(holder?.runID == "run-1")
        #expect(fixture.read("state/lock")?.contains("run=run-1") == true)

        try fixture.write("state/lock", "holder=old\nrun=run-0\npid=1\nstarted=1\nexpires=2\n")
        let third = try observe(ObserveScript(root: root, files: [], lock: lockRequest("run-3")))
        #expect(third.lock == .tookOver(previous: RemoteLock(holder: "old", runID: "run-0", pid: 1, startedAt: 1, expiresAt: 2)))
        #expect(third.state.lock?.runID == "run-3")
        // No temporary or aside files are left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.root.appendingPathComponent("state").path) == ["lock"])
    }

    @Test func lockWithoutExpiryIsNeverTakenOver() throws {
        let fixture = try HostRootFixture()
        defer { fixture.remove() }
        try fixture.write("state/lock", "something else entirely\n")
        let observation = try observe(ObserveScript(root: fixture.root.path, files: [], lock: lockRequest("run-1")))
        #expect(observation.lock == .heldByOther(RemoteLock(holder: "unknown", runID: "unknown", pid: nil, startedAt: nil, expiresAt: nil)))
        #expect(fixture.read("state/lock") == "something else entirely\n")
    }

    @Test func lockThatCannotBeWrittenFails() throws {
        let observation = try observe(ObserveScript(root: "/dev/null/meridian", files: [], lock: lockRequest("run-1")))
        #expect(observation.lock == .failed("cannot write /dev/null/meridian/state/lock"))
    }

    @Test func releaseOnlyGivesBackOwnLock() throws {
        let fixture = try HostRootFixture()
        defer { fixture.remove() }
        let root = fixture.root.path
        _ = try observe(ObserveScript(root: root, files: [], lock: lockRequest("run-1")))
        func release(_ run: String) throws -> LockReleaseScript.Outcome {
            try LockReleaseScript.parse(try runShell(LockReleaseScript(root: root, runID: run).script), host: "h").get()
        }
        guard case .kept(let other) = try release("run-2") else { Issue.record("expected the lock kept"); return }
        #expect(other.runID == "run-1")
        #expect(fixture.read("state/lock")?.contains("run=run-1") == true)
        #expect(try release("run-1") == .released)
        #expect(fixture.read("state/lock") == nil)
        #expect(try release("run-1") == .notHeld)
    }

    @Test func parseErrorsNameTheHostAndLine() {
        func error(_ text: String) -> String {
            switch ObserveScript(root: "/srv/meridian", files: []).parse(Data(text.utf8), host: "eu-west/h1") {
            case .success: return "parsed"
            case .failure(let error): return error.description
            }
        }
        #expect(error("sh: 1: syntax error\n") == "host eu-west/h1: observation output line 1: expected `meridian-observe 1`, got `sh: 1: syntax error`; is the root readable and sh POSIX?")
        #expect(error("meridian-observe 1\nmanifest none\n") == "host eu-west/h1: observation output line 2: the output stops before `end`; the script was interrupted")
        #expect(error("meridian-observe 1\nfile 0 missing\nend\n") == "host eu-west/h1: observation output line 2: malformed file record")
        #expect(error("meridian-observe 1\nbogus\nend\n") == "host eu-west/h1: observation output line 2: unknown record `bogus`")
    }

    @Test func desiredStateBecomesRequests() {
        let desired = DesiredHostState(region: "eu", host: "h", address: "a", root: "/srv/meridian", roles: [], files: [
            ManagedFile(path: "config/a", content: .bytes(Data("a".utf8)), source: "t"),
            ManagedFile(path: "config/s", content: .sensitive(masked: "x", references: []), source: "t"),
        ], releases: [], components: [])
        #expect(ObserveScript(desired: desired).files == [
            ObservedPathRequest(path: "config/a", expectedSHA256: SHA256.hex("a"), fetchContentIfDifferent: true),
            ObservedPathRequest(path: "config/s", expectedSHA256: nil, fetchContentIfDifferent: false, sensitive: true),
        ])
    }
}

@Suite struct ShellQuoteTests {
    @Test func quotesExactly() {
        #expect(ShellQuoting.quote("plain/path-1.0") == "plain/path-1.0")
        #expect(ShellQuoting.quote("A=b") == "'A=b'")
        #expect(ShellQuoting.quote("") == "''")
        #expect(ShellQuoting.quote("it's") == #"'it'\''s'"#)
        #expect(ShellQuoting.commandLine(["a b", "c"]) == "'a b' c")
    }

    @Test func hostileWordsSurviveTheShell() throws {
        let words = ["", "a b", "it's", "$(touch pwned)", "`id`", "new\nline", "\"dq\"", "\\", "*", "-n", "'", "''", "ü ✓"]
        let output = try runShell("printf '%s\\0' " + ShellQuoting.commandLine(words))
        let parsed = output.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
        #expect(parsed == words)
    }
}
