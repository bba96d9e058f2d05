import Foundation
import MeridianEngine
import MeridianPlanning

/// `apply --format json`: one JSON object per line on standard output, for
/// CI (docs/apply-events.md). Every line has `event` and `time`; lines from
/// many hosts arrive interleaved, each whole. Invariant: once the command line
/// has parsed, the stream ends with exactly one `apply_finished` or
/// `apply_refused` line.
final class ApplyEventStream: @unchecked Sendable {
    static let formatVersion = 1

    private let lock = NSLock()
    /// Whether the closing line was written.
    private(set) var ended = false
    /// The last error printed, for the closing `apply_refused` line.
    var lastError: String?
    private let write: @Sendable (String) -> Void
    private let clock: @Sendable () -> Date

    init(write: @escaping @Sendable (String) -> Void = { Output.line($0) }, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.write = write
        self.clock = clock
    }

    /// One event: its name, then its fields (string, number, bool, array or object values).
    func emit(_ event: String, _ fields: [String: Any] = [:]) {
        var object = fields
        object["event"] = event
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        object["time"] = formatter.string(from: clock())
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        lock.lock()
        defer { lock.unlock() }
        if event == "apply_finished" || event == "apply_refused" { ended = true }
        write(String(decoding: data, as: UTF8.self))
    }

    func plan(_ plan: Plan) {
        let summary = plan.summary
        emit("plan", [
            "format_version": Self.formatVersion,
            "plan_hash": plan.hash,
            "has_changes": summary.hasChanges,
            "summary": ["create": summary.create, "update": summary.update, "delete": summary.delete, "upgrade": summary.upgrade,
                        "restart": summary.restart, "hosts_changed": summary.hostsChanged, "hosts_unchanged": summary.hostsUnchanged],
            "regions": plan.regions.map { region in
                ["region": region.name, "hosts": region.hosts.map(\.host), "changed_hosts": region.hosts.filter(\.hasChanges).map(\.host)] as [String: Any]
            },
        ])
    }

    @Sendable func handle(_ event: ApplyEvent) {
        switch event {
        case .observed(let region, let host):
            emit("host_observed", ["region": region, "host": host])
        case .stepStarted(let region, let host, let step):
            emit("step_started", ["region": region, "host": host, "step": step])
        case .stepFinished(let region, let host, let step, nil):
            emit("step_done", ["region": region, "host": host, "step": step])
        case .stepFinished(let region, let host, let step, let error?):
            emit("step_failed", ["region": region, "host": host, "step": step, "error": error])
        case .hostFinished(let region, let host, nil):
            emit("host_done", ["region": region, "host": host])
        case .hostFinished(let region, let host, let error?):
            emit("host_failed", ["region": region, "host": host, "error": error])
        case .waveStarted(let wave, let regions):
            emit("wave_started", ["wave": wave, "regions": regions])
        case .waitingForApproval(let wave):
            emit("wave_waiting_for_approval", ["wave": wave])
        case .rollout(.transition(let region, let component, let from, let to, let effect)):
            emit("rollout_transition", ["region": region, "component": component, "from": from.description, "to": to.description, "effect": effect])
        }
    }

    func notPlanned(_ failure: HostFailure) {
        emit("host_not_planned", ["region": failure.region, "host": failure.host, "error": failure.reason])
    }

    func finished(_ report: ApplyReport, exitCode: Int32) {
        for region in report.regions {
            switch region.result {
            case .applied(let changed, let hosts):
                emit("region_summary", ["region": region.region, "result": "applied", "hosts_changed": changed, "hosts": hosts])
            case .failed(let failures):
                emit("region_summary", ["region": region.region, "result": "failed", "failures": failures.map(Self.failure)])
            case .locked(let failures):
                emit("region_summary", ["region": region.region, "result": "locked", "failures": failures.map(Self.failure)])
            case .rolledBack(let reasons):
                emit("region_summary", ["region": region.region, "result": "rolled_back", "reasons": reasons])
            case .notStarted(let reason):
                emit("region_summary", ["region": region.region, "result": "not_started", "reason": reason])
            }
        }
        emit("apply_finished", ["run": report.run.description, "plan_hash": report.planHash, "exit_code": Int(exitCode)])
    }

    /// The plan had nothing to change: no run was started.
    func nothingToDo(exitCode: Int32) {
        emit("apply_finished", ["run": NSNull(), "exit_code": Int(exitCode), "reason": "the plan has no changes"])
    }

    func refused(_ message: String, exitCode: Int32) {
        emit("apply_refused", ["error": message, "exit_code": Int(exitCode)])
    }

    static func failure(_ failure: HostFailure) -> [String: Any] {
        ["host": failure.host, "error": failure.reason]
    }
}
