import Foundation
import Testing
import MeridianBasics
@testable import MeridianEngine
import MeridianModel
@testable import MeridianPlanning
import MeridianSSH
import MeridianTestHosts

// Address ranges of the residency gateway tests: 127.0.200.0 – 127.0.206.255
// (ResidencyCLITests uses 127.0.207–209),
// one third octet per test; ports 18480 (gateways) and 18401/18402 (slots).

/// What one request through a gateway came back as.
enum ResidencyOutcome: Equatable, CustomStringConvertible {
    /// 200 from the stack of this region (`X-Meridian-Served-By`).
    case served(String)
    /// The refuse status with this reason token (`X-Meridian-Refused`).
    case refused(String)
    /// Anything else: the status and the headers that say why.
    case other(Int, String)

    var description: String {
        switch self {
        case .served(let region): return "served by \(region)"
        case .refused(let token): return "refused (\(token))"
        case .other(let status, let detail): return "status \(status) \(detail)"
        }
    }
}

/// Regions on real test hosts, one host each: the host runs sshd, the
/// region's nginx gateway (started by the gateway step over SSH) and a
/// backend on the blue slot's port. Every gateway carries the residency
/// section compiled from `rules`.
final class ResidencyWorld: @unchecked Sendable {
    static let gatewayPort = 18480
    static let ports = SlotPorts(blue: 18401, green: 18402)
    static let refuseStatus = 451

    let cluster: TestHostCluster
    let fleet: Fleet
    let table: RoutingTable
    private(set) var sessions: [String: SSHSession] = [:]
    private(set) var backends: [String: TestBackend] = [:]
    private(set) var gatewaysUp: Set<String> = []
    var names: [String] { fleet.regions.map(\.name) }

    /// `regions`: name, jurisdiction, priority; `rules`: data jurisdiction and allowed ones.
    init(addressPrefix: String, regions: [(String, String, Int)], rules: [(String, [String])]) async throws {
        cluster = try TestHostCluster(count: regions.count, addressPrefix: addressPrefix)
        let inference = Component(name: "inference", artifact: .path("artifacts/inference/{version}"), start: ["bin/serve"], ports: Self.ports, route: "/v1/")
        var defaults = FleetDefaults()
        defaults.ssh.identities = [cluster.identityFile]
        defaults.ssh.agent = false
        let settings = FleetSettings(name: "residency-test", defaults: defaults, components: [inference], platform: [:], waves: [],
                                     residency: ResidencySettings(refuseStatus: Self.refuseStatus))
        var fleetRegions: [Region] = []
        for (index, (name, jurisdiction, priority)) in regions.enumerated() {
            let host = cluster.hosts[index]
            fleetRegions.append(Region(name: name, file: "regions/\(name).yaml", jurisdiction: Jurisdiction(jurisdiction)!, gatewayPort: Self.gatewayPort, priority: priority,
                                       hosts: [FleetHost(name: host.name, address: host.address, port: host.port, user: cluster.user, hostKeys: [host.hostKeyLine],
                                                                  roles: [.gateway, .component("inference")], root: host.root)]))
        }
        let residencyRules = rules.enumerated().map { index, rule in
            ResidencyRule(data: Jurisdiction(rule.0)!, allowed: rule.1.map { Jurisdiction($0)! },
                          location: SourceLocation(file: "policies/residency.yaml", line: index + 1), path: "residency[\(index)]")
        }
        fleet = Fleet(settings: settings, regions: fleetRegions, policies: [Policy(name: "residency", file: "policies/residency.yaml", residency: residencyRules)],
                      fileHashes: [:], sources: SourceMap())
        let (compiled, diagnostics) = ResidencyCompiler.compile(fleet)
        guard !diagnostics.hasErrors else { throw KeepAliveHTTPClient.Failure(description: "the test fleet's residency rules do not compile: \(diagnostics)") }
        table = compiled
        for (index, region) in fleetRegions.enumerated() {
            let host = cluster.hosts[index]
            sessions[region.name] = try await SSHSession.open(SSHEndpoint(
                region: region.name, hostName: host.name, address: host.address, port: host.port, user: cluster.user,
                identityFiles: [cluster.identityFile], hostKeyPolicy: HostKeyPolicy(pinnedKeys: [host.hostKeyLine])))
            try startStack(region.name)
            try await startGateway(region.name)
        }
    }

    /// The test host of a region (the fleet keeps regions in name order, not in the order given).
    func host(_ region: String) -> TestHost { cluster.hosts.first { $0.address == self.region(region).hosts[0].address }! }
    func region(_ name: String) -> Region { fleet.regions.first { $0.name == name }! }

