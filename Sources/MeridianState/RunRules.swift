import Foundation

/// An unfinished run with what the store knows about the leases it took.
public struct UnfinishedRunEvidence: Hashable, Sendable {
    public let run: RunRecord
    /// A lease attributed to the run has reached its expiry.
    public let leaseExpired: Bool
    /// A lease attributed to the run belongs to a database session that has ended.
    public let leaseHolderGone: Bool

    public init(run: RunRecord, leaseExpired: Bool, leaseHolderGone: Bool = false) {
        self.run = run
        self.leaseExpired = leaseExpired
        self.leaseHolderGone = leaseHolderGone
    }
}

/// The rules for runs every backend shares.
public enum RunRules {
    /// An unfinished run is abandoned when its owner is provably gone: its
    /// process is dead on this machine, a lease it took has expired, or the
    /// database session that held its lease has ended. A run from another
    /// machine with no such evidence cannot be judged and is kept.
    public static func abandoned(
        _ candidates: [UnfinishedRunEvidence], thisHost: String,
        processIsAlive: (Int32) -> Bool = RunRules.processIsAlive
    ) -> [RunRecord] {
        candidates.compactMap { evidence in
            let owner = evidence.run.owner
            let deadHere = owner.host == thisHost && !processIsAlive(owner.pid)
            return deadHere || evidence.leaseExpired || evidence.leaseHolderGone ? evidence.run : nil
        }
    }

    /// Whether a process with this pid exists on this machine. A recycled
    /// pid makes a dead run look alive; its expiring leases still give it away.
    public static func processIsAlive(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    /// The name of this machine, as run owners record it.
    public static var thisHost: String { ProcessIdentity.currentHostName() }

    /// The audit entry `markInterrupted` writes with the run's new outcome.
    public static func interruptedRecord(_ run: RunRecord, by actor: String, note: String) -> AuditRecord {
        let detail = JSONDetail([
            "run": String(run.id.rawValue), "kind": run.kind.rawValue, "owner": run.owner.description,
            "startedAt": run.startedAt.description, "note": note,
        ])
        return AuditRecord(actor: actor, action: .runInterrupted, subject: "run \(run.id.rawValue)", detail: detail)
    }

    /// Runs can only be finished once.
    public static func checkRunning(_ run: RunRecord) throws {
        guard run.isRunning else { throw StateStoreError.runAlreadyFinished(run) }
    }
}
