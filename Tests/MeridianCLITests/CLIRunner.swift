import Foundation
import Testing
import MeridianTestHosts

/// Runs the built `meridian` executable the way a user does and captures
/// everything it prints, for golden comparisons.
struct CLIRun: Equatable {
    var arguments: [String]
    var status: Int32
    var stdout: String
    var stderr: String

    /// The transcript compared with a golden file.
    var transcript: String {
        "$ meridian \(arguments.joined(separator: " "))\nexit \(status)\n--- stdout\n\(stdout)--- stderr\n\(stderr)"
    }
}

enum CLI {
    static let repositoryRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    /// The `meridian` binary built beside the test bundle.
    static let executable: URL = {
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent("meridian")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            folder.deleteLastPathComponent()
        }
        return repositoryRoot.appendingPathComponent(".build/debug/meridian")
    }()

    /// Starts meridian with `arguments` without waiting for it, with a clean
    /// environment, its standard output and error going to `output`.
    static func start(_ arguments: [String], environment: [String: String] = [:], output: URL) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": FileManager.default.temporaryDirectory.path, "NO_COLOR": "1"]
            .merging(environment) { $1 }
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let log = try FileHandle(forWritingTo: output)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Runs meridian with `arguments` from the repository root, with a clean environment.
    static func run(_ arguments: [String], environment: [String: String] = [:], currentDirectory: URL? = nil) throws -> CLIRun {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = currentDirectory ?? repositoryRoot
        var env = ["PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": FileManager.default.temporaryDirectory.path, "NO_COLOR": "1"]
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes concurrently so a large output cannot block the child.
        nonisolated(unsafe) var errData = Data()
        let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        return CLIRun(arguments: arguments, status: process.terminationStatus,
                      stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Compares a run's transcript with `Tests/Golden/NAME`; with
    /// MERIDIAN_UPDATE_GOLDEN=1 in the environment it rewrites the file instead.
    static func expectGolden(_ run: CLIRun, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let url = repositoryRoot.appendingPathComponent("Tests/Golden/\(name)")
        if ProcessInfo.processInfo.environment["MERIDIAN_UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try run.transcript.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        #expect(run.transcript == expected, "golden \(name) differs; rerun with MERIDIAN_UPDATE_GOLDEN=1 and review the diff", sourceLocation: sourceLocation)
    }
}

extension CLI {
    /// Waits (bounded, about 60 s) until the output `process` writes to `log`
    /// has `count` lines containing `text`, and returns true when it did; false
    /// when the process ended first or the bound was reached. The CLI writes
    /// each progress line with its own unbuffered write, so a line in the log
    /// means that step has finished on the host. The wait blocks its thread
    /// instead of sleeping as a task: beside other tests that block the
    /// cooperative pool's threads, a sleeping task can wake seconds late and
    /// miss the moment it waits for.
    static func waitForLines(containing text: String, count: Int = 1, in log: URL, of process: Process) -> Bool {
        Poll.blockingUntil(attempts: 6000, everyMicroseconds: 10_000) {
            guard process.isRunning else { return true }
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            return output.components(separatedBy: "\n").filter { $0.contains(text) }.count >= count
        } && process.isRunning
    }
}

/// A fleet folder on test hosts that a test drives with the built binary.
protocol LiveTestFleet {
    var path: String { get }
    var cluster: TestHostCluster { get }
}

extension LiveTestFleet {
    func meridian(_ arguments: [String]) throws -> CLIRun {
        try CLI.run(arguments + ["--fleet", path])
    }

    /// Starts meridian without waiting for it, its output going to `output`.
    func start(_ arguments: [String], output: URL) throws -> Process {
        try CLI.start(arguments + ["--fleet", path], output: output)
    }

    func tearDown() {
        cluster.stopAll()
        cluster.stopSlotProcesses()
    }
}