    func config(_ region: String) -> GatewayConfig {
        let region = self.region(region)
        return GatewayConfig.forGateway(region.hosts[0], in: region, fleet: fleet, splits: [:])
    }

    /// The regions whose stack and gateway both run: what `decide` calls healthy.
    var healthy: Set<String> { Set(names.filter { backends[$0] != nil && gatewaysUp.contains($0) }) }

    func startStack(_ region: String) throws {
        guard backends[region] == nil else { return }
        let host = host(region)
        backends[region] = try TestBackend(address: host.address, port: Self.ports.blue, slot: "blue", host: host.name)
    }

    func stopStack(_ region: String) {
        backends.removeValue(forKey: region)?.stop()
    }

    /// Puts the region's configuration in place through the gateway step over SSH (it starts nginx when none runs).
    func startGateway(_ region: String) async throws {
        let report = try await GatewayActivation.activate(config(region), root: host(region).root, on: sessions[region]!, host: "\(region)/\(host(region).name)")
        _ = report
        gatewaysUp.insert(region)
    }

    /// SIGKILLs the region's nginx master and workers at once: its port refuses connections.
    func killGateway(_ region: String) {
        guard gatewaysUp.contains(region) else { return }
        let root = host(region).root
        let pidFile = root + "/" + GatewayConfig.pidPath
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let master = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), master > 1 {
            let workers = ((try? String(contentsOfFile: "/proc/\(master)/task/\(master)/children", encoding: .utf8)) ?? "").split(separator: " ").compactMap { pid_t($0) }
            for pid in [master] + workers { kill(pid, SIGKILL) }
            _ = Poll.blockingUntil(attempts: 500) { !TestHostCluster.accepts(address: self.host(region).address, port: Self.gatewayPort) }
        }
        gatewaysUp.remove(region)
    }

    /// One request to the gateway of `region` on a new connection.
    func send(at region: String, headers: [(String, String)], method: String = "GET", body: Data = Data()) throws -> KeepAliveHTTPClient.Response {
        let client = KeepAliveHTTPClient(address: host(region).address, port: Self.gatewayPort)
        defer { client.disconnect() }
        return try client.send(method, "/v1/residency", headers: headers, body: body)
    }

    static func outcome(_ response: KeepAliveHTTPClient.Response) -> ResidencyOutcome {
        let headers = response.headers
        if response.status == 200, let region = headers["x-meridian-served-by"] { return .served(region) }
        if response.status == refuseStatus, let token = headers["x-meridian-refused"] { return .refused(token) }
        let detail = headers.filter { $0.key.hasPrefix("x-meridian") }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return .other(response.status, detail)
    }

    static func expected(_ decision: RoutingDecision, at local: String) -> ResidencyOutcome {
        switch decision {
        case .serveLocally: return .served(local)
        case .forward(let region): return .served(region)
        case .refuse(let reason): return .refused(reason.token)
        }
    }

    /// What a marked request (one a gateway forwarded, or a client forged)
    /// must get: served here only when this region may process the data and
    /// is healthy, refused otherwise; never forwarded.
    func expectedMarked(header: String, at local: String, healthy: Set<String>) -> ResidencyOutcome {
        let value = header.trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
        if value.isEmpty, table.assumeWhenMissing == nil { return .refused(GatewayResidency.Refusal.missingResidency.rawValue) }
        guard let data = value.isEmpty ? table.assumeWhenMissing : Jurisdiction(value), let entry = table.entry(for: data) else {
            return .refused(GatewayResidency.Refusal.unknownJurisdiction.rawValue)
        }
        guard entry.admits(region: local) else { return .refused(GatewayResidency.Refusal.notAllowedHere.rawValue) }
        return healthy.contains(local) ? .served(local) : .refused(GatewayResidency.Refusal.notServedHere.rawValue)
    }

    /// The header values a check sends: every data jurisdiction, a padded
    /// one, a wrong-case one, an unknown one, and none at all (nil).
    var headerValues: [String?] {
        table.entries.map { $0.data.code as String? } + [" \(table.entries[0].data.code)\t", table.entries[0].data.code.lowercased(), "XX", nil]
    }

    /// Requests with more than one residency header line: equal lines once
    /// trimmed (served as one), and lines that differ (refused), the second
    /// an unknown value, a padded copy of another code or an empty one.
    var headerLineSets: [[String]] {
        let codes = table.entries.map(\.data.code)
        return [[codes[0], " \(codes[0]) "], ["\t\(codes[codes.count - 1])", codes[codes.count - 1], codes[codes.count - 1] + " "],
                [codes[0], codes[1]], [codes[codes.count - 1], " \(codes[0])\t"], [codes[0], "XX"], [codes[0], codes[0].lowercased()], [codes[0], ""]]
    }

    /// What a marked request with these header lines must get.
    func expectedMarked(headerLines lines: [String], at local: String, healthy: Set<String>) -> ResidencyOutcome {
        let trimmed = lines.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t")) }
        if Set(trimmed).count > 1 { return .refused(GatewayResidency.Refusal.conflictingJurisdictions.rawValue) }
        return expectedMarked(header: lines[0], at: local, healthy: healthy)
    }

    /// Waits (bounded, about 15 s per gateway) until every running gateway
    /// whose stack runs serves its own data locally again: nginx remembers a
    /// slot that failed for its fail_timeout (10 s) and skips it until then.
    func settle() async throws {
        for name in names where healthy.contains(name) {
            guard let data = table.entries.first(where: { $0.admits(region: name) })?.data else { continue }
            let settled = try await Poll.until(attempts: 160, every: .milliseconds(100)) {
                (try? Self.outcome(self.send(at: name, headers: [("X-Data-Residency", data.code)]))) == .served(name)
            }
            #expect(settled, "the gateway of \(name) did not serve its own \(data) data again within 16 s of its stack starting")
        }
    }

    /// Every running gateway, every header value, unmarked and marked:
    /// the mismatches with `RoutingTable.decide`, as sentences.
    func mismatches() throws -> [String] {
        var found: [String] = []
        let healthy = self.healthy
        for gateway in names where gatewaysUp.contains(gateway) {
            for value in headerValues {
                let headers = value.map { [("X-Data-Residency", $0)] } ?? []
                let want = Self.expected(table.decide(header: value, at: gateway, healthy: healthy), at: gateway)
                let got = Self.outcome(try send(at: gateway, headers: headers))
                if got != want { found.append("at \(gateway), header \(value.map { "\"\($0)\"" } ?? "absent"): expected \(want), got \(got)") }
                if let value {
                    let wantMarked = expectedMarked(header: value, at: gateway, healthy: healthy)
                    let gotMarked = Self.outcome(try send(at: gateway, headers: headers + [(GatewayResidency.markHeader, "elsewhere")]))
                    if gotMarked != wantMarked { found.append("at \(gateway), marked, header \"\(value)\": expected \(wantMarked), got \(gotMarked)") }
                }
            }
            for lines in headerLineSets {
                let headers = lines.map { ("X-Data-Residency", $0) }
                let want = Self.expected(table.decide(headerLines: lines, at: gateway, healthy: healthy), at: gateway)
                let got = Self.outcome(try send(at: gateway, headers: headers))
                if got != want { found.append("at \(gateway), header lines \(lines): expected \(want), got \(got)") }
                let wantMarked = expectedMarked(headerLines: lines, at: gateway, healthy: healthy)
                let gotMarked = Self.outcome(try send(at: gateway, headers: headers + [(GatewayResidency.markHeader, "elsewhere")]))
                if gotMarked != wantMarked { found.append("at \(gateway), marked, header lines \(lines): expected \(wantMarked), got \(gotMarked)") }
            }
        }
        return found
    }

    func close() async {
        for session in sessions.values { await session.close() }
        for backend in backends.values { backend.stop() }
        backends = [:]
        cluster.stopAll()
    }
}

