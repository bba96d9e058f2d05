import Foundation

/// Identifies one rollout (one component in one region, from one version
/// to another); assigned by the store, increasing.
public struct RolloutID: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public static func < (lhs: RolloutID, rhs: RolloutID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "rollout \(rawValue)" }
}

/// A rollout as the store keeps it. The store does not read `record` (the
/// engine's JSON, MeridianPlanning's `RolloutRecord`): it keeps the phase
/// beside it so that unfinished rollouts can be found without decoding.
/// Invariant: `terminal` rollouts are never changed again.
public struct StoredRollout: Hashable, Codable, Sendable {
    public var id: RolloutID
    /// The run that started it.
    public var run: RunID?
    public var region: String
    public var component: String
    public var phase: String
    public var terminal: Bool
    public var record: Data
    public var startedAt: StateTime
    public var updatedAt: StateTime

    public init(id: RolloutID, run: RunID?, region: String, component: String, phase: String, terminal: Bool, record: Data, startedAt: StateTime, updatedAt: StateTime) {
        self.id = id
        self.run = run
        self.region = region
        self.component = component
        self.phase = phase
        self.terminal = terminal
        self.record = record
        self.startedAt = startedAt
        self.updatedAt = updatedAt
    }
}

/// One change of a rollout's record, journaled with it: which run made it,
/// the phase before and after, and the effect the engine was to carry out.
public struct RolloutTransition: Hashable, Codable, Sendable {
    public var rollout: RolloutID
    /// 1 for the rollout's first record, then increasing by one.
    public var seq: Int
    public var run: RunID?
    public var fromPhase: String?
    public var toPhase: String
    public var effect: String
    public var detail: JSONDetail
    public var at: StateTime

    public init(rollout: RolloutID, seq: Int, run: RunID?, fromPhase: String?, toPhase: String, effect: String, detail: JSONDetail, at: StateTime) {
        self.rollout = rollout
        self.seq = seq
        self.run = run
        self.fromPhase = fromPhase
        self.toPhase = toPhase
        self.effect = effect
        self.detail = detail
        self.at = at
    }
}

/// The next record of a rollout and what the engine does to reach it.
public struct RolloutUpdate: Hashable, Sendable {
    public var run: RunID?
    public var phase: String
    public var terminal: Bool
    public var record: Data
    /// The effect to carry out, in words (`set weight 10`, `wait 2s`, …).
    public var effect: String
    /// For the journal and the audit entry: values, reasons, analysis results.
    public var detail: JSONDetail
    /// Who made the change, for the audit log.
    public var actor: String

    public init(run: RunID?, phase: String, terminal: Bool, record: Data, effect: String, detail: JSONDetail = .empty, actor: String) {
        self.run = run
        self.phase = phase
        self.terminal = terminal
        self.record = record
        self.effect = effect
        self.detail = detail
        self.actor = actor
    }
}

/// An operator's word to rollouts in progress (`rollout promote`, `abort`,
/// `rollback`), queued until the run driving the rollout takes it.
/// `subject` is a region name, or `wave:<name>` for a wave's approval.
public struct RolloutCommandRecord: Hashable, Codable, Sendable {
    public var id: Int64
    public var subject: String
    public var command: String
    public var actor: String
    public var requestedAt: StateTime
    public var takenAt: StateTime?

    public init(id: Int64, subject: String, command: String, actor: String, requestedAt: StateTime, takenAt: StateTime?) {
        self.id = id
        self.subject = subject
        self.command = command
        self.actor = actor
        self.requestedAt = requestedAt
        self.takenAt = takenAt
    }
}
