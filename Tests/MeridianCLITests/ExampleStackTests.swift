import Foundation
import Testing
import MeridianBasics
import MeridianEngine
import MeridianModel
import MeridianSSH
import MeridianTestHosts

/// The example stack (stack/, docs/example-stack.md): its own Python tests,
/// and the stack applied by the built meridian to real sshd test hosts on
/// 127.0.176.x, then asked through each host's SSH connection.
@Suite(.serialized) struct ExampleStackTests {
    @Test func theServicesOwnTestsPass() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-B", "-m", "unittest", "discover", "-s", "stack/tests"]
        process.currentDirectoryURL = CLI.repositoryRoot
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "python3 -m unittest discover -s stack/tests:\n\(text)")
        #expect(text.contains("OK"), "\(text)")
    }

    /// The repository's own release folders link only inside the repository, so plan packs them.
    @Test func theRepositoryReleasesPackWithTheirLinksFollowed() throws {
        let artifacts = CLI.repositoryRoot.appendingPathComponent("artifacts")
        var checked = 0
        for component in try FileManager.default.contentsOfDirectory(atPath: artifacts.path).sorted() {
            for version in try FileManager.default.contentsOfDirectory(atPath: artifacts.appendingPathComponent(component).path).sorted() {
                let shown = "artifacts/\(component)/\(version)"
                #expect(ArtifactPreparation.linkProblem(folder: CLI.repositoryRoot.appendingPathComponent(shown).path, fleetRoot: CLI.repositoryRoot.path, shown: shown) == nil)
                checked += 1
            }
        }
        #expect(checked == 6)
    }

    /// Three hosts on one machine: two run inference on the same slot ports
    /// (each binds its own address), the third listens on an address of its
    /// own (`listen`) that is not its SSH address.
    @Test func hostsOnOneMachineServeTheSamePortsOnTheirOwnAddresses() async throws {
        let cluster = try TestHostCluster(count: 3, addressPrefix: "127.0.176")
        let listen = "127.0.176.103"
        let fleet = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-stack-\(UUID().uuidString.prefix(8))")
        defer {
            cluster.stopSlotProcesses()
            try? FileManager.default.removeItem(at: fleet)
        }
        try writeFleet(fleet, cluster: cluster, listen: listen)
        try ExampleStack.install(into: fleet, releases: [
            ExampleStack.Release(component: "inference", version: "2.3.1"),
            ExampleStack.Release(component: "knowledge-base", version: "1.8.0"),
        ])

        let validate = try CLI.run(["validate", "--fleet", fleet.path])
        #expect(validate.status == 0, "\(validate.stdout)\n\(validate.stderr)")
        let apply = try CLI.run(["apply", "--auto-approve", "--fleet", fleet.path])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        let (h1, h2, h3) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        for line in ["health-check inference (blue) on \(h1.address):18861 /healthz — ok",
                     "health-check inference (blue) on \(h2.address):18861 /healthz — ok",
                     "health-check knowledge-base (blue) on \(h1.address):18871 /healthz — ok",
                     "health-check knowledge-base (blue) on \(listen):18871 /healthz — ok"] {
            #expect(apply.stdout.contains(line), "missing \(line) in:\n\(apply.stdout)")
        }

        // The same port on two hosts of one machine: two processes, one per address.
        for host in [h1, h2] {
            let session = try await SSHSession.open(endpoint(cluster, host))
            let health = try await session.httpRequest(address: host.address, port: 18861, path: "/healthz")
            #expect(health.status == 200)
            #expect(health.header("X-Meridian-Version") == "2.3.1")
            #expect(health.header("X-Meridian-Slot") == "blue")
            let completion = try await session.httpRequest(
                method: "POST", address: host.address, port: 18861, path: "/v1/completions",
                headers: [HTTPHeader(name: "Content-Type", value: "application/json")],
                body: Data(#"{"prompt": "The gateway sends", "max_tokens": 6}"#.utf8))
            #expect(completion.status == 200, "\(completion.bodyText)")
            let json = try #require(try JSONSerialization.jsonObject(with: completion.body) as? [String: Any])
            #expect(json["model"] as? String == "lab-model")
            let choices = try #require(json["choices"] as? [[String: Any]])
            #expect((choices.first?["text"] as? String)?.isEmpty == false)
            let smoke = await SmokeProbeRunner.run([Self.inferenceSmoke], address: host.address, port: 18861, on: session)
            #expect(smoke.map(\.passed) == [true], "\(smoke)")
            await session.close()
        }
        let pids = Set([h1, h2].compactMap { try? String(contentsOfFile: $0.root + "/run/inference-blue.pid", encoding: .utf8) })
        #expect(pids.count == 2)

        // The third host's services listen on `listen`, not on its SSH address.
        let session = try await SSHSession.open(endpoint(cluster, h3))
        let search = try await session.httpRequest(address: listen, port: 18871, path: "/kb/search?q=canary+steps&limit=3")
        #expect(search.status == 200, "\(search.bodyText)")
        #expect(search.header("X-Meridian-Version") == "1.8.0")
        #expect(search.header("X-Meridian-Slot") == "blue")
        let found = try #require(try JSONSerialization.jsonObject(with: search.body) as? [String: Any])
        let results = try #require(found["results"] as? [[String: Any]])
        #expect(results.first?["id"] as? String == "canary-rollouts")
        #expect(results.count <= 3)
        let failing = SmokeProbe(name: "a document that is not there", path: "/kb/search?q=zebra", expectBodyContains: "zebra-facts")
        let head = SmokeProbe(name: "health by HEAD", method: "HEAD", path: "/healthz")
        let smoke = await SmokeProbeRunner.run([Self.searchSmoke, failing, head], address: listen, port: 18871, on: session)
        #expect(smoke.map(\.passed) == [true, false, true], "\(smoke)")
        #expect(smoke.first?.request == "GET \(listen):18871/kb/search?q=canary")
        #expect(smoke[1].failure?.contains("does not contain zebra-facts") == true, "\(smoke)")
        let elsewhere = await SmokeProbeRunner.run([Self.searchSmoke], address: h3.address, port: 18871, on: session)
        #expect(elsewhere.first?.failure?.contains("refused") == true, "\(elsewhere)")
        await session.close()

        // The region's configuration reached the service: max_results from the template.
        #expect(try String(contentsOfFile: h3.root + "/config/knowledge-base/server.yaml", encoding: .utf8).contains("max_results: 3"))
        let clean = try CLI.run(["plan", "--detailed-exitcode", "--fleet", fleet.path])
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")
        // Drift asks each active slot's health at the address the manifest recorded (the listen address for host3).
        let drift = try CLI.run(["drift", "--fleet", fleet.path])
        #expect(drift.status == 0, "\(drift.stdout)\n\(drift.stderr)")
        let manifest = try String(contentsOfFile: h3.root + "/state/manifest.json", encoding: .utf8)
        #expect(manifest.contains("\"address\":\"\(listen)\"") || manifest.contains("\"address\" : \"\(listen)\""), "\(manifest)")
    }

    static let inferenceSmoke = SmokeProbe(name: "models are listed", path: "/v1/models", expectBodyContains: #""object":"list""#)
    static let searchSmoke = SmokeProbe(name: "search answers", path: "/kb/search?q=canary", expectBodyContains: #""results""#)

    func endpoint(_ cluster: TestHostCluster, _ host: TestHost) -> SSHEndpoint {
        SSHEndpoint(region: "lab", hostName: host.name, address: host.address, port: host.port, user: cluster.user,
                    identityFiles: [cluster.identityFile], hostKeyPolicy: HostKeyPolicy(knownHostsFile: cluster.knownHostsFile),
                    connectTimeout: .seconds(10), commandTimeout: .seconds(60))
    }

    /// A one-region fleet with the example fleet's components, start lines and templates.
    func writeFleet(_ fleet: URL, cluster: TestHostCluster, listen: String) throws {
        let files = FileManager.default
        for folder in ["regions", "policies", "templates"] {
            try files.createDirectory(at: fleet.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        for template in ["inference.yaml.tmpl", "knowledge-base.yaml.tmpl"] {
            try files.copyItem(at: CLI.repositoryRoot.appendingPathComponent("templates/\(template)"), to: fleet.appendingPathComponent("templates/\(template)"))
        }
        let start = #"[bin/serve, --address, "{address}", --port, "{port}", --slot, "{slot}", --root, "{root}"]"#
        try """
        version: 1
        name: stack-test
        defaults:
          ssh: { user: \(cluster.user), port: \(cluster.hosts[0].port), identity: \(cluster.identityFile), agent: false, known_hosts: \(cluster.knownHostsFile), connect_timeout: 5s, command_timeout: 60s }
        components:
          inference:
            artifact: artifacts/inference/{version}
            start: \(start)
            ports: { blue: 18861, green: 18862 }
            smoke:
              - { name: models are listed, path: /v1/models, expect_body: '"object":"list"' }
          knowledge-base:
            artifact: artifacts/knowledge-base/{version}
            start: \(start)
            ports: { blue: 18871, green: 18872 }
        platform: { inference: 2.3.1, knowledge-base: 1.8.0 }

        """.write(to: fleet.appendingPathComponent("meridian.yaml"), atomically: true, encoding: .utf8)
        let (h1, h2, h3) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        func host(_ host: TestHost, _ roles: String, listen: String? = nil) -> String {
            "  - { name: \(host.name), address: \(host.address),\(listen.map { " listen: \($0)," } ?? "") root: \(host.root), roles: \(roles), host_key: \"\(host.hostKeyLine)\" }\n"
        }
        try ("""
        name: lab
        jurisdiction: EU
        hosts:

        """ + host(h1, "[gateway, inference, knowledge-base]") + host(h2, "[inference]") + host(h3, "[knowledge-base]", listen: listen) + """
        variables: { model: lab-model, max_tokens: 64, retention_days: 7, log_level: info, kb_max_results: 3 }
        config:
          - { template: templates/inference.yaml.tmpl, destination: config/inference/server.yaml, component: inference }
          - { template: templates/knowledge-base.yaml.tmpl, destination: config/knowledge-base/server.yaml, component: knowledge-base }
        policies: [residency]

        """).write(to: fleet.appendingPathComponent("regions/lab.yaml"), atomically: true, encoding: .utf8)
        try "residency:\n  - data: EU\n    allowed: [EU]\n".write(to: fleet.appendingPathComponent("policies/residency.yaml"), atomically: true, encoding: .utf8)
    }
}