/// A backend that writes each request's first line to a file and then
/// either answers 200 or closes the connection without a byte of answer
/// (a stack failing in the middle of a request).
final class RecordingBackend: @unchecked Sendable {
    let log: String
    private let process: SpawnedProcess

    static let program = """
    import socket, sys
    address, port, log, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        with open(log, "a") as f:
            f.write(data.split(b"\\r\\n")[0].decode() + "\\n")
        if mode == "answer":
            c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n")
        c.close()
    """

    init(address: String, port: Int, log: String, answers: Bool) throws {
        self.log = log
        FileManager.default.createFile(atPath: log, contents: Data())
        process = try SpawnedProcess(["/usr/bin/python3", "-c", Self.program, address, String(port), log, answers ? "answer" : "die"])
        guard Poll.blockingUntil(attempts: 1000, { TestHostCluster.accepts(address: address, port: port) }) else {
            process.stop()
            throw KeepAliveHTTPClient.Failure(description: "the recording backend on \(address):\(port) did not start accepting")
        }
        // The readiness probe itself was one (empty) connection.
        try Data().write(to: URL(fileURLWithPath: log))
    }

    var requestLines: [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init).filter { !$0.isEmpty } }

    deinit { process.stop() }
    func stop() { process.stop() }
}

@Suite(.serialized) struct ResidencyGatewayTests {
    /// EU data stays in the EU; UK data may go to the EU after the UK; US data stays in the US.
    static let regions = [("eu-a", "EU", 10), ("eu-b", "EU", 20), ("uk-a", "UK", 100), ("us-a", "US", 100)]
    static let rules = [("EU", ["EU"]), ("UK", ["UK", "EU"]), ("US", ["US"])]

