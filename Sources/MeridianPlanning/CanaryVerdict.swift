import Foundation
import MeridianBasics
import MeridianModel

/// The judgement of one canary step, with every number it rests on, so the
/// rollout can record it and `rollout status` can show it: the decision,
/// both slots' traffic, the thresholds and confidence used, and each check's
/// breaches and statistical test.
public struct CanaryVerdict: Sendable, Equatable, Codable {
    public var decision: CanaryDecision
    public var component: String
    public var canarySlot: Slot
    public var window: AnalysisWindow
    public var canary: SlotTraffic
    public var stable: SlotTraffic
    /// Whether the stable slot had enough requests to compare with; without
    /// it only the absolute thresholds are checked (a step at 100 %).
    public var comparedWithStable: Bool
    public var lines: LogLineCounts
    public var thresholds: CanaryThresholds
    /// The checks that were run: errors, then latency. Empty when inconclusive.
    public var checks: [CanaryCheck]

    public init(decision: CanaryDecision, component: String, canarySlot: Slot, window: AnalysisWindow, canary: SlotTraffic, stable: SlotTraffic, comparedWithStable: Bool, lines: LogLineCounts, thresholds: CanaryThresholds, checks: [CanaryCheck]) {
        self.decision = decision
        self.component = component
        self.canarySlot = canarySlot
        self.window = window
        self.canary = canary
        self.stable = stable
        self.comparedWithStable = comparedWithStable
        self.lines = lines
        self.thresholds = thresholds
        self.checks = checks
    }
}

/// What a canary step's analysis concluded.
public enum CanaryDecision: Sendable, Equatable, Codable {
    case pass
    /// The checks that failed: each breached a threshold and its test showed
    /// the canary worse with the confidence asked for.
    case fail(checks: [CanaryCheck])
    case inconclusive(InconclusiveReason)

    public var name: String {
        switch self {
        case .pass: return "pass"
        case .fail: return "fail"
        case .inconclusive: return "inconclusive"
        }
    }
}

/// Why a step could not be judged.
public enum InconclusiveReason: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The canary slot answered fewer requests than `min_requests`.
    case tooFewRequests(seen: Int, needed: Int)
    /// Too large a share of the log did not parse to trust what did.
    case unparsableLines(count: Int, of: Int)

    public var description: String {
        switch self {
        case .tooFewRequests(let seen, let needed):
            return "the canary slot answered \(seen) request\(seen == 1 ? "" : "s") in the window, fewer than min_requests \(needed)"
        case .unparsableLines(let bad, let total):
            return "\(bad) of \(total) access-log lines did not parse (10 % or more): fix the gateway's log format before judging"
        }
    }
}

/// The half-open time range `[start, end)` of a step, in milliseconds since
/// the Unix epoch, matched against each line's end time.
public struct AnalysisWindow: Sendable, Equatable, Codable {
    public var startMilliseconds: Int64
    public var endMilliseconds: Int64

    public init(startMilliseconds: Int64, endMilliseconds: Int64) {
        self.startMilliseconds = startMilliseconds
        self.endMilliseconds = endMilliseconds
    }

    public func contains(_ milliseconds: Int64) -> Bool {
        startMilliseconds <= milliseconds && milliseconds < endMilliseconds
    }

    public var duration: Duration { .milliseconds(endMilliseconds - startMilliseconds) }
}

/// What one slot served in a step's window.
public struct SlotTraffic: Sendable, Equatable, Codable {
    public var slot: Slot
    /// Contacts judged: requests the slot answered plus contacts it failed
    /// that nginx passed on to another server.
    public var requests: Int
    /// Failed contacts nginx passed on (each also counted in `serverErrors`).
    public var passedOn: Int
    /// 5xx answers plus passed-on contacts.
    public var serverErrors: Int
    /// 4xx answers: the client's mistakes, not the slot's, so not errors.
    public var clientErrors: Int
    /// Contacts with an upstream response time.
    public var latencySamples: Int
    public var p50Milliseconds: Int?
    public var p99Milliseconds: Int?
    /// Share of server errors, 0 when the slot saw nothing.
    public private(set) var errorRate: Double

    public init(slot: Slot, requests: Int = 0, passedOn: Int = 0, serverErrors: Int = 0, clientErrors: Int = 0, latencySamples: Int = 0, p50Milliseconds: Int? = nil, p99Milliseconds: Int? = nil) {
        self.slot = slot
        self.requests = requests
        self.passedOn = passedOn
        self.serverErrors = serverErrors
        self.clientErrors = clientErrors
        self.latencySamples = latencySamples
        self.p50Milliseconds = p50Milliseconds
        self.p99Milliseconds = p99Milliseconds
        self.errorRate = requests == 0 ? 0 : Double(serverErrors) / Double(requests)
    }
}

