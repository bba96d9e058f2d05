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

        // A line break anywhere in the request is refused before anything is
        // sent, against a live server that would otherwise take the injected header.
        let before = server.requests.count
        let injections: [(String, () async throws -> Void)] = [
            ("path", { _ = try await session.httpRequest(address: server.address, port: server.port, path: "/x\r\nEvil:1") }),
            ("method", { _ = try await session.httpRequest(method: "GET\nEvil:1", address: server.address, port: server.port, path: "/x") }),
            ("header value", { _ = try await session.httpRequest(address: server.address, port: server.port, path: "/x", headers: [HTTPHeader(name: "X-A", value: "1\r\nEvil:1")]) }),
            ("header name", { _ = try await session.httpRequest(address: server.address, port: server.port, path: "/x", headers: [HTTPHeader(name: "X-A\nEvil", value: "1")]) }),
        ]
        for (place, send) in injections {
            let injected = try #require(await sshError(send), "a line break in the \(place) was sent")
            #expect(injected.kindName == "tunnelFailed", "\(place)")
            #expect(injected.tunnelReason?.hasPrefix("refusing a line break in") == true, "\(place): \(injected)")
        }
        let spaced = try #require(await sshError { _ = try await session.httpRequest(address: server.address, port: server.port, path: "/x y") })
        #expect(spaced.tunnelReason?.contains("must start with / and hold no space") == true, "\(spaced)")
        #expect(server.requests.count == before, "a refused request reached the server: \(server.requests.dropFirst(before).map(\.head))")

        server.stop()
        let refused = try #require(await sshError { _ = try await session.httpRequest(address: server.address, port: server.port, path: "/health") })
        #expect(refused.kindName == "tunnelFailed")
        #expect(refused.tunnelReason?.contains("nothing listening") == true, "\(refused)")
        let badAddress = try #require(await sshError { _ = try await session.httpRequest(address: "127.0.0.1 -oProxy", port: 1, path: "/") })
        #expect(badAddress.kindName == "tunnelFailed")
        // The session still works after failed probes.
        #expect(try await session.run(RemoteCommand(["true"])).succeeded)
        await session.close()
    }

    /// At most `parallelism` sessions are open at once, and that many are.
    /// Each host's body records, in a folder the hosts share (they run on this
    /// machine), when it is inside its session; each waits (bounded) until
    /// `cap` are inside or every host has begun, which only a cap at least
    /// that wide lets happen, then stays a second, and records the most it
    /// saw inside at once.
    @Test func theFanOutKeepsToItsParallelismAndReachesIt() async throws {
        let cap = 3
        let cluster = try TestHostCluster(count: 8, addressPrefix: "127.0.43")
        let shared = cluster.directory + "/inside"
        for folder in ["in", "began", "seen"] { try FileManager.default.createDirectory(atPath: shared + "/" + folder, withIntermediateDirectories: true) }
        let total = cluster.hosts.count
        let outcomes = await SSHFanOut.run(cluster.hosts.map { endpoint(cluster, $0, commandTimeout: .seconds(300)) }, parallelism: cap) { session in
            let me = RemoteCommand.quote(session.endpoint.hostName)
            let dir = RemoteCommand.quote(shared)
            // Enter; stay until `cap` are inside (or every host has begun:
            // the last ones have fewer peers left) and then one more second,
            // in which a session past the cap would be seen, unless one is
            // seen sooner. The most seen inside is recorded.
            let script = """
                d=\(dir); touch "$d/in/"\(me) "$d/began/"\(me)
                i=0; full=0; most=0
                while :; do
                  n=$(ls "$d/in" | wc -l); [ "$n" -gt "$most" ] && most=$n
                  [ "$n" -gt \(cap) ] && break
                  if [ "$n" -ge \(cap) ] || [ "$(ls "$d/began" | wc -l)" -ge \(total) ]; then
                    full=$((full + 1)); [ $full -ge 100 ] && break
                  fi
                  i=$((i + 1)); [ $i -le 12000 ] || { echo "never $n inside" >&2; exit 9; }
                  sleep 0.01
                done
                echo "$most" > "$d/seen/"\(me); rm "$d/in/"\(me); echo "$most"
                """
            return try await session.run(RemoteCommand(fixedScript: script)).stdoutText
        }
        for outcome in outcomes { #expect((try? outcome.result.get()) != nil, "\(outcome.endpoint.hostName): \(String(describing: outcome.result.failure))") }
        let seen = try cluster.hosts.map { host in
            Int(try String(contentsOfFile: shared + "/seen/" + host.name, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }
        #expect(seen.max() == cap, "the most sessions seen inside at once was \(seen.max() ?? 0), the cap is \(cap): \(seen)")
        #expect(seen.allSatisfy { $0 >= 1 && $0 <= cap }, "\(seen)")
        // Every live host's sshd accepted exactly one login.
        for host in cluster.hosts {
            let log = try String(contentsOfFile: host.logFile, encoding: .utf8)
            #expect(log.components(separatedBy: "Accepted publickey").count - 1 == 1, "\(host.name)")
        }
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
        #expect(capabilities.nginxJavaScript == FileManager.default.fileExists(atPath: NginxJavaScriptModule.path))

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
        let gateway = HostCapabilities.parse("sh yes\ntar yes\nsha256sum yes\nnginx yes\nnginx-js no\n")
        #expect(gateway.isSufficient(gateway: true) && !gateway.isSufficient(gateway: true, residency: true))
        #expect(HostCapabilities.parse("sh yes\ntar yes\nsha256sum yes\nnginx yes\nnginx-js yes\n").isSufficient(gateway: true, residency: true))
    }
}

extension SSHError {
    /// The reason of a `tunnelFailed` error.
    var tunnelReason: String? {
        if case .tunnelFailed(_, _, let reason) = kind { return reason }
        return nil
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