    @Test func everyGatewayRoutesEachJurisdictionAsTheTableSaysAndSaysWhoServed() async throws {
        let world = try await ResidencyWorld(addressPrefix: "127.0.200", regions: Self.regions, rules: Self.rules)
        do {
            #expect(try world.mismatches() == [])
            // Spot checks in words, beside the model: UK data at the US gateway goes to the UK.
            let forwarded = try world.send(at: "us-a", headers: [("X-Data-Residency", "UK")])
            #expect(forwarded.status == 200)
            #expect(forwarded.headers["x-meridian-served-by"] == "uk-a")
            #expect(forwarded.headers["x-meridian-forwarded-by"] == "us-a")
            let refused = try world.send(at: "eu-a", headers: [])
            #expect(refused.status == 451)
            #expect(refused.headers["x-meridian-refused"] == "missing-residency")
            #expect(refused.headers["x-meridian-refused-by"] == "eu-a")
            #expect(refused.headers["x-meridian-served-by"] == nil)
            // A forged mark at a region not allowed for the data gets a refusal, never a forward.
            let forged = try world.send(at: "us-a", headers: [("X-Data-Residency", "EU"), (GatewayResidency.markHeader, "eu-a")])
            #expect(ResidencyWorld.outcome(forged) == .refused("not-allowed-here"))
            // Two residency header lines that differ are refused at every gateway, marked or not, whatever
            // the first says; two that are equal once trimmed are one (mismatches() checks both against decide).
            for gateway in world.names {
                for marked in [false, true] {
                    let conflicting = try world.send(at: gateway, headers: [("X-Data-Residency", "UK"), ("x-data-residency", " US")]
                                                     + (marked ? [(GatewayResidency.markHeader, "eu-a")] : []))
                    #expect(conflicting.status == 451, "at \(gateway)")
                    #expect(conflicting.headers["x-meridian-refused"] == "conflicting-jurisdictions", "at \(gateway)")
                    #expect(conflicting.headers["x-meridian-refused-by"] == gateway, "at \(gateway)")
                    #expect(conflicting.headers["x-meridian-served-by"] == nil, "at \(gateway)")
                    #expect(conflicting.headers["x-meridian-forwarded-by"] == nil, "at \(gateway)")
                }
            }
            let equal = try world.send(at: "us-a", headers: [("X-Data-Residency", "UK"), ("X-Data-Residency", " UK\t")])
            #expect(ResidencyWorld.outcome(equal) == .served("uk-a"))
            #expect(equal.headers["x-meridian-forwarded-by"] == "us-a")
            // The gateway's own identity location needs no residency header.
            let identity = try await world.sessions["eu-a"]!.httpRequest(address: world.host("eu-a").address, port: ResidencyWorld.gatewayPort, path: GatewayConfig.identityLocation, timeout: .seconds(5))
            #expect(identity.status == 200)
        } catch {
            await world.close()
            throw error
        }
        await world.close()
    }

    @Test func failoverFollowsTheTableAndRefusesWhenNoAllowedRegionServes() async throws {
        let world = try await ResidencyWorld(addressPrefix: "127.0.201", regions: Self.regions, rules: Self.rules)
        do {
            func outcome(_ at: String, _ data: String) throws -> ResidencyOutcome {
                ResidencyWorld.outcome(try world.send(at: at, headers: [("X-Data-Residency", data)]))
            }
            world.stopStack("uk-a")
            #expect(try outcome("uk-a", "UK") == .served("eu-a"))
            #expect(try outcome("us-a", "UK") == .served("eu-a"))
            world.killGateway("eu-a")
            #expect(try outcome("uk-a", "UK") == .served("eu-b"))
            #expect(try outcome("eu-b", "EU") == .served("eu-b"))
            world.stopStack("eu-b")
            #expect(try outcome("uk-a", "UK") == .refused("no-healthy-region"))
            #expect(try outcome("eu-b", "EU") == .refused("no-healthy-region"))
            #expect(try outcome("us-a", "EU") == .refused("no-healthy-region"))
            #expect(try outcome("us-a", "US") == .served("us-a"))
            #expect(try world.mismatches() == [])
        } catch {
            await world.close()
            throw error
        }
        await world.close()
    }

