import Foundation

/// One host a drift run looked at, or could not.
public struct DriftCheck: Hashable, Codable, Sendable {
    public let run: RunID
    public let region: String
    public let host: String
    public let examined: Bool
    public let reason: String?

    public init(run: RunID, region: String, host: String, examined: Bool, reason: String?) {
        self.run = run
        self.region = region
        self.host = host
        self.examined = examined
        self.reason = reason
    }
}

/// One finding one drift run saw.
public struct DriftSighting: Hashable, Codable, Sendable {
    public let run: RunID
    public let finding: Int64
    public let detail: JSONDetail

    public init(run: RunID, finding: Int64, detail: JSONDetail) {
        self.run = run
        self.finding = finding
        self.detail = detail
    }
}

/// Every record of a store, with the ids and times it was written with, for
/// copying a store to another backend (`meridian state migrate`). Audit
/// entries travel verbatim — never re-chained — so the copy verifies against
/// the same anchors as the original.
public struct StateSnapshot: Hashable, Codable, Sendable {
    public var runs: [RunRecord]
    public var journal: [JournalEntry]
    public var manifests: [AppliedManifest]
    public var audit: [AuditEntry]
    public var auditHead: AuditHead?
    public var leases: [Lease]
    public var driftChecks: [DriftCheck]
    public var findings: [DriftFindingRecord]
    public var sightings: [DriftSighting]
    /// The key of keyed file hashes, when one was made: copied so hashes recorded before the move still compare.
    public var fileHashKey: Data?
    public var rollouts: [StoredRollout]
    public var rolloutTransitions: [RolloutTransition]
    public var rolloutCommands: [RolloutCommandRecord]

    public init(
        runs: [RunRecord] = [], journal: [JournalEntry] = [], manifests: [AppliedManifest] = [], audit: [AuditEntry] = [],
        auditHead: AuditHead? = nil, leases: [Lease] = [], driftChecks: [DriftCheck] = [], findings: [DriftFindingRecord] = [],
        sightings: [DriftSighting] = [], fileHashKey: Data? = nil,
        rollouts: [StoredRollout] = [], rolloutTransitions: [RolloutTransition] = [], rolloutCommands: [RolloutCommandRecord] = []
    ) {
        self.runs = runs
        self.journal = journal
        self.manifests = manifests
        self.audit = audit
        self.auditHead = auditHead
        self.leases = leases
        self.driftChecks = driftChecks
        self.findings = findings
        self.sightings = sightings
        self.fileHashKey = fileHashKey
        self.rollouts = rollouts
        self.rolloutTransitions = rolloutTransitions
        self.rolloutCommands = rolloutCommands
    }

    /// Records per table, as `state migrate` reports them.
    public var counts: [String: Int64] {
        [
            "runs": Int64(runs.count), "journal": Int64(journal.count), "applied_manifests": Int64(manifests.count),
            "audit_log": Int64(audit.count), "leases": Int64(leases.count), "drift_checks": Int64(driftChecks.count),
            "drift_findings": Int64(findings.count), "drift_sightings": Int64(sightings.count),
            "file_hash_key": fileHashKey == nil ? 0 : 1, "rollouts": Int64(rollouts.count),
            "rollout_transitions": Int64(rolloutTransitions.count), "rollout_commands": Int64(rolloutCommands.count),
        ]
    }

    /// The tables a snapshot fills, in an order that keeps every reference
    /// pointing backwards; a store checks them for emptiness before importing.
    public static let tables = [
        "runs", "journal", "applied_manifests", "audit_log", "leases", "drift_checks", "drift_findings", "drift_sightings",
        "file_hash_key", "rollouts", "rollout_transitions", "rollout_commands",
    ]

    public var isEmpty: Bool { counts.values.allSatisfy { $0 == 0 } && auditHead == nil }
}
