import Foundation

/// Everything the state store can refuse or fail at. Each description is a
/// sentence that names the database file (or the record) and the next step.
public enum StateStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The folder that should hold the database could not be created.
    case cannotCreateFolder(path: String, reason: String)
    /// The file exists but is not an SQLite database.
    case notADatabase(path: String)
    /// SQLite found the database damaged.
    case corrupt(path: String, message: String)
    /// The database was migrated by a newer meridian than this one.
    case newerSchema(path: String, unknownMigrations: [String])
    /// The file could not be opened (permissions, a missing folder, …).
    case cannotOpen(path: String, message: String)
    /// Another process kept the database locked past the busy timeout.
    case busy(path: String, waitedSeconds: Double)
    /// The database is read-only to this process.
    case readOnly(path: String)
    /// The disk is full.
    case diskFull(path: String)
    /// Any other SQLite failure.
    case database(path: String, message: String)
    /// Some of the requested regions are leased by someone else.
    case leaseHeld(LeaseConflict)
    /// A lease this process expected to hold is gone or belongs to someone else.
    case leaseLost(region: String, holder: ProcessIdentity, current: Lease?)
    case unknownRun(RunID)
    case runAlreadyFinished(RunRecord)
    case unknownJournalEntry(JournalEntryID)
    case journalEntryAlreadyFinished(JournalEntry)
    /// A drift report was recorded against a run that is not a drift run.
    case notADriftRun(RunRecord)
    /// A detail that is not valid JSON.
    case invalidDetail(text: String)
    /// A rollout of the component is unfinished in the region.
    case rolloutInProgress(StoredRollout)
    case unknownRollout(RolloutID)
    /// The rollout already ended; a new change needs a new rollout.
    case rolloutFinished(StoredRollout)
    /// A stored value this version cannot read (e.g. an unknown run kind).
    case unreadableValue(path: String, table: String, column: String, value: String)
    /// The database server could not be reached or refused the login (`location` has no password).
    case unreachable(location: String, reason: String)
    /// The connection to the database server broke while working; nothing after the last completed call was recorded.
    case connectionLost(location: String, reason: String)
    /// The server answers through a proxy that hands one client's statements to
    /// different sessions (transaction or statement pooling), so leases tied to a session would be unsafe.
    case sessionNotStable(location: String, detail: String)
    /// A copy was refused because the target store already holds records.
    case targetNotEmpty(location: String, counts: [String: Int64])

    public var description: String {
        switch self {
        case .cannotCreateFolder(let path, let reason):
            return "cannot create the folder for the state database \(path): \(reason). Create it by hand or pass another location with --state."
        case .notADatabase(let path):
            return "\(path) is not an SQLite database. If it is not meridian's state, pass the right file with --state; "
                + "if it is a damaged state file, move it aside (meridian starts a fresh state, losing its history)."
        case .corrupt(let path, let message):
            return "the state database \(path) is damaged (SQLite: \(message)). Restore it from a backup, "
                + "or move it aside to start a fresh state (its history is lost)."
        case .newerSchema(let path, let unknown):
            return "the state database \(path) was written by a newer meridian (schema migrations "
                + "\(unknown.joined(separator: ", ")) are unknown to this version). Upgrade meridian to use it."
        case .cannotOpen(let path, let message):
            return "cannot open the state database \(path) (SQLite: \(message)). Check that the folder exists and is writable, or pass another file with --state."
        case .busy(let path, let waited):
            return "the state database \(path) stayed locked by another meridian process for \(Int(waited)) s. "
                + "Retry when that process has finished."
        case .readOnly(let path):
            return "the state database \(path) is read-only to this user. Give it (and its folder, for the -wal and -shm files) write permission, or pass another file with --state."
        case .diskFull(let path):
            return "the disk holding the state database \(path) is full. Free space and run again."
        case .database(let path, let message):
            return "the state database \(path) failed: \(message)."
        case .leaseHeld(let conflict):
            return conflict.description
        case .leaseLost(let region, let holder, let current):
            let now = current.map { "now \($0)" } ?? "nobody holds it now"
            return "\(holder) no longer holds the lease on region \(region) (\(now)); stop changing that region and run again."
        case .unknownRun(let id):
            return "\(id) is not in the state database; check the run id (meridian status lists recent runs)."
        case .runAlreadyFinished(let run):
            return "\(run.id) already finished (\(run.outcome?.rawValue ?? "?")); a run is finished once."
        case .unknownJournalEntry(let id):
            return "\(id) is not in the state database."
        case .journalEntryAlreadyFinished(let entry):
            return "\(entry.id) (\(entry.step) on \(entry.region)/\(entry.host)) already finished; a step is finished once."
        case .notADriftRun(let run):
            return "drift findings can only be recorded for a drift run, but \(run.id) is a \(run.kind.rawValue) run."
        case .rolloutInProgress(let rollout):
            return "\(rollout.component) in region \(rollout.region) has an unfinished \(rollout.id) (phase \(rollout.phase)); finish it with `meridian rollout resume \(rollout.region)` or `meridian rollout abort \(rollout.region)` first."
        case .unknownRollout(let id):
            return "\(id) is not in the state database; `meridian rollout status` lists the rollouts."
        case .rolloutFinished(let rollout):
            return "\(rollout.id) of \(rollout.component) in region \(rollout.region) already ended (\(rollout.phase)); it is not changed again."
        case .invalidDetail(let text):
            return "the detail \(text.prefix(80).debugDescription) is not valid JSON."
        case .unreadableValue(let path, let table, let column, let value):
            return "the state database \(path) holds \(value.debugDescription) in \(table).\(column), which this meridian does not know; upgrade meridian."
        case .unreachable(let location, let reason):
            return "cannot reach the state database \(location): \(reason). Check that the server runs and accepts this user "
                + "(the password comes from the fleet's state.password secret, $PGPASSWORD or ~/.pgpass), or pass another store with --state."
        case .connectionLost(let location, let reason):
            return "lost the connection to the state database \(location): \(reason). What was recorded before stays; "
                + "run the command again once the database is back (an apply re-observes the hosts and converges)."
        case .sessionNotStable(let location, let detail):
            return "the state database \(location) does not keep one session per connection (\(detail)): a transaction- or statement-pooling proxy "
                + "such as PgBouncer in transaction mode sits in front of it, and meridian's leases, which live in a session, would be unsafe. "
                + "Connect meridian to PostgreSQL directly, or through a pool in session mode."
        case .targetNotEmpty(let location, let counts):
            let list = counts.sorted { $0.key < $1.key }.filter { $0.value > 0 }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            return "the state database \(location) already holds records (\(list)); copy into an empty database, or pass --force to replace them."
        }
    }
}
