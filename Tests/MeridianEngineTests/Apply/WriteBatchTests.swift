import Foundation
import Testing
import MeridianTestHosts
import MeridianBasics
@testable import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianSSH

/// Apply's batched writes: which steps fold into one command, and the batch
/// script itself, run by a local sh against a temporary root with hostile
/// names, whole input, input that ends early and a kill part-way.
@Suite struct WriteBatchTests {
    @Test func prepareWritesAndManifestFoldIntoOneStepAndOtherStepsStayInPlace() {
        let release = ReleaseRequirement(component: "c", version: "2", artifact: "c.tar", sha256: String(repeating: "a", count: 64))
        let steps: [HostStep] = [
            .prepareHost(keeping: ["config/a", "config/b"]),
            .writeFile(path: "config/a"),
            .installRelease(release),
            .writeFile(path: "config/b"),
            .writeFile(path: "config/c"),
            .stopComponent(component: "c", slot: .blue),
            .writeManifest,
        ]
        #expect(HostStep.batched(steps) == [
            .writeBatch(keeping: ["config/a", "config/b"], paths: ["config/a"], manifest: false),
            .installRelease(release),
            .writeBatch(keeping: nil, paths: ["config/b", "config/c"], manifest: false),
            .stopComponent(component: "c", slot: .blue),
            .writeBatch(keeping: nil, paths: [], manifest: true),
        ])
        // A prepare with nothing to write after it stays a prepare.
        #expect(HostStep.batched([.prepareHost(keeping: []), .installRelease(release), .writeManifest])
            == [.prepareHost(keeping: []), .installRelease(release), .writeBatch(keeping: nil, paths: [], manifest: true)])
        #expect(HostStep.batched([.prepareHost(keeping: ["config/a"]), .writeFile(path: "config/a"), .writeManifest])
            == [.writeBatch(keeping: ["config/a"], paths: ["config/a"], manifest: true)])
        #expect(HostStep.writeBatch(keeping: ["config/a"], paths: ["config/a"], manifest: true).summary
            == "prepare: keep previous versions of 1 file; write config/a; write \(HostManifest.path)")
        #expect(HostStep.writeBatch(keeping: nil, paths: ["config/a"], manifest: true).writesManifest)
        #expect(!HostStep.writeBatch(keeping: nil, paths: ["config/a"], manifest: false).writesManifest)
    }

    @Test func theBatchCommandLineCarriesNoContentAndNoHash() {
        let secret = Data("token: s3cret-value\n".utf8)
        let command = RemoteScripts.writeBatch(root: "/srv/m", keeping: nil, files: [.init(path: "config/secret.yaml", mode: 0o600)])
        let input = RemoteScripts.batchInput([secret])
        #expect(!command.line.contains("s3cret"))
        #expect(!command.line.contains(SHA256.hex(secret)))
        #expect(input == Data("\(SHA256.hex(secret)) \(secret.count)\n".utf8) + secret)
    }

    static func scratchRoot() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("meridian batch $(touch pwned) '\"-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    /// Starts a remote command line under the local sh in an empty working folder, stdin from a pipe.
    func start(_ command: RemoteCommand, in scratch: URL) throws -> (Process, FileHandle) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command.line]
        process.currentDirectoryURL = scratch
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return (process, input.fileHandleForWriting)
    }

    func sh(_ command: RemoteCommand, stdin: Data, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Int32 {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-sh-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let (process, input) = try start(command, in: scratch)
        try input.write(contentsOf: stdin)
        try input.close()
        #expect(process.endsWithin(), "the batch script did not end within 20 s", sourceLocation: sourceLocation)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []
        #expect(left.isEmpty, "the shell created \(left) in its working folder: something in the command ran", sourceLocation: sourceLocation)
        return process.terminationStatus
    }

    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    func temporaries(under root: String) -> [String] {
        let all = (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? []
        return all.filter { $0.contains(UploadNaming.temporaryMarker) }
    }

    func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int
    }

    func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    @Test func aWholeBatchKeepsPreviousVersionsWritesEveryFileWithItsModeAndRunsWhatFollows() throws {
        let root = try Self.scratchRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let hostile = "config/a b/it's $(x)\nline.yaml"
        try FileManager.default.createDirectory(atPath: root + "/config/a b", withIntermediateDirectories: true)
        try "old\n".write(toFile: root + "/" + hostile, atomically: true, encoding: .utf8)
        let files: [RemoteScripts.BatchedFile] = [.init(path: hostile, mode: 0o640), .init(path: "config/new/empty", mode: 0o600), .init(path: "state/manifest.json", mode: 0o644)]
        let contents = [Data("new\n".utf8), Data(), Data("{}\n".utf8)]
        let marker = root + "/state/after"
        let command = RemoteScripts.writeBatch(root: root, keeping: [hostile, "config/new/empty"], files: files, then: RemoteCommand(["touch", "--", marker]))
        #expect(try sh(command, stdin: RemoteScripts.batchInput(contents)) == 0)
        #expect(read(root + "/state/previous/" + hostile) == "old\n")
        #expect(read(root + "/" + hostile) == "new\n")
        #expect(read(root + "/config/new/empty") == "")
        #expect(read(root + "/state/manifest.json") == "{}\n")
        #expect(mode(root + "/" + hostile) == 0o640)
        #expect(mode(root + "/config/new/empty") == 0o600)
        #expect(FileManager.default.fileExists(atPath: marker))
        #expect(temporaries(under: root).isEmpty)
    }

    @Test(arguments: [0, 1, 2])
    func inputThatEndsEarlyOrIsCorruptRenamesNothingAndLeavesNoTemporary(cut: Int) throws {
        let root = try Self.scratchRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/config", withIntermediateDirectories: true)
        for name in ["one", "two"] { try "old \(name)\n".write(toFile: root + "/config/" + name, atomically: true, encoding: .utf8) }
        let marker = root + "/after"
        let command = RemoteScripts.writeBatch(root: root, keeping: nil, files: [.init(path: "config/one", mode: 0o644), .init(path: "config/two", mode: 0o644)],
                                               then: RemoteCommand(["touch", "--", marker]))
        var input = RemoteScripts.batchInput([Data("new one\n".utf8), Data("new two, longer\n".utf8)])
        switch cut {
        case 0: input = input.prefix(input.count - 3)             // the second file ends early
        case 1: input = input.prefix(80)                          // inside the second file's header
        default: input[input.count - 2] = UInt8(ascii: "X")       // whole length, wrong bytes
        }
        #expect(try sh(command, stdin: input) != 0)
        #expect(read(root + "/config/one") == "old one\n")
        #expect(read(root + "/config/two") == "old two\n")
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(temporaries(under: root).isEmpty)
    }

    @Test func aBatchKilledPartWayLeavesWholeFilesAndTheNextPrepareRemovesItsTemporaries() throws {
        let root = try Self.scratchRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/config", withIntermediateDirectories: true)
        try "old\n".write(toFile: root + "/config/big", atomically: true, encoding: .utf8)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-kill-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let input = RemoteScripts.batchInput([Data(repeating: UInt8(ascii: "z"), count: 1 << 20)])
        try input.prefix(input.count / 2).write(to: URL(fileURLWithPath: work + "/half"))
        let batch = RemoteScripts.writeBatch(root: root, keeping: nil, files: [.init(path: "config/big", mode: 0o644)])
        // Half the content arrives, then the writer stays silent; once the
        // script holds a partial temporary it is killed with SIGKILL (no trap runs).
        let scenario = """
        set -e
        mkfifo "$2/f"
        sh -c "$1" < "$2/f" & b=$!
        (cat "$2/half"; exec sleep 30) > "$2/f" & s=$!
        i=0
        t=
        while [ -z "$t" ] && [ "$i" -lt 200 ]; do
          for f in "$3/config/big\(UploadNaming.temporaryMarker)"*; do [ -s "$f" ] && t=$f; done
          [ -n "$t" ] || sleep 0.1
          i=$((i + 1))
        done
        # The temporary is named by the batch shell's pid.
        [ -n "$t" ] && kill -9 "${t##*-}"
        kill "$s"
        wait "$b" || true
        [ -n "$t" ]
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", scenario, "scenario", batch.line, work, root]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        #expect(process.endsWithin(), "the kill scenario did not end within 20 s")
        #expect(process.terminationStatus == 0, "no partial temporary appeared under \(root) within 20 s")
        #expect(temporaries(under: root).count == 1)
        #expect(read(root + "/config/big") == "old\n")
        // The next apply's prepare (folded into its batch or alone) removes it.
        #expect(try sh(RemoteScripts.writeBatch(root: root, keeping: ["config/big"], files: []), stdin: Data()) == 0)
        #expect(temporaries(under: root).isEmpty)
        #expect(read(root + "/config/big") == "old\n")
    }
}
