import Foundation
import MeridianTestHosts

/// A fleet repository for apply tests: one region per test host, each host
/// running its own component `inference-<region>` on its own pair of ports
/// (every test a distinct `portBase`), bound to the host's own address.
struct ApplyTestFleet {
    let directory: URL
    let cluster: TestHostCluster
    let regions: [String]
    let portBase: Int

    init(cluster: TestHostCluster, regions: [String], portBase: Int) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-apply-\(UUID().uuidString.prefix(8))")
        self.cluster = cluster
        self.regions = regions
        self.portBase = portBase
        let files = FileManager.default
        for folder in ["regions", "policies", "templates", "artifacts"] {
            try files.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try files.copyItem(at: CLI.repositoryRoot.appendingPathComponent("Tests/Fixtures/artifacts/inference"),
                           to: directory.appendingPathComponent("artifacts/inference"))
        try "region: {{ region.name }}\nport: {{ component.port }}\nmax_tokens: {{ vars.max_tokens }}\n"
            .write(to: directory.appendingPathComponent("templates/server.yaml.tmpl"), atomically: true, encoding: .utf8)
        try "api_key: {{ vars.api_key }}\n"
            .write(to: directory.appendingPathComponent("templates/secret.yaml.tmpl"), atomically: true, encoding: .utf8)
        for (index, region) in regions.enumerated() {
            try writeRegion(index, region, maxTokens: 100, version: nil)
        }
        try setPlatform("1.0.0")
        try "residency:\n  - data: EU\n    allowed: [EU]\n".write(to: directory.appendingPathComponent("policies/residency.yaml"), atomically: true, encoding: .utf8)
    }

    func component(_ index: Int) -> String { "inference-\(regions[index])" }
    func port(_ index: Int) -> Int { portBase + 2 * index }

    /// Rewrites meridian.yaml with every component at `version`, health-checked at `health`, upgraded
    /// by `strategy` (with `extra` YAML lines under each component), and `waves` appended verbatim;
    /// `startDelay` ("2.0.0=3") makes that version wait that many seconds before it listens;
    /// `connectTimeout` bounds each SSH login.
    func setPlatform(_ version: String, health: String = "/healthz", strategy: String? = nil, extra: [String] = [], gracePeriod: String? = nil, waves: String? = nil, startDelay: String? = nil, connectTimeout: String = "3s") throws {
        let delay = startDelay.map { ", --start-delay, \"\($0)\"" } ?? ""
        var text = """
        version: 1
        name: apply-test
        defaults:
        \(gracePeriod.map { "  grace_period: \($0)\n" } ?? "")\(cluster.sshDefaultsYAML(connectTimeout: connectTimeout))components:

        """
        for index in regions.indices {
            text += """
              \(component(index)):
                artifact: artifacts/inference/{version}
                start: [bin/serve, --address, "{address}", --port, "{port}"\(delay)]
                ports: { blue: \(port(index)), green: \(port(index) + 1) }
                health: \(health)

            """
            if let strategy { text += "    strategy: \(strategy)\n" }
            for line in extra { text += "    \(line)\n" }
        }
        text += "platform:\n"
        for index in regions.indices { text += "  \(component(index)): \(version)\n" }
        if let waves { text += waves }
        try text.write(to: directory.appendingPathComponent("meridian.yaml"), atomically: true, encoding: .utf8)
    }

    /// Rewrites one region's file.
    func writeRegion(_ index: Int, _ region: String, maxTokens: Int, version: String?, policies: [String] = ["residency"]) throws {
        let host = cluster.hosts[index]
        var text = """
        name: \(region)
        jurisdiction: EU
        hosts:
          - name: \(host.name)
            address: \(host.address)
            root: \(host.root)
            roles: [gateway, \(component(index))]
            host_key: \(host.hostKeyLine)
        variables:
          max_tokens: \(maxTokens)
          api_key: env:MERIDIAN_TEST_API_KEY
        config:
          - { template: templates/server.yaml.tmpl, destination: config/\(component(index))/server.yaml, component: \(component(index)) }
          - { template: templates/secret.yaml.tmpl, destination: config/\(component(index))/secret.yaml, component: \(component(index)) }
        policies: [\(policies.joined(separator: ", "))]

        """
        if let version { text += "versions:\n  \(component(index)): \(version)\n" }
        try text.write(to: directory.appendingPathComponent("regions/\(region).yaml"), atomically: true, encoding: .utf8)
    }

    var path: String { directory.path }
    var statePath: String { directory.appendingPathComponent(".meridian/state.db").path }

    /// Runs the built meridian on this fleet; `secret: false` leaves the API key's variable unset.
    func meridian(_ arguments: [String], secret: Bool = true) throws -> CLIRun {
        try CLI.run(arguments + ["--fleet", path], environment: secret ? ["MERIDIAN_TEST_API_KEY": "s3cret-value"] : [:])
    }

    /// Starts meridian without waiting for it, its output going to `output`.
    func start(_ arguments: [String], output: URL) throws -> Process {
        try CLI.start(arguments + ["--fleet", path], environment: ["MERIDIAN_TEST_API_KEY": "s3cret-value"], output: output)
    }

    /// Removes everything meridian wrote on the hosts, so the next test sees fresh hosts.
    func wipeHosts() {
        for host in cluster.hosts {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: host.root)) ?? [] {
                try? FileManager.default.removeItem(atPath: host.root + "/" + name)
            }
        }
    }

    /// Stops every component process the tests started (they outlive sshd), then removes the fleet.
    func tearDown() {
        cluster.stopSlotProcesses()
        try? FileManager.default.removeItem(at: directory)
    }
}
