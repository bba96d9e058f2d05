import Foundation
import MeridianBasics
import MeridianSSH
import MeridianTestHosts
import Testing

/// Fan-out, direct-tcpip probes and host checks against real sshd test hosts.
@Suite struct FanOutTests {
    @Test func deadHostsFailAloneWhileOthersSucceed() async throws {
        let cluster = try TestHostCluster(count: 6, addressPrefix: "127.0.40")
        let killed = cluster.hosts[1]
        let paused = cluster.hosts[4]
        cluster.kill(killed)
        cluster.pause(paused)
        defer { cluster.resume(paused) }
        // Only the paused host has a short timeout, so a loaded machine cannot
        // turn a slow healthy login into a false failure.
        let endpoints = cluster.hosts.map { endpoint(cluster, $0, connectTimeout: $0 == paused ? .seconds(2) : .seconds(30)) }
        let outcomes = await SSHFanOut.run(endpoints, parallelism: 3) { session in
            // Every step of the run reuses the one session.
            var lines: [String] = []
            for step in 1...3 {
                lines.append(try await session.run(RemoteCommand(["echo", "step \(step)"])).stdoutText)
            }
            return lines.joined()
        }
        #expect(outcomes.map(\.endpoint.hostName) == cluster.hosts.map(\.name))
        for (index, outcome) in outcomes.enumerated() {
            switch index {
            case 1:
                let error = try #require(outcome.result.failure as? SSHError)
                #expect(error.kindName == "unreachable")
                #expect(error.description.contains("test-region/host2 (127.0.40.2:22)"))
            case 4:
                let error = try #require(outcome.result.failure as? SSHError)
                #expect(error.kind == .connectTimeout(seconds: 2, stage: "SSH handshake"))
            default:
                #expect(try outcome.result.get() == "step 1\nstep 2\nstep 3\n")
                let log = try String(contentsOfFile: cluster.hosts[index].logFile, encoding: .utf8)
                #expect(log.components(separatedBy: "Accepted publickey").count - 1 == 1)
            }
        }
    }

    @Test func probesReachTheServiceAddressThroughTheSession() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.41")
        // The service listens on another address than the one SSH reaches (a host's `listen`).
        let server = try LoopbackHTTPServer(address: "127.0.41.200", status: 200, headers: ["X-Slot": "blue"], body: "{\"status\":\"ok\"}")
        let session = try await SSHSession.open(endpoint(cluster, cluster.hosts[0]))
        let response = try await session.httpRequest(address: server.address, port: server.port, path: "/health?deep=1", headers: [HTTPHeader(name: "X-Data-Residency", value: "EU")])
        #expect(response.status == 200)
        #expect(response.header("x-slot") == "blue")
        #expect(response.bodyText == "{\"status\":\"ok\"}")
        let seen = try #require(server.requests.first?.head)
        #expect(seen.hasPrefix("GET /health?deep=1 HTTP/1.1\r\n"))
        #expect(seen.contains("Host: 127.0.41.200:\(server.port)"))
        #expect(seen.contains("Connection: close"))
        #expect(seen.contains("X-Data-Residency: EU"))

        let posted = try await session.httpRequest(method: "POST", address: server.address, port: server.port, path: "/smoke", body: Data("ping".utf8))
        #expect(posted.status == 200)
        // Nothing listens on that port at the host's SSH address.
        let elsewhere = try #require(await sshError { _ = try await session.httpRequest(address: cluster.hosts[0].address, port: server.port, path: "/health") })
        #expect(elsewhere.description.contains("request to \(cluster.hosts[0].address):\(server.port)"), "\(elsewhere)")

        server.stop()
        let refused = try #require(await sshError { _ = try await session.httpRequest(address: server.address, port: server.port, path: "/health") })
        #expect(refused.kindName == "tunnelFailed")
        let injected = try #require(await sshError { _ = try await session.httpRequest(address: server.address, port: 1, path: "/x HTTP/1.1\r\nEvil: 1") })
        #expect(injected.kindName == "tunnelFailed")
        let badAddress = try #require(await sshError { _ = try await session.httpRequest(address: "127.0.0.1 -oProxy", port: 1, path: "/") })
        #expect(badAddress.kindName == "tunnelFailed")
        // The session still works after failed probes.
        #expect(try await session.run(RemoteCommand(["true"])).succeeded)
        await session.close()
    }

    @Test func hostCheckReportsKeyAuthAndPrograms() async throws {
        let cluster = try TestHostCluster(count: 3, addressPrefix: "127.0.42")
        cluster.kill(cluster.hosts[2])
        var unknown = endpoint(cluster, cluster.hosts[1])
        unknown.hostKeyPolicy = HostKeyPolicy()
        let reports = await HostCheck.runAll([endpoint(cluster, cluster.hosts[0]), unknown, endpoint(cluster, cluster.hosts[2])])

        #expect(reports[0].failure == nil)
        #expect(reports[0].hostKeyStatus == .trusted)
        #expect(reports[0].authenticated)
        #expect(reports[0].roundTrip != nil)
        let capabilities = try #require(reports[0].capabilities)
        #expect(capabilities.sh && capabilities.tar && capabilities.sha256sum)
        #expect(capabilities.nginx == FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx"))

        #expect(reports[1].hostKeyStatus == .unknown)
        #expect(reports[1].hostKey == PublicHostKey(openSSHLine: cluster.hosts[1].hostKeyLine))
        #expect(!reports[1].authenticated)

        #expect(reports[2].hostKeyStatus == .notSeen)
        #expect(reports[2].failure?.kindName == "unreachable")
    }

    @Test func capabilityProbeParsing() {
        let parsed = HostCapabilities.parse("sh yes\ntar yes\nsha256sum no\nnginx yes\n")
        #expect(parsed == HostCapabilities(sh: true, tar: true, sha256sum: false, nginx: true))
        #expect(!parsed.isSufficient(gateway: false))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
