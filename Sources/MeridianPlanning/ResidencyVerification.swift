import Foundation
import MeridianBasics
import MeridianModel

/// One request `meridian routes verify` sends through a gateway: a data
/// jurisdiction's code, no header at all, or a value that is no jurisdiction.
public struct ResidencyProbe: Sendable, Equatable, Codable {
    /// The matrix column: the code, `(none)` or `(unknown)`.
    public var label: String
    /// The header value sent; nil sends no header.
    public var header: String?

    public init(label: String, header: String?) {
        self.label = label
        self.header = header
    }
}

/// What a gateway's answer to a probe says about where the request went.
public enum ResidencyAnswer: Sendable, Equatable, CustomStringConvertible {
    /// A stack answered; the gateway named this region (`X-Meridian-Served-By`).
    case served(String)
    /// Refused with the refuse status and this reason token.
    case refused(String)
    /// Anything else: no answer, or an answer that names no region.
    case failed(String)

    public var description: String {
        switch self {
        case .served(let region): return region
        case .refused(let token): return "refused (\(token))"
        case .failed(let reason): return "failed (\(reason))"
        }
    }
}

/// One cell of the verification matrix: a probe through one gateway host.
/// Invariant: `ok` exactly when `observed == expected`.
public struct ResidencyCheck: Sendable, Equatable {
    public var region: String
    public var host: String
    public var probe: ResidencyProbe
    public var expected: ResidencyAnswer
    public var observed: ResidencyAnswer

    public init(region: String, host: String, probe: ResidencyProbe, expected: ResidencyAnswer, observed: ResidencyAnswer) {
        self.region = region
        self.host = host
        self.probe = probe
        self.expected = expected
        self.observed = observed
    }

    public var ok: Bool { expected == observed }
}

/// The pure part of `meridian routes verify`: which probes to send, what
/// each answer means, what the table says it must be, and the matrix.
public enum ResidencyVerification {
    /// A header value that is no jurisdiction code (lower case), so always unknown.
    public static let unknownValue = "not-a-jurisdiction"

    /// One probe per data jurisdiction, then one without the header and one with an unknown value.
    public static func probes(_ table: RoutingTable) -> [ResidencyProbe] {
        table.entries.map { ResidencyProbe(label: $0.data.code, header: $0.data.code) }
            + [ResidencyProbe(label: "(none)", header: nil), ResidencyProbe(label: "(unknown)", header: unknownValue)]
    }

    /// The path probes ask for: the first component route, where the residency section applies.
    public static func probePath(_ fleet: Fleet) -> String? { fleet.settings.components.compactMap(\.route).first }

    /// Reads an answer: the served-by header names the region whose stack
    /// answered, whatever the status; a refusal is the refuse status with a reason.
    public static func answer(status: Int, header: (String) -> String?, refuseStatus: Int) -> ResidencyAnswer {
        if let region = header(GatewayResidency.servedByHeader) { return .served(region) }
        if status == refuseStatus, let token = header(GatewayResidency.refusedHeader) { return .refused(token) }
        return .failed("HTTP \(status)")
    }

    /// What the table says the gateway of `region` must answer to `probe`, given the healthy regions.
    public static func expected(_ table: RoutingTable, probe: ResidencyProbe, at region: String, healthy: Set<String>) -> ResidencyAnswer {
        switch table.decide(header: probe.header, at: region, healthy: healthy) {
        case .serveLocally: return .served(region)
        case .forward(let target): return .served(target)
        case .refuse(let reason): return .refused(reason.token)
        }
    }

    /// The checks of one gateway host: each probe's answer against what the table expects there.
    public static func checks(_ table: RoutingTable, region: String, host: String, probes: [ResidencyProbe], answers: [ResidencyAnswer], healthy: Set<String>) -> [ResidencyCheck] {
        zip(probes, answers).map { probe, observed in
            ResidencyCheck(region: region, host: host, probe: probe, expected: expected(table, probe: probe, at: region, healthy: healthy), observed: observed)
        }
    }

    /// The regions whose gateway can serve: every gateway host was reached
    /// (it has an entry in `components`), and every component with a route
    /// answered its health check on some host of the region. `components`
    /// holds, per reached host, the components that answered.
    public static func healthyRegions(_ fleet: Fleet, components: [HostID: Set<String>]) -> Set<String> {
        var healthy: Set<String> = []
        for region in fleet.regions where !region.gateways.isEmpty {
            let gatewaysReached = region.gateways.allSatisfy { components[HostID(region: region.name, host: $0.name)] != nil }
            let routed = fleet.settings.components.filter { $0.route != nil && !region.hosts(running: $0.name).isEmpty }
            let serving = routed.allSatisfy { component in
                region.hosts.contains { components[HostID(region: region.name, host: $0.name)]?.contains(component.name) == true }
            }
            if gatewaysReached, serving { healthy.insert(region.name) }
        }
        return healthy
    }