/// How the lines handed to the analysis were used.
public struct LogLineCounts: Sendable, Equatable, Codable {
    /// Lines read, parsed or not.
    public var read: Int = 0
    public var unparsable: Int = 0
    /// Parsed lines that ended outside the window.
    public var outsideWindow: Int = 0
    /// Lines of the window for another component (or none).
    public var otherComponents: Int = 0
    /// Lines of this component whose answering upstream is in neither slot
    /// (answered by the gateway itself, or an unknown upstream).
    public var withoutSlot: Int = 0
    /// Contacts that handed the request to another upstream group: their outcome is not logged.
    public var handedOver: Int = 0

    public init() {}
}

/// The thresholds and confidence a verdict was reached with, as recorded values.
public struct CanaryThresholds: Sendable, Equatable, Codable {
    public var maxErrorRate: Double
    public var maxP99Milliseconds: Int
    public var minRequests: Int
    public var maxErrorRateIncrease: Double?
    public var maxLatencyRatio: Double?
    public var confidence: Double
    /// The significance each of the two checks is held to: (1 − confidence) / 2,
    /// so the step as a whole fails a healthy canary at most 1 − confidence of the time.
    public var alphaPerCheck: Double

    public init(_ analysis: CanaryAnalysis) {
        maxErrorRate = analysis.maxErrorRate
        maxP99Milliseconds = Int(DurationText.milliseconds(analysis.maxP99Latency))
        minRequests = analysis.minRequests
        maxErrorRateIncrease = analysis.maxErrorRateIncrease
        maxLatencyRatio = analysis.maxLatencyRatio
        confidence = analysis.confidence
        alphaPerCheck = (1 - analysis.confidence) / 2
    }
}

/// One check of a step (errors or latency): which thresholds the canary's
/// figures breach, and the test that says whether it is worse with confidence.
/// It fails only when both hold.
public struct CanaryCheck: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case errors
        case latency
    }

    public var kind: Kind
    public var breaches: [CanaryBreach]
    /// nil when there was nothing to test (no latency samples).
    public var test: CanaryTest?
    public var alpha: Double

    public init(kind: Kind, breaches: [CanaryBreach], test: CanaryTest?, alpha: Double) {
        self.kind = kind
        self.breaches = breaches
        self.test = test
        self.alpha = alpha
    }

    public var significant: Bool { test.map { $0.pValue < alpha } ?? false }
    public var failed: Bool { !breaches.isEmpty && significant }
}

extension CanaryCheck: CustomStringConvertible {
    /// The breaches and the test in one sentence, as a verdict and a rollback reason show them.
    public var description: String {
        let breached = breaches.isEmpty ? "within thresholds" : breaches.map(\.description).joined(separator: "; ")
        guard let test else { return breached + "; no samples to test" }
        var tested = test.description
        if case .binomial = test {
            switch kind {
            case .errors: tested += " (server errors against max_error_rate)"
            case .latency: tested += " (requests slower than max_p99_latency against the 1 % a p99 allows)"
            }
        }
        return "\(breached); \(tested) \(significant ? "<" : "≥") α \(Figures.number(alpha))"
    }
}

/// A threshold the canary's figures are past.
public enum CanaryBreach: Sendable, Equatable, Codable, CustomStringConvertible {
    case errorRate(observed: Double, limit: Double)
    case errorRateIncrease(canary: Double, stable: Double, limit: Double)
    case p99(observedMilliseconds: Int, limitMilliseconds: Int)
    case latencyRatio(canaryMilliseconds: Int, stableMilliseconds: Int, limit: Double)

    public var description: String {
        switch self {
        case .errorRate(let observed, let limit):
            return "error rate \(Figures.percent(observed)) > max_error_rate \(Figures.percent(limit))"
        case .errorRateIncrease(let canary, let stable, let limit):
            return "error rate \(Figures.percent(canary)) is \(Figures.points(canary - stable)) above stable's \(Figures.percent(stable)) > max_error_rate_increase \(Figures.points(limit))"
        case .p99(let observed, let limit):
            return "p99 \(observed) ms > max_p99_latency \(limit) ms"
        case .latencyRatio(let canary, let stable, let limit):
            let ratio = stable == 0 ? "∞" : String(format: "%.2f", Double(canary) / Double(stable))
            return "p99 \(canary) ms is \(ratio)× stable's \(stable) ms > max_latency_ratio \(Figures.number(limit))"
        }
    }
}

