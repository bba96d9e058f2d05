import Foundation
import MeridianModel

/// Where one component's rollout in one region stands. Closed: every switch
/// over it shows where a new phase matters. The canary slot is the one the
/// new version went into; the stable slot is the one that served before.
public enum RolloutPhase: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The new release is being installed into the canary slot and started there (apply's host steps).
    case installing
    /// The canary slot's link is in place but its process is not running: start it.
    case startingIdle
    /// Every host's canary slot is asked for its health path, straight through SSH.
    case healthChecking
    /// The component's smoke probes go straight to every canary slot.
    case smokeTesting
    /// The gateway is being set to step `step`'s weight (one reload).
    case shifting(step: Int)
    /// Traffic runs at step `step`'s weight for the pause; then the step's window is analysed.
    case analysing(step: Int)
    /// Step `step` was inconclusive and the component says to hold: waits for `rollout promote`.
    case holding(step: Int)
    /// All traffic is on the canary slot; the stable slot keeps running for the grace period.
    case switched
    /// Terminal: the new version serves everything and the old slot is stopped.
    case promoted
    /// Traffic goes back to the stable slot (one reload), then the canary slot is stopped.
    case aborting
    /// Terminal: the region serves the stable slot; the canary slot is stopped.
    case rolledBack
    /// Terminal: neither completing nor returning was possible; `reason` says what an operator must do.
    case failed

    /// Whether the rollout has ended (nothing more happens without a new command).
    public var isTerminal: Bool {
        switch self {
        case .promoted, .rolledBack, .failed: return true
        case .installing, .startingIdle, .healthChecking, .smokeTesting, .shifting, .analysing, .holding, .switched, .aborting: return false
        }
    }

    /// The step the phase is at, for phases that have one.
    public var step: Int? {
        switch self {
        case .shifting(let step), .analysing(let step), .holding(let step): return step
        case .installing, .startingIdle, .healthChecking, .smokeTesting, .switched, .promoted, .aborting, .rolledBack, .failed: return nil
        }
    }

    /// The phase as written in the store and in JSON: `analysing:1`, `switched`, ….
    public var description: String {
        switch self {
        case .installing: return "installing"
        case .startingIdle: return "starting-idle"
        case .healthChecking: return "health-checking"
        case .smokeTesting: return "smoke-testing"
        case .shifting(let step): return "shifting:\(step)"
        case .analysing(let step): return "analysing:\(step)"
        case .holding(let step): return "holding:\(step)"
        case .switched: return "switched"
        case .promoted: return "promoted"
        case .aborting: return "aborting"
        case .rolledBack: return "rolled-back"
        case .failed: return "failed"
        }
    }

    /// Reads `description` back; nil for text no phase writes.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let step = parts.count == 2 ? Int(parts[1]) : nil
        switch (parts.first ?? "", step) {
        case ("installing", nil): self = .installing
        case ("starting-idle", nil): self = .startingIdle
        case ("health-checking", nil): self = .healthChecking
        case ("smoke-testing", nil): self = .smokeTesting
        case ("shifting", let step?) where step >= 0: self = .shifting(step: step)
        case ("analysing", let step?) where step >= 0: self = .analysing(step: step)
        case ("holding", let step?) where step >= 0: self = .holding(step: step)
        case ("switched", nil): self = .switched
        case ("promoted", nil): self = .promoted
        case ("aborting", nil): self = .aborting
        case ("rolled-back", nil): self = .rolledBack
        case ("failed", nil): self = .failed
        default: return nil
        }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let phase = RolloutPhase(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown rollout phase \"\(text)\"")
        }
        self = phase
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The outcome of analysing one canary step's window.
public enum StepVerdict: String, Sendable, Equatable, Codable, CaseIterable {
    case pass
    case fail
    case inconclusive
}

/// One analysis of one step as recorded: the verdict and every value it was
/// judged on (rates, latencies, thresholds, sample sizes, test statistics),
/// so `rollout status` and the audit log can show why.
public struct StepAnalysis: Sendable, Equatable, Codable {
    public var step: Int
    /// The canary's traffic share during the window, 0…100.
    public var weight: Int
    public var verdict: StepVerdict
    /// One sentence: what was decided and why.
    public var summary: String
    /// Name → value, e.g. `canary_error_rate` → `0.052`, `stable_requests` → `912`.
    public var values: [String: String]
    /// The window analysed, milliseconds since 1970.
    public var windowStart: Int64
    public var windowEnd: Int64

    public init(step: Int, weight: Int, verdict: StepVerdict, summary: String, values: [String: String] = [:], windowStart: Int64, windowEnd: Int64) {
        self.step = step
        self.weight = weight
        self.verdict = verdict
        self.summary = summary
        self.values = values
        self.windowStart = windowStart
        self.windowEnd = windowEnd
    }

