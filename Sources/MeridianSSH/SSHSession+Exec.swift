import CLibSSH2
import Foundation
import MeridianBasics

/// What a remote command produced. Invariant: `exitStatus` is the status the
/// server reported; a command killed by a signal has `exitSignal` set.
public struct CommandResult: Sendable, Equatable {
    public var stdout: Data
    public var stderr: Data
    public var exitStatus: Int32
    public var exitSignal: String?

    public var succeeded: Bool { exitStatus == 0 && exitSignal == nil }
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }

    /// The last lines of stderr, for error messages.
    public func stderrTail(lines: Int = 10, maxBytes: Int = 2000) -> String {
        let text = String(decoding: stderr.suffix(maxBytes), as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines + 1)
            .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A piece of a running command's output, as it arrives.
public enum OutputChunk: Sendable, Equatable {
    case stdout(Data)
    case stderr(Data)
}

extension SSHSession {
    /// Runs `command` in the remote user's shell and returns its output and
    /// exit status whatever the status. `onOutput` sees the output as it
    /// arrives (on the session's queue). Throws on timeout or a broken connection.
    public func exec(
        _ command: RemoteCommand,
        stdin: Data? = nil,
        timeout: Duration? = nil,
        onOutput: (@Sendable (OutputChunk) -> Void)? = nil
    ) async throws -> CommandResult {
        try await onQueue { try self.execOnQueue(command, stdin: stdin, timeout: timeout, onOutput: onOutput) }
    }

    /// Like `exec`, and throws `commandFailed` (exit code and stderr tail)
    /// when the command does not exit 0.
    public func run(
        _ command: RemoteCommand,
        stdin: Data? = nil,
        timeout: Duration? = nil,
        onOutput: (@Sendable (OutputChunk) -> Void)? = nil
    ) async throws -> CommandResult {
        let result = try await exec(command, stdin: stdin, timeout: timeout, onOutput: onOutput)
        guard result.succeeded else {
            throw SSHError(.commandFailed(command: command.line, exitCode: result.exitStatus, signal: result.exitSignal, stderrTail: result.stderrTail()), at: place)
        }
        return result
    }

    /// Runs one command and logs it (region, host, duration, exit status and
    /// output sizes; never the output or stdin themselves).
    func execOnQueue(
        _ command: RemoteCommand,
        stdin: Data? = nil,
        timeout: Duration? = nil,
        onOutput: (@Sendable (OutputChunk) -> Void)? = nil
    ) throws -> CommandResult {
        let start = ContinuousClock.now
        var metadata = SSHLog.place(endpoint)
        metadata["command"] = .string(SSHLog.preview(command.line))
        if let stdin { metadata["stdin_bytes"] = .stringConvertible(stdin.count) }
        do {
            let result = try runChannel(command, stdin: stdin, timeout: timeout, onOutput: onOutput)
            metadata["ms"] = SSHLog.milliseconds(since: start)
            metadata["exit"] = .string(result.exitSignal.map { "signal \($0)" } ?? String(result.exitStatus))
            metadata["stdout_bytes"] = .stringConvertible(result.stdout.count)
            metadata["stderr_bytes"] = .stringConvertible(result.stderr.count)
            SSHLog.logger.debug("remote command", metadata: metadata)
            SSHLog.logger.trace("remote command text", metadata: SSHLog.place(endpoint).merging(["command": .string(command.line)]) { $1 })
            return result
        } catch {
            metadata["ms"] = SSHLog.milliseconds(since: start)
            metadata["error"] = .string("\(error)")
            SSHLog.logger.debug("remote command failed", metadata: metadata)
            throw error
        }
    }

    private func runChannel(
        _ command: RemoteCommand,
        stdin: Data?,
        timeout: Duration?,
        onOutput: (@Sendable (OutputChunk) -> Void)?
    ) throws -> CommandResult {
        let session = try requireUsable()
        reapLingeringChannels()
        guard command.isTransmittable else {
            throw SSHError(.commandRejected(command: command.line, reason: "it contains a NUL byte, which no remote shell can receive"), at: place)
        }
        let limit = timeout ?? endpoint.commandTimeout
        let deadline = ContinuousClock.now + limit
        let during = "`\(command.line)`"
        let timedOut = SSHError(.commandTimeout(command: command.line, seconds: Self.seconds(limit)), at: place)

        let channel: OpaquePointer
        do {
            switch try retryPointer(until: deadline, {
                libssh2_channel_open_ex(session, "session", 7, LibSSH2.windowDefault, LibSSH2.packetDefault, nil, 0)
            }) {
            case .success(let opened): channel = opened
            case .failure(let failed): throw failure("opening a channel for \(during)", code: failed.code, message: failed.message)
            }
        } catch is TimedOut {
            markBroken("opening a channel timed out")
            throw timedOut
        }

        do {
            let started = try retry(until: deadline) {
                libssh2_channel_process_startup(channel, "exec", 4, command.line, UInt32(command.line.utf8.count))
            }
            guard started == 0 else { throw failure("starting \(during)", code: started) }
            if let stdin { try writeAll(stdin, to: channel, deadline: deadline, during: during) }
            let eof = try retry(until: deadline) { libssh2_channel_send_eof(channel) }
            guard eof == 0 else { throw failure("closing the input of \(during)", code: eof) }

            var result = CommandResult(stdout: Data(), stderr: Data(), exitStatus: -1, exitSignal: nil)
            try readToEnd(channel, deadline: deadline, during: during) { chunk in
                switch chunk {
                case .stdout(let data): result.stdout.append(data)
                case .stderr(let data): result.stderr.append(data)
                }
                onOutput?(chunk)
            }
            let closed = try retry(until: deadline) { libssh2_channel_close(channel) }
            if closed == 0 { _ = try retry(until: deadline) { libssh2_channel_wait_closed(channel) } }
            result.exitStatus = libssh2_channel_get_exit_status(channel)
            result.exitSignal = exitSignal(channel, session: session)
            if result.exitSignal == nil, closed != 0, LibSSH2.isSocketFailure(closed) {
                throw failure(during, code: closed)
            }
            freeChannel(channel)
            return result
        } catch is TimedOut {
            abandon(channel)
            throw timedOut
        } catch {
            abandon(channel)
            throw error
        }
    }

    /// Reads stdout and stderr until the remote side closes its output.
    func readToEnd(_ channel: OpaquePointer, deadline: ContinuousClock.Instant, during: String, deliver: (OutputChunk) -> Void) throws {
        let capacity = 64 * 1024
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        while true {
            var progressed = false
            for stream in [Int32(0), LibSSH2.streamStderr] {
                let count = libssh2_channel_read_ex(channel, stream, buffer, capacity)
                if count > 0 {
                    progressed = true
                    let data = Data(bytes: buffer, count: count)
                    deliver(stream == 0 ? .stdout(data) : .stderr(data))
                } else if count < 0, Int32(count) != LibSSH2.eagain {
                    throw failure(during, code: Int32(count))
                }
            }
            if progressed { continue }
            if libssh2_channel_eof(channel) == 1 { return }
            try waitSocket(until: deadline)
        }
    }

    func writeAll(_ data: Data, to channel: OpaquePointer, deadline: ContinuousClock.Instant, during: String) throws {
        try data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self) else { return }
            var offset = 0
            while offset < raw.count {
                let written = libssh2_channel_write_ex(channel, 0, base + offset, raw.count - offset)
                if written >= 0 {
                    offset += written
                } else if Int32(written) == LibSSH2.eagain {
                    try waitSocket(until: deadline)
                } else {
                    throw failure(during, code: Int32(written))
                }
            }
        }
    }

    private func exitSignal(_ channel: OpaquePointer, session: OpaquePointer) -> String? {
        var name: UnsafeMutablePointer<CChar>?
        var length = 0
        guard libssh2_channel_get_exit_signal(channel, &name, &length, nil, nil, nil, nil) == 0, let name else { return nil }
        defer { libssh2_free(session, name) }
        return length > 0 ? String(cString: name) : nil
    }

    func freeChannel(_ channel: OpaquePointer) {
        _ = try? retry(until: ContinuousClock.now + .seconds(1)) { libssh2_channel_free(channel) }
    }

    /// After a timeout or failure the channel's state is unknown. Ask the
    /// server to close it; if the server does not confirm within a short grace
    /// (sshd keeps an exec channel open until its process exits), keep it aside
    /// and free it later, so the session stays usable for the next steps.
    func abandon(_ channel: OpaquePointer) {
        let grace = ContinuousClock.now + .milliseconds(500)
        do {
            let closed = try retry(until: grace) { libssh2_channel_close(channel) }
            if LibSSH2.isSocketFailure(closed) { return }
            _ = try retry(until: grace) { libssh2_channel_free(channel) }
        } catch {
            lingeringChannels.append(channel)
        }
    }

    /// Frees abandoned channels whose close the server has confirmed since.
    func reapLingeringChannels() {
        lingeringChannels.removeAll { libssh2_channel_free($0) != LibSSH2.eagain }
    }
}