    /// docs/residency.md, "A request that fails mid-way": a POST whose region
    /// failed after the request was sent is answered 502 and sent nowhere
    /// else, directly or through a forwarding hop; a GET in the same case, and
    /// a POST that never reached a stack, go on to the next allowed region.
    @Test func aPostWhoseRegionFailsMidRequestIsNotSentToAnotherRegion() async throws {
        let regions = [("eu-a", "EU", 10), ("eu-b", "EU", 20), ("eu-c", "EU", 30), ("uk-a", "UK", 100), ("us-a", "US", 100)]
        let world = try await ResidencyWorld(addressPrefix: "127.0.202", regions: regions, rules: Self.rules)
        do {
            var dying: [String: RecordingBackend] = [:]
            for name in ["eu-a", "eu-b", "uk-a"] {
                world.stopStack(name)
                dying[name] = try RecordingBackend(address: world.host(name).address, port: ResidencyWorld.ports.blue, log: world.cluster.directory + "/\(name)-requests.log", answers: false)
            }
            world.stopStack("eu-c")
            let answering = try RecordingBackend(address: world.host("eu-c").address, port: ResidencyWorld.ports.blue, log: world.cluster.directory + "/eu-c-requests.log", answers: true)
            let eu = [("X-Data-Residency", "EU")]
            let body = Data("{\"prompt\":\"x\"}".utf8)

            let post = try world.send(at: "eu-a", headers: eu, method: "POST", body: body)
            #expect(post.status == 502)
            #expect(post.headers["x-meridian-not-replayed"] == "eu-a")
            #expect(dying["eu-a"]!.requestLines == ["POST /v1/residency HTTP/1.1"])
            #expect(answering.requestLines == [])

            // Through a forwarding hop: the US gateway forwards UK data to uk-a, whose stack dies mid-request.
            let forwarded = try world.send(at: "us-a", headers: [("X-Data-Residency", "UK")], method: "POST", body: body)
            #expect(forwarded.status == 502)
            #expect(forwarded.headers["x-meridian-not-replayed"] == "uk-a")
            #expect(dying["uk-a"]!.requestLines == ["POST /v1/residency HTTP/1.1"])
            #expect(answering.requestLines == [])

            // A GET whose stack dies mid-request goes on: eu-b's gateway tries eu-a (whose gateway
            // now skips its failed slot and says it cannot serve), then eu-c.
            let get = try world.send(at: "eu-b", headers: eu)
            #expect(ResidencyWorld.outcome(get) == .served("eu-c"))
            #expect(dying["eu-b"]!.requestLines == ["GET /v1/residency HTTP/1.1"])
            #expect(dying["eu-a"]!.requestLines.count == 1)

            // A POST that never reached a stack (nginx skips the slot that failed) is safe to send on.
            let unsent = try world.send(at: "eu-a", headers: eu, method: "POST", body: body)
            #expect(ResidencyWorld.outcome(unsent) == .served("eu-c"))
            #expect(dying["eu-a"]!.requestLines.count == 1)
            #expect(answering.requestLines == ["GET /v1/residency HTTP/1.1", "POST /v1/residency HTTP/1.1"])
            for backend in dying.values { backend.stop() }
            answering.stop()
        } catch {
            await world.close()
            throw error
        }
        await world.close()
    }

    /// `meridian routes verify`'s engine on live gateways: every probe
    /// through every gateway over SSH matches the table, also with a stack
    /// down; a gateway whose section sends EU data to the US is caught.
    @Test func verifyOverSSHMatchesTheTableAndCatchesAGatewayThatDoesNot() async throws {
        let world = try await ResidencyWorld(addressPrefix: "127.0.204", regions: Self.regions, rules: Self.rules)
        do {
            let verifier = ResidencyVerifier(fleet: world.fleet, table: world.table,
                                             endpoints: FleetEndpoints(fleet: world.fleet, fleetRoot: URL(fileURLWithPath: world.cluster.directory)), parallelism: 8)
            let clean = try await verifier.verify(regions: [])
            #expect(clean.unreachable == [])
            #expect(clean.healthy == Set(world.names))
            #expect(clean.checks.count == 4 * 5)
            #expect(clean.checks.filter { !$0.ok } == [])

            world.stopStack("uk-a")
            let degraded = try await verifier.verify(regions: [])
            #expect(degraded.healthy == ["eu-a", "eu-b", "us-a"])
            #expect(degraded.checks.filter { !$0.ok } == [])
            #expect(degraded.checks.first { $0.region == "uk-a" && $0.probe.label == "UK" }?.observed == .served("eu-a"))

            // A gateway configured from a wrong table (EU data allowed in the US) is a violation.
            var wrongFleet = world.fleet
            wrongFleet.policies[0].residency[0].allowed = [Jurisdiction("EU")!, Jurisdiction("US")!]
            var wrong = world.config("us-a")
            wrong.residency = GatewayResidency.forRegion(world.region("us-a"), fleet: wrongFleet, table: ResidencyCompiler.compile(wrongFleet).0)
            _ = try await GatewayActivation.activate(wrong, root: world.host("us-a").root, on: world.sessions["us-a"]!, host: "us-a")
            let caught = try await verifier.verify(regions: ["us-a"])
            let violations = caught.checks.filter { !$0.ok }
            #expect(violations.map(\.probe.label) == ["EU"])
            #expect(violations.first?.observed == .served("us-a"))
            #expect(violations.first?.expected == .served("eu-a"))
            let text = ResidencyVerification.matrixText(caught.checks, healthy: caught.healthy, regions: world.names)
            #expect(text.contains("✗ us-a (expected eu-a)"))
            #expect(text.hasSuffix("5 checks, 1 violation\n"))
        } catch {
            await world.close()
            throw error
        }
        await world.close()
    }

