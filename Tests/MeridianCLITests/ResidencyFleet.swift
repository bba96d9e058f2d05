import Foundation
import MeridianTestHosts

/// A fleet of three one-host regions in two jurisdictions, each host its
/// region's gateway and inference service (the example stack), applied with
/// the built binary: eu-a and eu-b in the EU, us-a in the US. EU data may be
/// processed only in the EU, US data only in the US, so a gateway that sends
/// a request to the wrong region is a violation a test can see.
struct ResidencyFleet: LiveTestFleet {
    static let regions = [("eu-a", "EU"), ("eu-b", "EU"), ("us-a", "US")]
    /// Data jurisdiction → the regions allowed to process it.
    static let allowed = ["EU": Set(["eu-a", "eu-b"]), "US": Set(["us-a"])]

    let directory: URL
    let cluster: TestHostCluster
    let slotPort: Int
    let gatewayPort: Int

    var path: String { directory.path }
    func host(_ region: String) -> TestHost { cluster.hosts[Self.regions.firstIndex { $0.0 == region }!] }

    init(addressPrefix: String, portBase: Int) throws {
        cluster = try TestHostCluster(count: Self.regions.count, addressPrefix: addressPrefix)
        slotPort = portBase
        gatewayPort = portBase + 10
        directory = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        let files = FileManager.default
        for folder in ["regions", "policies", "artifacts/inference"] {
            try files.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try setRules([("EU", ["EU"]), ("US", ["US"])])
        for (name, _) in Self.regions { try setRegion(name) }
    }

    /// policies/residency.yaml with these rules: data jurisdiction → allowed ones.
    func setRules(_ rules: [(String, [String])]) throws {
        try ("residency:\n" + rules.map { "  - data: \($0.0)\n    allowed: [\($0.1.joined(separator: ", "))]\n" }.joined())
            .write(to: directory.appendingPathComponent("policies/residency.yaml"), atomically: true, encoding: .utf8)
    }

    /// The region's file; `version` pins its inference version (a rollout in that region only).
    func setRegion(_ name: String, version: String? = nil) throws {
        let jurisdiction = Self.regions.first { $0.0 == name }!.1
        let host = host(name)
        try """
        name: \(name)
        jurisdiction: \(jurisdiction)
        gateway: { port: \(gatewayPort) }
        hosts:
          - { name: \(host.name), address: \(host.address), root: \(host.root), roles: [gateway, inference], host_key: "\(host.hostKeyLine)" }
        policies: [residency]
        \(version.map { "versions: { inference: \($0) }\n" } ?? "")
        """.write(to: directory.appendingPathComponent("regions/\(name).yaml"), atomically: true, encoding: .utf8)
    }

    /// A release of the example inference service (stack/), without faults.
    func addRelease(_ version: String) throws {
        try TrafficRolloutFleet.writeRelease(version, faults: [], in: directory)
    }

    /// meridian.yaml: inference at `version` everywhere a region pins none,
    /// upgraded by `strategy`, canary steps short enough for a test.
    func setPlatform(_ version: String, strategy: String, steps: [Int] = [50, 100], pause: String = "1s") throws {
        try """
        version: 1
        name: residency-cli-test
        defaults:
          grace_period: 1s
        \(cluster.sshDefaultsYAML())components:
          inference:
            artifact: artifacts/inference/{version}
            start: [bin/serve, --address, "{address}", --port, "{port}", --slot, "{slot}"]
            ports: { blue: \(slotPort), green: \(slotPort + 1) }
            route: /v1/
            health: /healthz
            strategy: \(strategy)
            canary:
              steps: [\(steps.map(String.init).joined(separator: ", "))]
              pause: \(pause)
              analysis:
                max_error_rate: 0.05
                max_p99_latency: 2s
                min_requests: 5
                max_error_rate_increase: 0.05
                max_latency_ratio: 5
                confidence: 0.99
              inconclusive: { wait: 10s, then: fail }
        residency:
          refuse_status: 451
        platform:
          inference: \(version)

        """.write(to: directory.appendingPathComponent("meridian.yaml"), atomically: true, encoding: .utf8)
    }
}

/// A bounded residency load: one keep-alive connection per gateway and
/// jurisdiction, each sending GET `path` with that jurisdiction's header
/// until stopped (at most `limit` requests, `pause` apart). Every answer is
/// classified by the region that served it (`X-Meridian-Served-By`): a
/// violation is an answer served by a region not allowed for the data.
final class ResidencyLoad: @unchecked Sendable {
    struct Totals: CustomStringConvertible {
        var served: [String: [String: Int]] = [:]
        var refused = 0
        var failed: [String] = []
        var violations: [String] = []
        /// By serving region, the versions of the stack that answered (`X-Meridian-Version`).
        var versions: [String: Set<String>] = [:]
        var requests: Int { served.values.reduce(0) { $0 + $1.values.reduce(0, +) } + refused + failed.count }

        var description: String {
            let perData = served.keys.sorted().map { data in
                "\(data): " + served[data]!.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            }
            let seen = versions.keys.sorted().map { "\($0) \(versions[$0]!.sorted().joined(separator: "/"))" }.joined(separator: ", ")
            return "\(requests) requests; served \(perData.joined(separator: "; ")); refused \(refused); failed \(failed.count); violations \(violations.count); versions \(seen)"
        }
    }

    private let lock = NSLock()
    private var totals = Totals()
    private var stopped = false
    private var finished = 0
    private let workers: Int

    init(gateways: [(address: String, port: Int)], allowed: [String: Set<String>], path: String = "/v1/models",
         limit: Int = 100_000, pause: Duration = .milliseconds(5)) {
        workers = gateways.count * allowed.count
        let pauseSeconds = Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18
        for gateway in gateways {
            for (data, regions) in allowed {
                Thread.detachNewThread { [self] in
                    let client = KeepAliveHTTPClient(address: gateway.address, port: gateway.port, timeoutSeconds: 10)
                    for _ in 0..<limit {
                        if lock.withLock({ stopped }) { break }
                        do {
                            let response = try client.send("GET", path, headers: [("X-Data-Residency", data)])
                            let servedBy = response.headers["x-meridian-served-by"]
                            lock.withLock {
                                if let servedBy {
                                    totals.served[data, default: [:]][servedBy, default: 0] += 1
                                    totals.versions[servedBy, default: []].insert(response.headers["x-meridian-version"] ?? "-")
                                    if !regions.contains(servedBy) {
                                        totals.violations.append("\(data) data at \(gateway.address) served by \(servedBy)")
                                    }
                                } else if response.status == 451 {
                                    totals.refused += 1
                                } else {
                                    totals.failed.append("\(data) at \(gateway.address): HTTP \(response.status)")
                                }
                            }
                        } catch {
                            lock.withLock { totals.failed.append("\(data) at \(gateway.address): \(error)") }
                            client.disconnect()
                        }
                        Thread.sleep(forTimeInterval: pauseSeconds)
                    }
                    client.disconnect()
                    lock.withLock { finished += 1 }
                }
            }
        }
    }

    var count: Int { lock.withLock { totals.requests } }

    /// Stops the workers and waits (bounded, 30 s) for them to end.
    func stop() async -> Totals {
        lock.withLock { stopped = true }
        for _ in 0..<3000 where lock.withLock({ finished < workers }) { try? await Task.sleep(for: .milliseconds(10)) }
        return lock.withLock { totals }
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
