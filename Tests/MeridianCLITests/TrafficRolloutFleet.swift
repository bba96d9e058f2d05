import Foundation
import MeridianTestHosts

/// A one-region fleet with a real nginx gateway for rollouts under live
/// traffic: host 0 is the gateway, host 1 runs the example stack's inference
/// service (stack/), routed at /v1/. Releases are made by the test from the
/// stack, each with its own release.json (so a test picks a version's faults).
struct TrafficRolloutFleet: LiveTestFleet {
    let directory: URL
    let cluster: TestHostCluster
    let slotPort: Int
    let gatewayPort: Int

    var gateway: TestHost { cluster.hosts[0] }
    var service: TestHost { cluster.hosts[1] }
    var path: String { directory.path }
    var statePath: String { directory.appendingPathComponent(".meridian/state.db").path }

    init(addressPrefix: String, portBase: Int) throws {
        cluster = try TestHostCluster(count: 2, addressPrefix: addressPrefix)
        slotPort = portBase
        gatewayPort = portBase + 10
        directory = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        let files = FileManager.default
        for folder in ["regions", "policies", "artifacts/inference"] {
            try files.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try "residency:\n  - data: EU\n    allowed: [EU]\n".write(to: directory.appendingPathComponent("policies/residency.yaml"), atomically: true, encoding: .utf8)
        try """
        name: north
        jurisdiction: EU
        gateway: { port: \(gatewayPort) }
        hosts:
          - { name: \(gateway.name), address: \(gateway.address), root: \(gateway.root), roles: [gateway], host_key: "\(gateway.hostKeyLine)" }
          - { name: \(service.name), address: \(service.address), root: \(service.root), roles: [inference], host_key: "\(service.hostKeyLine)" }
        policies: [residency]

        """.write(to: directory.appendingPathComponent("regions/north.yaml"), atomically: true, encoding: .utf8)
    }

    /// A release of the example inference service: the stack's code and a
    /// release.json with these faults.
    func addRelease(_ version: String, errorRate: Double = 0, addedLatency: String? = nil) throws {
        var faults: [String] = []
        if errorRate > 0 { faults.append("\"error_rate\": \(errorRate)") }
        if let addedLatency { faults.append("\"added_latency\": \"\(addedLatency)\"") }
        try Self.writeRelease(version, faults: faults, in: directory)
    }

    /// Writes `artifacts/inference/<version>` under `fleet`: the stack's code
    /// and a release.json with these faults (JSON members).
    static func writeRelease(_ version: String, faults: [String], in fleet: URL) throws {
        let files = FileManager.default
        let folder = fleet.appendingPathComponent("artifacts/inference/\(version)")
        try files.createDirectory(at: folder, withIntermediateDirectories: true)
        for part in ["bin", "lib"] {
            try files.copyItem(at: CLI.repositoryRoot.appendingPathComponent("stack/\(part)"), to: folder.appendingPathComponent(part))
        }
        try "{\"component\": \"inference\", \"version\": \"\(version)\", \"faults\": {\(faults.joined(separator: ", "))}}\n"
            .write(to: folder.appendingPathComponent("release.json"), atomically: true, encoding: .utf8)
    }

    /// meridian.yaml with inference at `version`, upgraded by `strategy`;
    /// canary steps of `pause` each, analysed with thresholds a test can rely on.
    func setPlatform(_ version: String, strategy: String, steps: [Int] = [10, 50, 100], pause: String = "3s", minRequests: Int = 20) throws {
        try """
        version: 1
        name: traffic-test
        defaults:
          grace_period: 1s
        \(cluster.sshDefaultsYAML())components:
          inference:
            artifact: artifacts/inference/{version}
            start: [bin/serve, --address, "{address}", --port, "{port}", --slot, "{slot}"]
            ports: { blue: \(slotPort), green: \(slotPort + 1) }
            route: /v1/
            health: /healthz
            smoke:
              - { name: models are listed, path: /v1/models, expect_body: '"object":"list"' }
            strategy: \(strategy)
            canary:
              steps: [\(steps.map(String.init).joined(separator: ", "))]
              pause: \(pause)
              analysis:
                max_error_rate: 0.01
                max_p99_latency: 2s
                min_requests: \(minRequests)
                max_error_rate_increase: 0.005
                max_latency_ratio: 3
                confidence: 0.99
              inconclusive: { wait: 15s, then: fail }
        platform:
          inference: \(version)

        """.write(to: directory.appendingPathComponent("meridian.yaml"), atomically: true, encoding: .utf8)
    }
}

/// A bounded load generator: `workers` threads, each on its own keep-alive
/// connection to the gateway, asking GET `path` until stopped or until each
/// has sent `limit` requests, `pause` apart (4 ms by default, so the load
/// leaves the machine's cores to the services and the suites running beside it). Every answer is counted with the version and
/// slot that served it (the stack's X-Meridian-Version and X-Meridian-Slot).
final class GatewayLoad: @unchecked Sendable {
    struct Answer: Sendable {
        var status: Int
        var version: String
    }

    private let lock = NSLock()
    private var answers: [Answer] = []
    private var errors: [String] = []
    private var stopped = false
    private var finished = 0
    let workers: Int

    init(address: String, port: Int, path: String = "/v1/models", workers: Int = 4, limit: Int = 20_000, pause: Duration = .milliseconds(4)) {
        self.workers = workers
        for _ in 0..<workers {
            Thread.detachNewThread { [self] in
                let client = KeepAliveHTTPClient(address: address, port: port, timeoutSeconds: 10)
                for _ in 0..<limit {
                    if lock.withLock({ stopped }) { break }
                    do {
                        // The fleet's residency rule covers EU data: requests carry it, as clients of a gateway must.
                        let response = try client.send("GET", path, headers: [("X-Data-Residency", "EU")])
                        let version = response.headers.first { $0.key.lowercased() == "x-meridian-version" }?.value ?? "-"
                        lock.withLock { answers.append(Answer(status: response.status, version: version)) }
                        if pause > .zero { Thread.sleep(forTimeInterval: Double(pause.components.attoseconds) / 1e18 + Double(pause.components.seconds)) }
                    } catch {
                        lock.withLock { errors.append("\(error)") }
                        client.disconnect()
                    }
                }
                client.disconnect()
                lock.withLock { finished += 1 }
            }
        }
    }

    var count: Int { lock.withLock { answers.count + errors.count } }

    /// Stops the workers and waits (bounded, 30 s) for them to end.
    func stop() async -> (answers: [Answer], errors: [String]) {
        lock.withLock { stopped = true }
        for _ in 0..<3000 where lock.withLock({ finished < workers }) { try? await Task.sleep(for: .milliseconds(10)) }
        return lock.withLock { (answers, errors) }
    }

    /// Waits (bounded, 30 s) until at least `count` requests were answered.
    func waitFor(_ count: Int) async -> Bool {
        for _ in 0..<3000 {
            if self.count >= count { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }
}