    /// The model-based check: random subsets of regions with their stack
    /// stopped or their gateway killed, and for each, every jurisdiction at
    /// every running gateway against `RoutingTable.decide`.
    @Test func gatewaysAgreeWithTheRoutingTableOverRandomFailures() async throws {
        let regions = [("eu-a", "EU", 10), ("eu-b", "EU", 20), ("uk-a", "UK", 100), ("us-a", "US", 100), ("sg-a", "SG", 100)]
        let rules = [("EU", ["EU"]), ("UK", ["UK", "EU"]), ("US", ["US", "UK"]), ("SG", ["SG", "EU", "US"])]
        let world = try await ResidencyWorld(addressPrefix: "127.0.203", regions: regions, rules: rules)
        let seed = UInt64(ProcessInfo.processInfo.environment["MERIDIAN_RESIDENCY_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        var random = SplitMix64(seed: seed)
        var checked = 0
        do {
            for round in 0..<10 {
                for name in world.names {
                    switch random.next() % 4 {
                    case 0: world.stopStack(name)
                    case 1: world.killGateway(name)
                    default:
                        try world.startStack(name)
                        if !world.gatewaysUp.contains(name) { try await world.startGateway(name) }
                    }
                }
                try await world.settle()
                let found = try world.mismatches()
                checked += world.gatewaysUp.count
                #expect(found == [], "seed \(seed) (MERIDIAN_RESIDENCY_SEED=\(seed) repeats it), round \(round), healthy \(world.healthy.sorted()), gateways up \(world.gatewaysUp.sorted())")
            }
            print("residency model check: seed \(seed), 10 rounds, \(checked) gateway checks of \(world.headerValues.count) header values each, unmarked and marked")
        } catch {
            await world.close()
            throw error
        }
        await world.close()
    }
}

/// Counts of a load run under faults, per phase, shared by the load threads.
final class ResidencyLoadTally: @unchecked Sendable {
    struct Counts {
        var requests = 0
        var servedBy: [String: Int] = [:]
        var refused = 0
        var errors: [String] = []
        /// Served by a region the table does not allow for the data: must stay 0.
        var violations: [String] = []
        /// Answers that differ from `decide` for the phase's health.
        var mismatches: [String] = []
    }

    private let lock = NSLock()
    private var phase = 0
    private var stopping = false
    private var sending: Set<String>
    private var counts: [Int: [String: Counts]] = [:]

    init(gateways: Set<String>) { sending = gateways }

    /// Phase 0 is a transition: faults are being injected, answers are not compared with `decide`.
    func begin(_ phase: Int, sending: Set<String>) { lock.withLock { self.phase = phase; self.sending = sending } }
    func stop() { lock.withLock { stopping = true } }
    var current: (phase: Int, stop: Bool) { lock.withLock { (phase, stopping) } }
    func sends(_ gateway: String) -> Bool { lock.withLock { sending.contains(gateway) } }

    func record(phase: Int, key: String, _ update: (inout Counts) -> Void) {
        lock.withLock {
            // A request that straddled a change of phase counts as transition (0).
            let bucket = self.phase == phase ? phase : 0
            update(&counts[bucket, default: [:]][key, default: Counts()])
        }
    }

    func counts(_ phase: Int) -> [String: Counts] { lock.withLock { counts[phase] ?? [:] } }
}

extension ResidencyGatewayTests {
    /// Failover under load: one keep-alive load thread per gateway cycling
    /// over every jurisdiction while, in turn, the first allowed region's
    /// stack stops, the next one's gateway host loses sshd and nginx
    /// (SIGKILL), and every EU and UK region goes down. Each phase counts at
    /// least 1,000 requests per jurisdiction per running gateway, every
    /// answer is checked against `decide`, and no request is ever served
    /// outside its allowed set (the transitions between phases included).
    @Test func failoverUnderLoadNeverServesOutsideTheAllowedSet() async throws {
        let world = try await ResidencyWorld(addressPrefix: "127.0.205", regions: Self.regions, rules: Self.rules)
        let table = world.table
        let codes = table.entries.map(\.data.code)
        let tally = ResidencyLoadTally(gateways: Set(world.names))
        let perPair = 1000
        var threads: [Thread] = []
        let finished = DispatchSemaphore(value: 0)
        let healthyBox = NSLockedBox<Set<String>>(world.healthy)
        for gateway in world.names {
            let address = world.host(gateway).address
            let thread = Thread {
                defer { finished.signal() }
                let client = KeepAliveHTTPClient(address: address, port: ResidencyWorld.gatewayPort, timeoutSeconds: 10)
                var index = 0
                for _ in 0..<1_000_000 {
                    let (phase, stop) = tally.current
                    if stop { return }
                    guard tally.sends(gateway) else { client.disconnect(); usleep(5_000); continue }
                    let code = codes[index % codes.count]
                    index += 1
                    let key = "\(gateway) \(code)"
                    let healthy = healthyBox.value
                    do {
                        let outcome = ResidencyWorld.outcome(try client.send("GET", "/v1/load", headers: [("X-Data-Residency", code)]))
                        let allowed = table.entry(for: Jurisdiction(code)!)!
                        let want = ResidencyWorld.expected(table.decide(header: code, at: gateway, healthy: healthy), at: gateway)
                        tally.record(phase: phase, key: key) { counts in
                            counts.requests += 1
                            switch outcome {
                            case .served(let region):
                                counts.servedBy[region, default: 0] += 1
                                if !allowed.admits(region: region) { counts.violations.append("\(code) at \(gateway) served by \(region)") }
                            case .refused: counts.refused += 1
                            case .other(let status, let detail): counts.errors.append("\(status) \(detail)")
                            }
                            if outcome != want, counts.mismatches.count < 5 { counts.mismatches.append("\(code) at \(gateway): expected \(want), got \(outcome)") }
                        }
                    } catch {
                        tally.record(phase: phase, key: key) { $0.requests += 1; $0.errors.append("\(error)") }
                    }
                }
            }
            threads.append(thread)
            thread.start()
        }

        func run(_ phase: Int, _ fault: () async throws -> Void) async throws -> [String: ResidencyLoadTally.Counts] {
            tally.begin(0, sending: world.gatewaysUp)
            try await fault()
            healthyBox.value = world.healthy
            tally.begin(phase, sending: world.gatewaysUp)
            let running = world.gatewaysUp
            let enough = await Poll.until(attempts: 1200, every: .milliseconds(100)) {
                let counts = tally.counts(phase)
                return running.allSatisfy { gateway in codes.allSatisfy { (counts["\(gateway) \($0)"]?.requests ?? 0) >= perPair } }
            }
            #expect(enough, "phase \(phase): fewer than \(perPair) requests per jurisdiction per gateway within 120 s: \(tally.counts(phase).mapValues(\.requests))")
            return tally.counts(phase)
        }

        do {
            let phases: [(String, () async throws -> Void)] = [
                ("uk-a's stack stopped", { world.stopStack("uk-a") }),
                ("eu-a's sshd and nginx killed", { world.killGateway("eu-a"); world.cluster.kill(world.host("eu-a")) }),
                ("every EU and UK stack stopped", { world.stopStack("eu-a"); world.stopStack("eu-b") }),
            ]
            for (number, (name, fault)) in phases.enumerated() {
                let counts = try await run(number + 1, fault)
                var servedPerRegion: [String: Int] = [:]
                var refused = 0, errors = 0, violations = 0, total = 0
                for value in counts.values {
                    total += value.requests
                    refused += value.refused
                    errors += value.errors.count
                    violations += value.violations.count
                    for (region, count) in value.servedBy { servedPerRegion[region, default: 0] += count }
                }
                print("residency failover under load, phase \(number + 1) (\(name)): \(total) requests; served \(servedPerRegion.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); refused \(refused); errors \(errors); violations \(violations)")
                #expect(counts.values.flatMap(\.violations) == [])
                #expect(counts.values.flatMap(\.mismatches) == [])
                #expect(counts.values.flatMap(\.errors).prefix(5) == [])
                switch number {
                case 0: #expect((counts["us-a UK"]?.servedBy["eu-a"] ?? 0) >= perPair)
                case 1: #expect((counts["us-a UK"]?.servedBy["eu-b"] ?? 0) >= perPair)
                default:
                    #expect((counts["us-a UK"]?.refused ?? 0) >= perPair)
                    #expect((counts["uk-a EU"]?.refused ?? 0) >= perPair)
                }
            }
            #expect(tally.counts(0).values.flatMap(\.violations) == [], "a violation while faults were injected")
        } catch {
            tally.stop()
            for _ in threads { finished.wait() }
            await world.close()
            throw error
        }
        tally.stop()
        for _ in threads { finished.wait() }
        await world.close()
    }
}

/// A value shared between the test and its load threads.
final class NSLockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// One `wrk` run's figures.
struct WrkFigures: CustomStringConvertible {
    var requestsPerSecond: Double
    var p50: Double
    var p99: Double
    var requests: Int
    var nonSuccess: Int

    /// Runs wrk (1 thread, 8 connections, 3 s) against `url` with the given header lines.
    static func run(_ url: String, headers: [String]) throws -> WrkFigures {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
        process.arguments = ["-t1", "-c8", "-d3s", "--timeout", "5s", "--latency"] + headers.flatMap { ["-H", $0] } + [url]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        func number(after label: String) -> String? {
            output.components(separatedBy: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(label) }?
                .trimmingCharacters(in: .whitespaces).dropFirst(label.count).trimmingCharacters(in: .whitespaces).components(separatedBy: " ").first
        }
        func milliseconds(_ text: String?) -> Double? {
            guard let text else { return nil }
            for (unit, factor) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] where text.hasSuffix(unit) {
                return Double(text.dropLast(unit.count)).map { $0 * factor }
            }
            return nil
        }
        guard let rate = number(after: "Requests/sec:").flatMap(Double.init), let p50 = milliseconds(number(after: "50%")), let p99 = milliseconds(number(after: "99%")),
              let requests = output.components(separatedBy: "\n").first(where: { $0.contains("requests in") })?.trimmingCharacters(in: .whitespaces).components(separatedBy: " ").first.flatMap(Int.init)
        else { throw KeepAliveHTTPClient.Failure(description: "wrk printed no figures: \(output)") }
        let nonSuccess = number(after: "Non-2xx or 3xx responses:").flatMap(Int.init) ?? 0
        return WrkFigures(requestsPerSecond: rate, p50: p50, p99: p99, requests: requests, nonSuccess: nonSuccess)
    }

    var description: String { String(format: "%.0f req/s, p50 %.2f ms, p99 %.2f ms (%d requests)", requestsPerSecond, p50, p99, requests) }
}

extension ResidencyGatewayTests {
    /// The benchmark of docs/benchmarks.md: the same backend reached directly,
    /// through its own region's gateway (served locally) and through another
    /// region's gateway (one forwarding hop), in one run; it prints the
    /// ratios and asserts only that every request was answered 200.
    @Test func residencyRoutingCostAsARatioOfTheBackendReachedDirectly() async throws {
        let world = try await ResidencyWorld(addressPrefix: "127.0.206", regions: Self.regions, rules: Self.rules)
        do {
            let eu = world.host("eu-a").address, us = world.host("us-a").address
            let direct = try WrkFigures.run("http://\(eu):\(ResidencyWorld.ports.blue)/v1/bench", headers: [])
            let local = try WrkFigures.run("http://\(eu):\(ResidencyWorld.gatewayPort)/v1/bench", headers: ["X-Data-Residency: EU"])
            let hop = try WrkFigures.run("http://\(us):\(ResidencyWorld.gatewayPort)/v1/bench", headers: ["X-Data-Residency: EU"])
            for figures in [direct, local, hop] {
                #expect(figures.requests > 0)
                #expect(figures.nonSuccess == 0)
            }
            func ratio(_ figures: WrkFigures) -> String {
                String(format: "throughput %.2f×, p50 %.2f×, p99 %.2f× of direct", figures.requestsPerSecond / direct.requestsPerSecond, figures.p50 / direct.p50, figures.p99 / direct.p99)
            }
            print("residency benchmark: direct backend \(direct)")
            print("residency benchmark: gateway serving locally \(local); \(ratio(local))")
            print("residency benchmark: gateway forwarding one hop \(hop); \(ratio(hop))")
        } catch {
            await world.close()
            throw error
        }
        await world.close()
    }
}