    enum CodingKeys: String, CodingKey {
        case step, weight, verdict, summary, values
        case windowStart = "window_start"
        case windowEnd = "window_end"
    }
}

/// The settings one rollout runs by, fixed when it starts so a resumed
/// rollout keeps the rules it began with. Times are milliseconds.
public struct RolloutPlanSettings: Sendable, Equatable, Codable {
    /// Canary traffic shares, strictly increasing, ending at 100; `[100]` for blue-green.
    public var steps: [Int]
    /// How long each step below 100 runs before its analysis.
    public var pauseMillis: Int64
    /// How long the old slot keeps running once all traffic is on the new one.
    public var graceMillis: Int64
    /// How much longer an inconclusive step may run before `thenInconclusive`.
    public var inconclusiveWaitMillis: Int64
    public var thenInconclusive: InconclusiveOutcome
    /// Whether the component has smoke probes to run before traffic moves.
    public var hasSmokeProbes: Bool

    public init(steps: [Int], pauseMillis: Int64, graceMillis: Int64, inconclusiveWaitMillis: Int64 = 0, thenInconclusive: InconclusiveOutcome = .fail, hasSmokeProbes: Bool) {
        self.steps = steps
        self.pauseMillis = pauseMillis
        self.graceMillis = graceMillis
        self.inconclusiveWaitMillis = inconclusiveWaitMillis
        self.thenInconclusive = thenInconclusive
        self.hasSmokeProbes = hasSmokeProbes
    }

    enum CodingKeys: String, CodingKey {
        case steps
        case pauseMillis = "pause_ms"
        case graceMillis = "grace_ms"
        case inconclusiveWaitMillis = "inconclusive_wait_ms"
        case thenInconclusive = "then_inconclusive"
        case hasSmokeProbes = "smoke"
    }
}

/// One component's rollout in one region as recorded in the state store:
/// everything the state machine needs to decide the next phase after a
/// restart. Invariants: `canarySlot == stableSlot.other`; `canaryWeight` is
/// the canary's share the gateway was last set to (0…100); `analyses` only grow.
public struct RolloutRecord: Sendable, Equatable, Codable {
    public var region: String
    public var component: String
    public var strategy: RolloutStrategy
    /// The wave the region belongs to, when the fleet has waves.
    public var wave: String?
    public var fromVersion: String
    public var toVersion: String
    public var stableSlot: Slot
    public var settings: RolloutPlanSettings
    public var phase: RolloutPhase
    public var canaryWeight: Int
    /// Milliseconds since 1970: when the rollout began, when it last changed, when its phase began.
    public var startedAt: Int64
    public var updatedAt: Int64
    public var phaseSince: Int64
    public var analyses: [StepAnalysis]
    /// Why the rollout is where it is, for terminal and aborting phases.
    public var reason: String?

    public init(region: String, component: String, strategy: RolloutStrategy, wave: String? = nil, fromVersion: String, toVersion: String, stableSlot: Slot, settings: RolloutPlanSettings, phase: RolloutPhase = .installing, canaryWeight: Int = 0, startedAt: Int64, analyses: [StepAnalysis] = [], reason: String? = nil) {
        self.region = region
        self.component = component
        self.strategy = strategy
        self.wave = wave
        self.fromVersion = fromVersion
        self.toVersion = toVersion
        self.stableSlot = stableSlot
        self.settings = settings
        self.phase = phase
        self.canaryWeight = canaryWeight
        self.startedAt = startedAt
        self.updatedAt = startedAt
        self.phaseSince = startedAt
        self.analyses = analyses
        self.reason = reason
    }

    public var canarySlot: Slot { stableSlot.other }

    /// The traffic share step `step` gives the canary slot.
    public func weight(ofStep step: Int) -> Int {
        settings.steps.indices.contains(step) ? settings.steps[step] : 100
    }

    /// The same record in `phase`, changed at `now`.
    public func moved(to phase: RolloutPhase, at now: Int64, reason: String? = nil) -> RolloutRecord {
        var next = self
        next.phase = phase
        next.updatedAt = now
        next.phaseSince = now
        if let reason { next.reason = reason }
        return next
    }

    enum CodingKeys: String, CodingKey {
        case region, component, strategy, wave, settings, phase, analyses, reason
        case fromVersion = "from_version"
        case toVersion = "to_version"
        case stableSlot = "stable_slot"
        case canaryWeight = "canary_weight"
        case startedAt = "started_at"
        case updatedAt = "updated_at"
        case phaseSince = "phase_since"
    }
}