/// A one-sided statistical test and its result; every p-value is the
/// chance of a canary this much worse if it were in truth no worse.
public enum CanaryTest: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Canary against stable errors, when some expected count of the 2×2 table is under 5.
    case fisherExact(pValue: Double)
    /// Canary against stable errors, pooled proportion.
    case twoProportionZ(z: Double, pValue: Double)
    /// Canary latencies stochastically larger than stable's.
    case mannWhitneyU(u: Double, z: Double, pValue: Double)
    /// Without a stable slot to compare: `events` of `trials` against the
    /// rate a threshold allows (errors against max_error_rate; latencies
    /// above max_p99_latency against 1 %).
    case binomial(events: Int, trials: Int, allowedRate: Double, pValue: Double)

    public var pValue: Double {
        switch self {
        case .fisherExact(let p), .twoProportionZ(_, let p), .mannWhitneyU(_, _, let p), .binomial(_, _, _, let p): return p
        }
    }

    public var description: String {
        switch self {
        case .fisherExact(let p):
            return "Fisher's exact test \(Figures.probability(p))"
        case .twoProportionZ(let z, let p):
            return "two-proportion z = \(String(format: "%.2f", z)), \(Figures.probability(p))"
        case .mannWhitneyU(let u, let z, let p):
            return "Mann-Whitney U = \(Figures.number(u)), z = \(String(format: "%.2f", z)), \(Figures.probability(p))"
        case .binomial(let events, let trials, let rate, let p):
            return "binomial test \(events) of \(trials) against an allowed \(Figures.percent(rate)), \(Figures.probability(p))"
        }
    }
}

extension CanaryVerdict {
    /// The verdict as lines of text for people, every number included.
    public var text: String {
        var out = "\(component) canary slot \(canarySlot.rawValue): \(decision.name)\n"
        let seconds = Double(window.endMilliseconds - window.startMilliseconds) / 1000
        out += "  window    \(Figures.epoch(window.startMilliseconds)) to \(Figures.epoch(window.endMilliseconds)) (\(Figures.number(seconds)) s): \(lines.read) lines read, \(lines.unparsable) unparsable\n"
        out += "  canary    \(Self.describe(canary))\n"
        out += "  stable    \(Self.describe(stable))\(comparedWithStable ? "" : ", too few to compare: absolute thresholds only")\n"
        for check in checks {
            out += "  \(check.kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(check.failed ? "FAILED" : "ok"): \(check)\n"
        }
        if case .inconclusive(let reason) = decision { out += "  reason    \(reason)\n" }
        out += "  confidence \(Figures.number(thresholds.confidence)): a check fails only when a threshold is breached and its test is significant at α = \(Figures.number(thresholds.alphaPerCheck))\n"
        return out
    }

    static func describe(_ traffic: SlotTraffic) -> String {
        var text = "\(traffic.slot.rawValue), \(traffic.requests) requests, \(traffic.serverErrors) server error\(traffic.serverErrors == 1 ? "" : "s") (\(Figures.percent(traffic.errorRate)))"
        if traffic.passedOn > 0 { text += " of which \(traffic.passedOn) passed on to another server" }
        text += ", \(traffic.clientErrors) client error\(traffic.clientErrors == 1 ? "" : "s") (not counted)"
        if let p50 = traffic.p50Milliseconds, let p99 = traffic.p99Milliseconds { text += ", p50 \(p50) ms, p99 \(p99) ms" }
        return text
    }
}

/// How verdict figures are written: short, exact enough to recompute.
enum Figures {
    static func percent(_ rate: Double) -> String { String(format: "%.2f %%", rate * 100) }
    static func points(_ difference: Double) -> String { String(format: "%.2f points", difference * 100) }
    static func probability(_ p: Double) -> String { p < 1e-12 ? "p < 1e-12" : "p = " + String(format: "%.3g", p) }
    /// Whole numbers and halves (a U statistic) exactly, anything else to four digits.
    static func number(_ value: Double) -> String {
        guard abs(value) < 1e15 else { return String(format: "%.4g", value) }
        if value == value.rounded() { return String(Int64(value)) }
        if value * 2 == (value * 2).rounded() { return String(format: "%.1f", value) }
        return String(format: "%.4g", value)
    }
    static func epoch(_ milliseconds: Int64) -> String {
        String(format: "%lld.%03lld", milliseconds / 1000, milliseconds % 1000)
    }
}
