import Foundation

/// What a run does. A closed set: a new kind is a schema-visible change.
public enum RunKind: String, CaseIterable, Codable, Sendable {
    case plan
    case apply
    case drift
    case rollout
    case promote
    case rollback
    case unlock
    /// `meridian routes verify`: requests through the gateways, nothing changed.
    case routesVerify = "routes-verify"

    /// Whether a run of this kind changes hosts, so counts as "the last
    /// apply" of a region in `meridian status`.
    public var changesHosts: Bool {
        switch self {
        case .apply, .rollout, .promote, .rollback: return true
        case .plan, .drift, .unlock, .routesVerify: return false
        }
    }
}

/// How a finished run ended. A run with no outcome is still running, or was
/// killed before it could say (see `StateStore.abandonedRuns()`).
public enum RunOutcome: String, CaseIterable, Codable, Sendable {
    case succeeded
    /// The run stopped on an error; hosts may be part-way.
    case failed
    /// A rollout failed its checks and returned the fleet to the stable slot.
    case rolledBack
    /// The run's process died or was stopped before it finished; a later run
    /// recorded this on its behalf.
    case interrupted
}

/// What a run declares when it starts.
public struct RunStart: Hashable, Codable, Sendable {
    public var kind: RunKind
    public var owner: ProcessIdentity
    /// The fleet repository's git commit, when the fleet is a git checkout.
    public var fleetCommit: String?
    /// The SHA-256 of the plan this run carries out, for plan and apply.
    public var planHash: String?
    /// The regions this run concerns; kept sorted and without duplicates.
    public var regions: [String]

    public init(kind: RunKind, owner: ProcessIdentity, fleetCommit: String? = nil, planHash: String? = nil, regions: [String]) {
        self.kind = kind
        self.owner = owner
        self.fleetCommit = fleetCommit
        self.planHash = planHash
        self.regions = Array(Set(regions)).sorted()
    }
}

/// One run as recorded. Invariant: `finishedAt` and `outcome` are both nil
/// while the run is running and both set once it has finished; `exitCode`
/// is set for every finished run except an `interrupted` one, whose process
/// never got to exit normally.
public struct RunRecord: Hashable, Codable, Sendable {
    public let id: RunID
    public let kind: RunKind
    public let owner: ProcessIdentity
    public let fleetCommit: String?
    public let planHash: String?
    public let regions: [String]
    public let startedAt: StateTime
    public let finishedAt: StateTime?
    public let outcome: RunOutcome?
    public let exitCode: Int32?
    public let summary: String?

    public var isRunning: Bool { outcome == nil }

    /// `user@host`, who started the run.
    public var actor: String { owner.actor }

    public init(
        id: RunID, kind: RunKind, owner: ProcessIdentity, fleetCommit: String?, planHash: String?,
        regions: [String], startedAt: StateTime, finishedAt: StateTime?, outcome: RunOutcome?,
        exitCode: Int32?, summary: String?
    ) {
        self.id = id
        self.kind = kind
        self.owner = owner
        self.fleetCommit = fleetCommit
        self.planHash = planHash
        self.regions = regions
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.exitCode = exitCode
        self.summary = summary
    }
}

/// Whether a journaled step worked.
public enum StepOutcome: String, CaseIterable, Codable, Sendable {
    case ok
    case failed
}

/// What a step declares before it runs.
public struct StepStart: Hashable, Codable, Sendable {
    public var run: RunID
    public var region: String
    public var host: String
    /// A human sentence, e.g. `write /srv/meridian/config/inference/app.yaml`.
    public var step: String
    public var detail: JSONDetail

    public init(run: RunID, region: String, host: String, step: String, detail: JSONDetail = .empty) {
        self.run = run
        self.region = region
        self.host = host
        self.step = step
        self.detail = detail
    }
}

/// One step of a run, written before the step runs and completed after.
/// Invariant: `finishedAt` and `outcome` are both nil (begun, not finished —
/// the step may or may not have taken effect) or both set.
public struct JournalEntry: Hashable, Codable, Sendable {
    public let id: JournalEntryID
    public let run: RunID
    public let region: String
    public let host: String
    public let step: String
    public let detail: JSONDetail
    public let begunAt: StateTime
    public let finishedAt: StateTime?
    public let outcome: StepOutcome?
    public let outcomeDetail: JSONDetail?

    public var isFinished: Bool { outcome != nil }

    public init(
        id: JournalEntryID, run: RunID, region: String, host: String, step: String, detail: JSONDetail,
        begunAt: StateTime, finishedAt: StateTime?, outcome: StepOutcome?, outcomeDetail: JSONDetail?
    ) {
        self.id = id
        self.run = run
        self.region = region
        self.host = host
        self.step = step
        self.detail = detail
        self.begunAt = begunAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.outcomeDetail = outcomeDetail
    }
}

/// The manifest meridian wrote to one host, as the host should now hold it.
/// Invariant: `sha256` is the SHA-256 of `manifest`, computed by the store.
public struct AppliedManifest: Hashable, Codable, Sendable {
    public let id: Int64
    public let run: RunID
    public let region: String
    public let host: String
    /// The manifest document, opaque to the store (JSON written by the engine).
    public let manifest: Data
    public let sha256: String
    public let appliedAt: StateTime

    public init(id: Int64, run: RunID, region: String, host: String, manifest: Data, sha256: String, appliedAt: StateTime) {
        self.id = id
        self.run = run
        self.region = region
        self.host = host
        self.manifest = manifest
        self.sha256 = sha256
        self.appliedAt = appliedAt
    }
}

/// One region's line in `meridian status`, from the store's point of view.
public struct RegionStatus: Hashable, Codable, Sendable {
    public let region: String
    /// The newest apply run of this region that succeeded.
    public let lastApply: RunRecord?
    /// The lease on this region, expired or not; nil when nobody holds one.
    public let lease: Lease?

    public init(region: String, lastApply: RunRecord?, lease: Lease?) {
        self.region = region
        self.lastApply = lastApply
        self.lease = lease
    }
}
