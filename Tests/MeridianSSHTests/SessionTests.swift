import Foundation
import MeridianBasics
import MeridianSSH
import MeridianTestHosts
import Testing

/// Exec, quoting and session behaviour against real sshd test hosts.
@Suite struct SessionTests {
    @Test func hostileArgumentsArriveVerbatim() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.10")
        let session = try await SSHSession.open(endpoint(cluster, cluster.hosts[0]))
        // The marker would land in the cluster's folder, which goes with the cluster.
        let marker = cluster.directory + "/pwned"
        let hostile = [
            "plain", "two words", "it's", "\"double\"", "$(touch \(marker))", "`id`", "$HOME", "${PATH}",
            "line1\nline2", "-n", "--help", "-", "", " ", "*", "?", "[a]", "~", "a;b", "a|b", "a&&b", ">x", "<y",
            "\\", "\\'", "'\"'\"'", "tab\there", "é ü ∑", "#comment", "!event", "\r",
        ]
        let result = try await session.run(RemoteCommand(["printf", "%s\\0"] + hostile))
        let received = result.stdout.split(separator: 0, omittingEmptySubsequences: false).dropLast()
            .map { String(decoding: $0, as: UTF8.self) }
        #expect(received == hostile)
        #expect(!FileManager.default.fileExists(atPath: marker))

