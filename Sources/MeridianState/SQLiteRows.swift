import Foundation
import GRDB

/// Turns rows of the v1 schema into the store's values; a value this
/// version does not know becomes `unreadableValue`, never a crash.
struct SQLiteRows {
    let path: String

    func time(_ row: Row, _ column: String) -> StateTime {
        StateTime(rawValue: row[column])
    }

    func optionalTime(_ row: Row, _ column: String) -> StateTime? {
        (row[column] as Int64?).map(StateTime.init(rawValue:))
    }

    func detail(_ row: Row, _ column: String) -> JSONDetail {
        // The store only writes validated JSON; reading does not re-check it.
        JSONDetail(unchecked: row[column])
    }

    func optionalDetail(_ row: Row, _ column: String) -> JSONDetail? {
        (row[column] as String?).map(JSONDetail.init(unchecked:))
    }

    func known<Value: RawRepresentable>(_ type: Value.Type, _ row: Row, table: String, column: String) throws -> Value
    where Value.RawValue == String {
        let text: String = row[column]
        guard let value = Value(rawValue: text) else {
            throw StateStoreError.unreadableValue(path: path, table: table, column: column, value: text)
        }
        return value
    }

    func optionalKnown<Value: RawRepresentable>(_ type: Value.Type, _ row: Row, table: String, column: String) throws -> Value?
    where Value.RawValue == String {
        guard row[column] as String? != nil else { return nil }
        return try known(type, row, table: table, column: column)
    }

    /// Selects a run with its regions as a JSON array in column `regions`.
    static let runColumns = """
        runs.*, (SELECT json_group_array(region) FROM run_regions WHERE run_id = runs.id) AS regions
        """

    func run(_ row: Row) throws -> RunRecord {
        let regionsJSON: String = row["regions"] ?? "[]"
        let regions = (try? JSONDecoder().decode([String].self, from: Data(regionsJSON.utf8))) ?? []
        return RunRecord(
            id: RunID(rawValue: row["id"]),
            kind: try known(RunKind.self, row, table: "runs", column: "kind"),
            owner: ProcessIdentity(user: row["owner_user"], host: row["owner_host"], pid: row["owner_pid"]),
            fleetCommit: row["fleet_commit"],
            planHash: row["plan_hash"],
            regions: regions.sorted(),
            startedAt: time(row, "started_at"),
            finishedAt: optionalTime(row, "finished_at"),
            outcome: try optionalKnown(RunOutcome.self, row, table: "runs", column: "outcome"),
            exitCode: row["exit_code"],
            summary: row["summary"]
        )
    }

    func journalEntry(_ row: Row) throws -> JournalEntry {
        JournalEntry(
            id: JournalEntryID(rawValue: row["id"]),
            run: RunID(rawValue: row["run_id"]),
            region: row["region"],
            host: row["host"],
            step: row["step"],
            detail: detail(row, "detail"),
            begunAt: time(row, "begun_at"),
            finishedAt: optionalTime(row, "finished_at"),
            outcome: try optionalKnown(StepOutcome.self, row, table: "journal", column: "outcome"),
            outcomeDetail: optionalDetail(row, "outcome_detail")
        )
    }

    func manifest(_ row: Row) -> AppliedManifest {
        AppliedManifest(
            id: row["id"],
            run: RunID(rawValue: row["run_id"]),
            region: row["region"],
            host: row["host"],
            manifest: row["manifest"],
            sha256: row["sha256"],
            appliedAt: time(row, "applied_at")
        )
    }

    func auditEntry(_ row: Row) -> AuditEntry {
        AuditEntry(
            seq: row["seq"],
            time: time(row, "time"),
            actor: row["actor"],
            action: AuditAction(rawValue: row["action"]),
            subject: row["subject"],
            detail: detail(row, "detail"),
            prevHash: row["prev_hash"],
            hash: row["hash"]
        )
    }

    func lease(_ row: Row) -> Lease {
        Lease(
            region: row["region"],
            holder: ProcessIdentity(user: row["holder_user"], host: row["holder_host"], pid: row["holder_pid"]),
            run: (row["run_id"] as Int64?).map(RunID.init(rawValue:)),
            acquiredAt: time(row, "acquired_at"),
            renewedAt: time(row, "renewed_at"),
            expiresAt: time(row, "expires_at")
        )
    }

    func finding(_ row: Row) -> DriftFindingRecord {
        DriftFindingRecord(
            id: row["id"],
            region: row["region"],
            host: row["host"],
            kind: row["kind"],
            subject: row["subject"],
            detail: detail(row, "detail"),
            firstSeenAt: time(row, "first_seen_at"),
            firstSeenRun: RunID(rawValue: row["first_seen_run"]),
            lastSeenAt: time(row, "last_seen_at"),
            lastSeenRun: RunID(rawValue: row["last_seen_run"]),
            clearedAt: optionalTime(row, "cleared_at"),
            clearedRun: (row["cleared_run"] as Int64?).map(RunID.init(rawValue:))
        )
    }
}
