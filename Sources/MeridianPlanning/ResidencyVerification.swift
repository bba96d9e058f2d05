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
