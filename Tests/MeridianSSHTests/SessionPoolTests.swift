import Foundation
import MeridianBasics
import MeridianSSH
import MeridianTestHosts
import Testing

/// A command's session pool against real sshd test hosts: one login per host
/// across fan-outs, a dropped connection reopened, everything closed at the end.
@Suite struct SessionPoolTests {
    func logins(_ host: TestHost) throws -> Int {
        try String(contentsOfFile: host.logFile, encoding: .utf8).components(separatedBy: "Accepted publickey").count - 1
    }

    @Test func fanOutsOverOnePoolLogInOncePerHost() async throws {
        let cluster = try TestHostCluster(count: 3, addressPrefix: "127.0.46")
        let endpoints = cluster.hosts.map { endpoint(cluster, $0) }
        let pool = SSHSessionPool()
        for phase in 1...3 {
            let outcomes = await SSHFanOut.run(endpoints, parallelism: 2, pool: pool) { session in
                try await session.run(RemoteCommand(["echo", "phase \(phase)"])).stdoutText
            }
            #expect(try outcomes.map { try $0.result.get() } == Array(repeating: "phase \(phase)\n", count: 3))
        }
        #expect(pool.count == 3)
        for host in cluster.hosts { #expect(try logins(host) == 1, "\(host.name) was logged into more than once") }
        await pool.closeAll()
        #expect(pool.count == 0)
    }

    @Test func aDroppedSessionIsReopenedAndAFailedCommandKeepsItsSession() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.47")
        let host = cluster.hosts[0]
        let pool = SSHSessionPool()
        let first = try await pool.session(for: endpoint(cluster, host))
        #expect(try await first.run(RemoteCommand(["true"])).succeeded)

        // A command that fails is the host's answer, not a broken connection: the session stays.
        let failed = await SSHFanOut.run([endpoint(cluster, host)], pool: pool) { session in
            try await session.run(RemoteCommand(["false"]))
        }
        #expect(failed[0].result.failure != nil)
        #expect(try await pool.session(for: endpoint(cluster, host)) === first)

        cluster.dropConnections(host)
        let noticed = await Poll.until { !(await first.looksAlive()) }
        #expect(noticed, "the session did not notice its connection dropping within 20 s")
        let outcomes = await SSHFanOut.run([endpoint(cluster, host)], pool: pool) { session in
            try await session.run(RemoteCommand(["echo", "again"])).stdoutText
        }
        #expect(try outcomes[0].result.get() == "again\n")
        #expect(try logins(host) == 2)
        #expect(pool.count == 1)
        await pool.closeAll()
    }
}
