import Foundation

/// meridian's memory between runs: runs, their step journal, the manifests
/// applied to hosts, a hash-chained audit log, region leases and drift
/// history. Every method is atomic: it commits all of its writes or none.
/// Implementations must make `acquireLeases` atomic across processes that
/// share the store. `SQLiteStateStore` keeps one file; `PostgresStateStore`
/// (MeridianPostgresState) a shared database; `StateStores.open` picks one.
/// The rules that are not SQL live once, in `LeaseRules`, `DriftRules`,
/// `RunRules`, `RolloutRules` and `AuditChain`, and every backend calls them.
public protocol StateStore: Sendable {
    /// Where the store lives, for messages (a file path or a database URL).
    var location: String { get }

    // MARK: Runs

    /// Records a new run as running.
    func startRun(_ start: RunStart) async throws -> RunRecord
    /// Records how a running run ended. Throws `runAlreadyFinished` for a finished one.
    func finishRun(_ id: RunID, outcome: RunOutcome, exitCode: Int32, summary: String) async throws -> RunRecord
    /// Records the plan a running run carries out, for a run that planned
    /// after it started (apply without a saved plan plans under its locks).
    /// Throws `runAlreadyFinished` for a finished one.
    func recordPlan(_ id: RunID, planHash: String) async throws -> RunRecord
    func run(_ id: RunID) async throws -> RunRecord?
    /// The newest runs first, at most `limit`.
    func recentRuns(limit: Int) async throws -> [RunRecord]
    /// Runs with no outcome yet, oldest first: running, or killed before they could finish.
    func unfinishedRuns() async throws -> [RunRecord]
    /// Unfinished runs whose owner is provably gone: its process is dead on
    /// this machine, or a lease it holds has expired. (A run from another
    /// machine that holds no lease cannot be judged and is not listed.)
    func abandonedRuns() async throws -> [RunRecord]
    /// Finishes an unfinished run as `interrupted` on behalf of its dead
    /// owner and writes an audit entry naming `actor`.
    func markInterrupted(_ id: RunID, by actor: String, note: String) async throws -> RunRecord

    // MARK: Journal

    /// Writes a step's entry before the step runs.
    func beginStep(_ step: StepStart) async throws -> JournalEntryID
    /// Completes a step's entry after it ran. Throws if it was already completed.
    func finishStep(_ id: JournalEntryID, outcome: StepOutcome, detail: JSONDetail) async throws -> JournalEntry
    /// A run's steps in the order they began.
    func journal(of run: RunID) async throws -> [JournalEntry]
    /// Steps begun but never finished, oldest first; only those of `run` when given.
    func unfinishedSteps(of run: RunID?) async throws -> [JournalEntry]

    // MARK: Applied manifests

    /// Records the manifest written to a host; the store computes its SHA-256.
    func recordManifest(run: RunID, region: String, host: String, manifest: Data) async throws -> AppliedManifest
    /// The newest manifest applied to one host.
    func latestManifest(region: String, host: String) async throws -> AppliedManifest?
    /// The newest manifest of every host (of `region` when given), by region then host.
    func latestManifests(region: String?) async throws -> [AppliedManifest]
    /// A host's manifests, newest first, at most `limit`.
    func manifestHistory(region: String, host: String, limit: Int) async throws -> [AppliedManifest]

    // MARK: File hash key

    /// The fleet's key for keyed hashes (HMAC-SHA256) of sensitive files:
    /// 32 random bytes made on the first call and the same on every later
    /// one, from every process sharing the store. It never leaves the
    /// control plane; hosts get keys derived from it.
    func fileHashKey() async throws -> Data

    // MARK: Audit log

    /// Appends an entry, chained to the one before it.
    func appendAudit(_ record: AuditRecord) async throws -> AuditEntry
    /// Entries in order, those after `afterSeq` (0 for all), at most `limit`.
    func auditLog(afterSeq: Int64, limit: Int) async throws -> [AuditEntry]
    /// The head record, nil for an empty log.
    func auditHead() async throws -> AuditHead?
    /// Checks the whole chain (and `anchor`, a head copied elsewhere earlier).
    func verifyAudit(anchor: AuditHead?) async throws -> AuditVerification

    // MARK: Leases

    /// Takes the leases on all `regions` or none: each must be free, expired,
    /// or already held by `holder`. Throws `leaseHeld` naming every lease in
    /// the way. Taking over an expired lease writes an audit entry.
    func acquireLeases(regions: [String], holder: ProcessIdentity, run: RunID?, ttl: Duration) async throws -> [Lease]
    /// Extends leases `holder` still holds; throws `leaseLost` (and extends
    /// none) when any is gone or held by someone else.
    func renewLeases(regions: [String], holder: ProcessIdentity, ttl: Duration) async throws -> [Lease]
    /// Releases those of `regions` that `holder` holds; returns them.
    func releaseLeases(regions: [String], holder: ProcessIdentity) async throws -> [Lease]
    /// Releases a region's lease whoever holds it, and writes an audit entry
    /// (also when there was none). Returns the lease it removed.
    func forceReleaseLease(region: String, by actor: String, reason: String) async throws -> Lease?
    /// Every lease, expired or not, by region.
    func leases() async throws -> [Lease]

    // MARK: Drift history

    /// Records a drift run's reports: opens, refreshes and clears findings.
    func recordDrift(run: RunID, reports: [HostDriftReport]) async throws -> DriftDelta
    /// Every finding episode (of `region` when given), oldest first.
    func driftHistory(region: String?) async throws -> [DriftFindingRecord]
    /// Episodes not cleared yet (of `region` when given).
    func openDriftFindings(region: String?) async throws -> [DriftFindingRecord]

    // MARK: Rollouts

    /// Records a new rollout with its first record, its first transition
    /// and an audit entry, in one transaction. Throws `rolloutInProgress`
    /// while the component has an unfinished rollout in the region.
    func startRollout(region: String, component: String, _ first: RolloutUpdate) async throws -> StoredRollout
    /// Writes a rollout's next record with its transition and an audit
    /// entry, in one transaction. Throws `rolloutFinished` for a terminal one.
    func recordRolloutTransition(_ id: RolloutID, _ next: RolloutUpdate) async throws -> StoredRollout
    func rollout(_ id: RolloutID) async throws -> StoredRollout?
    /// The newest rollout of each component of each region (of `region` when
    /// given), and every unfinished one, by region then component.
    func latestRollouts(region: String?) async throws -> [StoredRollout]
    /// A rollout's transitions in order.
    func rolloutTransitions(_ id: RolloutID) async throws -> [RolloutTransition]
    /// Queues an operator's command for `subject` (a region or `wave:<name>`) and audits it.
    func requestRolloutCommand(subject: String, command: String, actor: String) async throws -> RolloutCommandRecord
    /// Marks the pending commands of `subject` taken and returns them, oldest first.
    func takeRolloutCommands(subject: String) async throws -> [RolloutCommandRecord]

    // MARK: Status

    /// The newest successful apply that touched `region`.
    func lastSuccessfulApply(region: String) async throws -> RunRecord?
    /// One status per region in `regions`, in that order.
    func regionStatuses(_ regions: [String]) async throws -> [RegionStatus]

    // MARK: Copying a store

    /// Every record, read in one snapshot.
    func exportSnapshot() async throws -> StateSnapshot
    /// Writes every record of `snapshot` in one transaction, keeping ids,
    /// times and audit hashes. Throws `targetNotEmpty` when this store holds
    /// records, unless `replacing`, which removes them first.
    func importSnapshot(_ snapshot: StateSnapshot, replacing: Bool) async throws
}
