import MeridianBasics
import MeridianModel

extension StepAnalysis {
    /// What a rollout records of a canary verdict: the decision, a sentence
    /// saying why, and every figure it rests on (both slots' traffic, the
    /// thresholds, each check's breaches and test), as name → value.
    public init(verdict: CanaryVerdict, step: Int, weight: Int) {
        let decision: StepVerdict
        let summary: String
        switch verdict.decision {
        case .pass:
            decision = .pass
            summary = "passed: canary \(verdict.canary.requests) requests, error rate \(Figures.percent(verdict.canary.errorRate)), p99 \(verdict.canary.p99Milliseconds.map { "\($0) ms" } ?? "-")"
        case .fail(let checks):
            decision = .fail
            summary = checks.map { "\($0.kind.rawValue): \($0)" }.joined(separator: "; ")
        case .inconclusive(let reason):
            decision = .inconclusive
            summary = "\(reason)"
        }
        var values: [String: String] = [:]
        for traffic in [("canary", verdict.canary), ("stable", verdict.stable)] {
            let (name, slot) = traffic
            values["\(name)_slot"] = slot.slot.rawValue
            values["\(name)_requests"] = String(slot.requests)
            values["\(name)_server_errors"] = String(slot.serverErrors)
            values["\(name)_error_rate"] = Figures.number(slot.errorRate)
            values["\(name)_p99_ms"] = slot.p99Milliseconds.map(String.init) ?? "-"
        }
        let thresholds = verdict.thresholds
        values["max_error_rate"] = Figures.number(thresholds.maxErrorRate)
        values["max_p99_ms"] = String(thresholds.maxP99Milliseconds)
        values["min_requests"] = String(thresholds.minRequests)
        values["confidence"] = Figures.number(thresholds.confidence)
        values["compared_with_stable"] = verdict.comparedWithStable ? "yes" : "no"
        values["lines_read"] = String(verdict.lines.read)
        values["lines_unparsable"] = String(verdict.lines.unparsable)
        for check in verdict.checks {
            values["\(check.kind.rawValue)_check"] = check.description
        }
        self.init(step: step, weight: weight, verdict: decision, summary: summary, values: values,
                  windowStart: verdict.window.startMilliseconds, windowEnd: verdict.window.endMilliseconds)
    }
}