        // The same words survive a second shell level.
        let nested = try await session.run(RemoteCommand(["printf", "%s\\0"] + hostile).underPOSIXShell)
        #expect(nested.stdout == result.stdout)
        await session.close()
    }

    @Test func execReportsStreamsStatusAndInput() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.11")
        let session = try await SSHSession.open(endpoint(cluster, cluster.hosts[0]))

        let result = try await session.exec(RemoteCommand(fixedScript: "echo out; echo err >&2; exit 3"))
        #expect(result.stdoutText == "out\n")
        #expect(result.stderrText == "err\n")
        #expect(result.exitStatus == 3)
        #expect(!result.succeeded)

        let input = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let echoed = try await session.run(RemoteCommand(["cat"]), stdin: input)
        #expect(echoed.stdout == input)

        let chunks = ChunkLog()
        let streamed = try await session.run(RemoteCommand(fixedScript: "for i in 1 2 3; do echo $i; sleep 0.1; done; echo done >&2")) { chunks.add($0) }
        #expect(streamed.stdoutText == "1\n2\n3\n")
        #expect(chunks.stdout == "1\n2\n3\n")
        #expect(chunks.stderr == "done\n")
        #expect(chunks.count >= 2)

        // HOME comes from the test sshd's SetEnv: the session runs as the host.
        let home = try await session.run(RemoteCommand(fixedScript: "printf %s \"$HOME\""))
        #expect(home.stdoutText == cluster.hosts[0].home)

        let failure = await sshError { _ = try await session.run(RemoteCommand(fixedScript: "echo first >&2; echo 'the last words' >&2; exit 7")) }
        let error = try #require(failure)
        #expect(error.kind == .commandFailed(command: "echo first >&2; echo 'the last words' >&2; exit 7", exitCode: 7, signal: nil, stderrTail: "first\nthe last words"))
        #expect(error.description.contains("test-region/host1 (127.0.11.1:22)"))
        #expect(error.description.contains("exited with status 7"))

        let rejected = await sshError { _ = try await session.exec(RemoteCommand(["printf", "a\u{0}b"])) }
        #expect(rejected?.kindName == "commandRejected")
        await session.close()
    }

    @Test func commandTimeoutLeavesTheSessionUsable() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.12")
        let session = try await SSHSession.open(endpoint(cluster, cluster.hosts[0]))
        let timedOut = await sshError { _ = try await session.run(RemoteCommand(["sleep", "3"]), timeout: .milliseconds(300)) }
        #expect(timedOut?.kind == .commandTimeout(command: "sleep 3", seconds: 0.3))
        #expect(timedOut?.description.contains("command timeout") == true)
        let after = try await session.run(RemoteCommand(["echo", "still here"]))
        #expect(after.stdoutText == "still here\n")
        await session.close()
        let closed = await sshError { _ = try await session.run(RemoteCommand(["true"])) }
        #expect(closed?.kindName == "sessionClosed")
    }

    @Test func connectionDroppedMidCommand() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.13")
        let host = cluster.hosts[0]
        let session = try await SSHSession.open(endpoint(cluster, host))
        let marker = host.root + "/started"
        let running = Task { await sshError { _ = try await session.run(RemoteCommand(fixedScript: "touch \(RemoteCommand.quote(marker)) && sleep 20")) } }
        #expect(await eventually { FileManager.default.fileExists(atPath: marker) })
        cluster.dropConnections(host)
        let error = await running.value
        #expect(error?.kindName == "connectionDropped")
        #expect(error?.description.contains("127.0.13.1") == true)
        let next = await sshError { _ = try await session.run(RemoteCommand(["true"])) }
        #expect(next?.kindName == "connectionDropped")
        await session.close()
    }

    /// `localhost` and `::1` have no address but 127.0.0.1 and ::1, so this
    /// test alone listens there, on a port of its own (22014, after its
    /// octet), checked free first; every other test keeps to its 127.0.X.Y.
    static let sharedLoopbackPort = 22_014

    @Test func namesAndIPv6Resolve() async throws {
        let port = Self.sharedLoopbackPort
        for address in ["127.0.0.1", "::1"] {
            try #require(!TestHostCluster.accepts(address: address, port: port),
                         "\(address):\(port) is taken by another process; this test needs it for names and IPv6")
        }
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.14", port: port, extraListenAddresses: ["[::1]:\(port)", "127.0.0.1:\(port)"])
        let host = cluster.hosts[0]
        let key = try #require(PublicHostKey(openSSHLine: host.hostKeyLine))
        for address in ["::1", "localhost", host.address] {
            var target = endpoint(cluster, host, policy: HostKeyPolicy(pinnedKeys: [key.fingerprint]))
            target.address = address
            let session = try await SSHSession.open(target)
            // SSH_CONNECTION is "client port server port": the server side shows which address was reached.
            let result = try await session.run(RemoteCommand(fixedScript: "set -- $SSH_CONNECTION; echo $3"))
            let reached = result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(address == "localhost" ? ["127.0.0.1", "::1"].contains(reached) : reached == address)
            await session.close()
        }
        var unknownName = endpoint(cluster, host)
        unknownName.address = "no-such-host.invalid"
        let unresolved = await sshError { _ = try await SSHSession.open(unknownName) }
        #expect(unresolved?.kindName == "unreachable")
    }

    /// Keepalives are libssh2's `keepalive@libssh2.org` global requests; an
    /// sshd at LogLevel DEBUG logs each one it receives, so the host's log
    /// counts them: sent by the timer while the session is idle, and by the
    /// wait loop while a command runs.
    @Test func keepalivesAreSentWhileIdleAndDuringACommand() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.15", logLevel: "DEBUG")
        let host = cluster.hosts[0]
        func keepalives() -> Int {
            let log = (try? String(contentsOfFile: host.logFile, encoding: .utf8)) ?? ""
            return log.components(separatedBy: "rtype keepalive@libssh2.org").count - 1
        }
        var target = endpoint(cluster, host)
        target.keepaliveInterval = .seconds(1)
        let session = try await SSHSession.open(target)
        let idle = await Poll.until { keepalives() >= 2 }
        #expect(idle, "an idle session with a 1 s interval sent \(keepalives()) keepalives in 20 s")

        // During one long command the timer cannot run (the queue is busy), so
        // keepalives seen meanwhile come from the wait loop.
        let before = keepalives()
        let marker = host.root + "/keepalive-done"
        let running = Task {
            try await session.run(RemoteCommand(fixedScript: "until [ -e \(RemoteCommand.quote(marker)) ]; do sleep 0.1; done; echo alive"))
        }
        let during = await Poll.until { keepalives() >= before + 2 }
        FileManager.default.createFile(atPath: marker, contents: nil)
        #expect(try await running.value.stdoutText == "alive\n")
        #expect(during, "a running command saw \(keepalives() - before) keepalives in 20 s")
        await session.close()

        // Without an interval, none.
        let quiet = try TestHostCluster(count: 1, addressPrefix: "127.0.15", firstOctet: 2, logLevel: "DEBUG")
        var silent = endpoint(quiet, quiet.hosts[0])
        silent.keepaliveInterval = nil
        let plain = try await SSHSession.open(silent)
        #expect(try await plain.run(RemoteCommand(fixedScript: "sleep 2.5; echo alive")).stdoutText == "alive\n")
        let log = (try? String(contentsOfFile: quiet.hosts[0].logFile, encoding: .utf8)) ?? ""
        #expect(log.contains("Accepted publickey") && !log.contains("keepalive@libssh2.org"))
        await plain.close()
    }
}

/// Collects streamed output from the session's queue.
final class ChunkLog: @unchecked Sendable {
    private let lock = NSLock()
    private var chunks: [OutputChunk] = []
    func add(_ chunk: OutputChunk) { lock.lock(); chunks.append(chunk); lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return chunks.count }
    var stdout: String {
        lock.lock(); defer { lock.unlock() }
        return chunks.compactMap { if case .stdout(let data) = $0 { return String(decoding: data, as: UTF8.self) } else { return nil } }.joined()
    }
    var stderr: String {
        lock.lock(); defer { lock.unlock() }
        return chunks.compactMap { if case .stderr(let data) = $0 { return String(decoding: data, as: UTF8.self) } else { return nil } }.joined()
    }
}