    /// The drift findings of failed checks (`residency-violation`), one per
    /// gateway host and probe: the subject names the jurisdiction probed.
    public static func driftFindings(_ checks: [ResidencyCheck], table: RoutingTable, healthy: Set<String>) -> [DriftFinding] {
        checks.filter { !$0.ok }.map { check in
            var detail = "\(check.probe.header.map { "\($0) data" } ?? "a request without the residency header")"
            detail += " was \(observedText(check.observed)); the routing table says \(observedText(check.expected))"
            if case .served(let region) = check.observed, let code = check.probe.header, let data = Jurisdiction(code),
               let entry = table.entry(for: data), !entry.admits(region: region) {
                detail += " — \(region) is outside the regions allowed for \(code) data (\(entry.regions.map(\.name).joined(separator: ", ")))"
            }
            detail += " (healthy: \(healthy.sorted().joined(separator: ", ").nonEmpty ?? "none"))"
            return DriftFinding(region: check.region, host: check.host, kind: .residencyViolation, subject: "residency \(check.probe.label)", detail: detail)
        }
    }

    static func observedText(_ answer: ResidencyAnswer) -> String {
        switch answer {
        case .served(let region): return "served by \(region)"
        case .refused(let token): return "refused (\(token))"
        case .failed(let reason): return "not answered (\(reason))"
        }
    }

    /// The matrix for people: one row per gateway host, one column per probe,
    /// each cell `✓ region` or `✗ observed (expected …)`; then a summary line.
    public static func matrixText(_ checks: [ResidencyCheck], healthy: Set<String>, regions: [String]) -> String {
        var rowsOrder: [String] = []
        var cells: [String: [String: String]] = [:]
        var labels: [String] = []
        for check in checks {
            let row = "\(check.region)/\(check.host)"
            if cells[row] == nil { rowsOrder.append(row); cells[row] = [:] }
            if !labels.contains(check.probe.label) { labels.append(check.probe.label) }
            cells[row]?[check.probe.label] = check.ok ? "✓ \(check.observed)" : "✗ \(check.observed) (expected \(check.expected))"
        }
        var table = [["GATEWAY"] + labels]
        for row in rowsOrder { table.append([row] + labels.map { cells[row]?[$0] ?? "-" }) }
        let widths = (0..<(labels.count + 1)).map { column in table.map { $0[column].count }.max() ?? 0 }
        var out = ""
        for row in table {
            let padded = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count + 2)
            }
            out += padded.joined() + "\n"
        }
        let unhealthy = regions.filter { !healthy.contains($0) }
        out += "healthy: " + (regions.filter(healthy.contains).joined(separator: ", ").nonEmpty ?? "(none)")
            + "; not healthy: " + (unhealthy.joined(separator: ", ").nonEmpty ?? "(none)") + "\n"
        let violations = checks.filter { !$0.ok }.count
        out += "\(checks.count) checks, \(violations) violation\(violations == 1 ? "" : "s")\n"
        return out
    }

    /// The matrix as canonical JSON (`format_version` 1).
    public static func json(_ checks: [ResidencyCheck], healthy: Set<String>) -> CanonicalJSON {
        func answer(_ value: ResidencyAnswer) -> CanonicalJSON {
            switch value {
            case .served(let region): return ["served_by": .string(region)]
            case .refused(let token): return ["refused": .string(token)]
            case .failed(let reason): return ["failed": .string(reason)]
            }
        }
        return [
            "format_version": 1,
            "healthy": .array(healthy.sorted().map { .string($0) }),
            "violations": .integer(checks.filter { !$0.ok }.count),
            "checks": .array(checks.map { check in
                [
                    "region": .string(check.region),
                    "host": .string(check.host),
                    "probe": .string(check.probe.label),
                    "expected": answer(check.expected),
                    "observed": answer(check.observed),
                    "ok": .bool(check.ok),
                ]
            }),
        ]
    }
}

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}

/// The residency settings and routing table a governance bundle carries:
/// what a gateway was applied with, so drift and plan judge it by the table
/// in force on the host rather than by a fleet repository not applied yet.
public struct AppliedResidency: Sendable, Equatable {
    public var header: String
    public var refuseStatus: Int
    public var table: RoutingTable

    public init(header: String, refuseStatus: Int, table: RoutingTable) {
        self.header = header
        self.refuseStatus = refuseStatus
        self.table = table
    }

    public struct Unreadable: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads the `residency` member of a bundle (`GovernanceBundle`'s layout).
    public static func read(bundle: Data) throws -> AppliedResidency {
        guard let document = try? JSONSerialization.jsonObject(with: bundle) as? [String: Any],
              let residency = document["residency"] as? [String: Any],
              let header = residency["header"] as? String,
              let refuseStatus = residency["refuse_status"] as? Int,
              let missing = residency["missing"], let routes = residency["routes"] else {
            throw Unreadable(description: "\(DesiredHostState.governanceBundlePath) has no readable residency section (header, refuse_status, missing, routes)")
        }
        let tableData = try JSONSerialization.data(withJSONObject: ["format_version": RoutingTable.formatVersion, "missing": missing, "routes": routes])
        do {
            return AppliedResidency(header: header, refuseStatus: refuseStatus, table: try JSONDecoder().decode(RoutingTable.self, from: tableData))
        } catch {
            throw Unreadable(description: "\(DesiredHostState.governanceBundlePath): its residency routes do not read as a routing table: \(error)")
        }
    }
}
