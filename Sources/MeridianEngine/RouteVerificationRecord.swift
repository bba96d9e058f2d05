import Foundation
import MeridianModel
import MeridianPlanning
import MeridianState

/// What one `meridian routes verify` run found at one gateway host: the
/// journal detail of that host's step, which `meridian status` reads back.
/// Invariant: `violations` names exactly the cells that were not ✓, and an
/// unreachable host has no checks and its reason in `unreachable`.
public struct RouteVerificationStep: Codable, Sendable, Equatable {
    public var checks: Int
    /// `EU: us-east (expected eu-west)`, one per cell that was not ✓.
    public var violations: [String]
    /// Whether the host's region was healthy when health was sampled.
    public var healthy: Bool
    public var unreachable: String?

    public init(checks: Int, violations: [String], healthy: Bool, unreachable: String?) {
        self.checks = checks
        self.violations = violations
        self.healthy = healthy
        self.unreachable = unreachable
    }

    public var ok: Bool { violations.isEmpty && unreachable == nil }

    /// One step per gateway host of the selected regions (all when none is named), in fleet order; pure.
    public static func steps(fleet: Fleet, selected: [String], checks all: [ResidencyCheck], healthy: Set<String>, unreachable hosts: [String])
        -> [(region: String, host: String, step: RouteVerificationStep)] {
        fleet.regions.filter { selected.isEmpty || selected.contains($0.name) }.flatMap { region in
            region.gateways.map { host in
                let checks = all.filter { $0.region == region.name && $0.host == host.name }
                let unreachable = hosts.first { $0.hasPrefix("\(region.name)/\(host.name) ") }
                let step = RouteVerificationStep(
                    checks: checks.count,
                    violations: checks.filter { !$0.ok }.map { "\($0.probe.label): \($0.observed) (expected \($0.expected))" },
                    healthy: healthy.contains(region.name), unreachable: unreachable)
                return (region.name, host.name, step)
            }
        }
    }

    /// The journal's sentence for the step.
    public func sentence(host: String) -> String {
        if let unreachable { return "routes verify through \(host): not reached: \(unreachable)" }
        return "routes verify through \(host): \(checks) checks, \(violations.count) violation\(violations.count == 1 ? "" : "s")"
    }
}

/// Records `meridian routes verify` in the state store: a run of kind
/// `routes-verify` over the regions whose gateways it probed, one journal
/// step per gateway host with its `RouteVerificationStep`, and the run's
/// outcome and one-line summary. Nothing on a host changes.
public struct RouteVerificationRecorder: Sendable {
    public let store: any StateStore
    public let run: RunID

    /// Starts the run before any request is sent.
    public static func start(store: any StateStore, fleet: Fleet, selected: [String]) async throws -> RouteVerificationRecorder {
        let regions = selected.isEmpty ? fleet.regions.map(\.name) : selected
        let record = try await store.startRun(RunStart(kind: .routesVerify, owner: .current(), regions: regions))
        return RouteVerificationRecorder(store: store, run: record.id)
    }

    /// Journals each gateway host's result and finishes the run: succeeded
    /// (exit 0) when every cell was ✓ and every host reached, failed (exit 1) otherwise.
    public func finish(fleet: Fleet, selected: [String], result: ResidencyVerifier.Result) async throws {
        try await finish(fleet: fleet, selected: selected, checks: result.checks, healthy: result.healthy, unreachable: result.unreachable)
    }

    public func finish(fleet: Fleet, selected: [String], checks: [ResidencyCheck], healthy: Set<String>, unreachable: [String]) async throws {
        let steps = RouteVerificationStep.steps(fleet: fleet, selected: selected, checks: checks, healthy: healthy, unreachable: unreachable)
        for entry in steps {
            let detail = try JSONDetail(encoding: entry.step)
            let id = try await store.beginStep(StepStart(run: run, region: entry.region, host: entry.host, step: entry.step.sentence(host: entry.host), detail: detail))
            _ = try await store.finishStep(id, outcome: entry.step.ok ? .ok : .failed, detail: detail)
        }
        let violations = checks.filter { !$0.ok }.count
        let unhealthy = fleet.regions.map(\.name).filter { !healthy.contains($0) }
        var summary = "\(checks.count) checks, \(violations) violation\(violations == 1 ? "" : "s")"
        if !unreachable.isEmpty { summary += ", \(unreachable.count) host(s) not reached" }
        summary += "; not healthy: " + (unhealthy.isEmpty ? "(none)" : unhealthy.joined(separator: ", "))
        let ok = violations == 0 && unreachable.isEmpty
        _ = try await store.finishRun(run, outcome: ok ? .succeeded : .failed, exitCode: ok ? 0 : 1, summary: summary)
    }

    /// Finishes the run when the verification could not start (a sentence saying why).
    public func fail(_ reason: String) async throws {
        _ = try await store.finishRun(run, outcome: .failed, exitCode: 1, summary: reason)
    }
}
