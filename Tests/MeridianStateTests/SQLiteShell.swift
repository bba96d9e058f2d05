import Dispatch
import Foundation

/// A `sqlite3` process on the store's file: another process writing to the
/// database, which the crash tests kill with SIGKILL at chosen points.
final class SQLiteShell: @unchecked Sendable {
    static let executable = "/usr/bin/sqlite3"
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()

    init(path: String) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else { throw ShellMissing() }
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["-batch", "-bail", path]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Sends commands; they run in order as the shell reads them.
    func send(_ commands: String) {
        input.fileHandleForWriting.write(Data(commands.utf8))
    }

    /// Sends commands followed by a marker, and returns once the shell has
    /// run everything before the marker. Throws when the shell exits first.
    func run(_ commands: String) async throws {
        let marker = "step-done-\(UUID().uuidString)"
        send(commands + "\n.shell echo \(marker)\n")
        let handle = output.fileHandleForReading
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                var seen = ""
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty {
                        continuation.resume(throwing: ShellFailure(output: seen))
                        return
                    }
                    seen += String(decoding: chunk, as: UTF8.self)
                    if seen.contains(marker) {
                        continuation.resume()
                        return
                    }
                }
            }
        }
    }

    /// Kills the shell with SIGKILL and waits until it is reaped.
    func kill() async {
        _ = Foundation.kill(process.processIdentifier, SIGKILL)
        await waitForExit()
    }

    /// Closes the shell's input and waits for it to exit by itself.
    func close() async {
        input.fileHandleForWriting.closeFile()
        await waitForExit()
    }

    private func waitForExit() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.process.waitUntilExit()
                continuation.resume()
            }
        }
    }

    var wasKilled: Bool { process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL }
}

struct ShellFailure: Error, CustomStringConvertible {
    let output: String
    var description: String { "sqlite3 exited early: \(output)" }
}

/// The crash tests need a second process writing to the database; without
/// sqlite3 they fail rather than skip, since they are what proves crash safety.
struct ShellMissing: Error, CustomStringConvertible {
    var description: String { "\(SQLiteShell.executable) is not installed: run scripts/install-deps (it installs the sqlite3 package) and run the tests again" }
}
