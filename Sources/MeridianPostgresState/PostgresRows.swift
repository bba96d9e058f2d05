import Foundation
import MeridianState
import PostgresNIO

/// One fetched row, read by column name into the store's values; a value
/// this version does not know becomes `unreadableValue`, never a crash.
struct PostgresRecord: Sendable {
    let row: PostgresRandomAccessRow
    let location: String

    func int(_ column: String) throws -> Int64 { try row[column].decode(Int64.self) }
    func optionalInt(_ column: String) throws -> Int64? { try row[column].decode(Int64?.self) }
    func text(_ column: String) throws -> String { try row[column].decode(String.self) }
    func optionalText(_ column: String) throws -> String? { try row[column].decode(String?.self) }
    func bool(_ column: String) throws -> Bool { try row[column].decode(Bool.self) }
    func time(_ column: String) throws -> StateTime { StateTime(rawValue: try int(column)) }
    func optionalTime(_ column: String) throws -> StateTime? { try optionalInt(column).map(StateTime.init(rawValue:)) }
    func pid(_ column: String) throws -> Int32 { Int32(truncatingIfNeeded: try int(column)) }
    // The store only writes validated JSON; reading trusts it, as SQLite's does.
    func detail(_ column: String) throws -> JSONDetail { JSONDetail.stored(try text(column)) }
    func optionalDetail(_ column: String) throws -> JSONDetail? { try optionalText(column).map(JSONDetail.stored) }

    func known<Value: RawRepresentable>(_ type: Value.Type, _ column: String, table: String) throws -> Value where Value.RawValue == String {
        let value = try text(column)
        guard let known = Value(rawValue: value) else {
            throw StateStoreError.unreadableValue(path: location, table: table, column: column, value: value)
        }
        return known
    }

    func optionalKnown<Value: RawRepresentable>(_ type: Value.Type, _ column: String, table: String) throws -> Value? where Value.RawValue == String {
        guard try optionalText(column) != nil else { return nil }
        return try known(type, column, table: table)
    }

    /// Selects a run with its sorted regions as an array in column `regions`.
    static let runColumns = "runs.*, ARRAY(SELECT region FROM run_regions WHERE run_id = runs.id ORDER BY region) AS regions"

    func run() throws -> RunRecord {
        RunRecord(
            id: RunID(rawValue: try int("id")),
            kind: try known(RunKind.self, "kind", table: "runs"),
            owner: ProcessIdentity(user: try text("owner_user"), host: try text("owner_host"), pid: try pid("owner_pid")),
            fleetCommit: try optionalText("fleet_commit"),
            planHash: try optionalText("plan_hash"),
            regions: try row["regions"].decode([String].self),
            startedAt: try time("started_at"),
            finishedAt: try optionalTime("finished_at"),
            outcome: try optionalKnown(RunOutcome.self, "outcome", table: "runs"),
            exitCode: try optionalInt("exit_code").map { Int32(truncatingIfNeeded: $0) },
            summary: try optionalText("summary")
        )
    }

    func journalEntry() throws -> JournalEntry {
        JournalEntry(
            id: JournalEntryID(rawValue: try int("id")),
            run: RunID(rawValue: try int("run_id")),
            region: try text("region"),
            host: try text("host"),
            step: try text("step"),
            detail: try detail("detail"),
            begunAt: try time("begun_at"),
            finishedAt: try optionalTime("finished_at"),
            outcome: try optionalKnown(StepOutcome.self, "outcome", table: "journal"),
            outcomeDetail: try optionalDetail("outcome_detail")
        )
    }

    func manifest() throws -> AppliedManifest {
        AppliedManifest(
            id: try int("id"),
            run: RunID(rawValue: try int("run_id")),
            region: try text("region"),
            host: try text("host"),
            manifest: try row["manifest"].decode(Data.self),
            sha256: try text("sha256"),
            appliedAt: try time("applied_at")
        )
    }

    func auditEntry() throws -> AuditEntry {
        AuditEntry(
            seq: try int("seq"),
            time: try time("time"),
            actor: try text("actor"),
            action: AuditAction(rawValue: try text("action")),
            subject: try text("subject"),
            // Kept exactly as stored: an edited detail must fail its hash, not its parsing.
            detail: JSONDetail.stored(try text("detail")),
            prevHash: try text("prev_hash"),
            hash: try text("hash")
        )
    }

    func lease() throws -> Lease {
        Lease(
            region: try text("region"),
            holder: ProcessIdentity(user: try text("holder_user"), host: try text("holder_host"), pid: try pid("holder_pid")),
            run: try optionalInt("run_id").map(RunID.init(rawValue:)),
            acquiredAt: try time("acquired_at"),
            renewedAt: try time("renewed_at"),
            expiresAt: try time("expires_at")
        )
    }

    func rollout() throws -> StoredRollout {
        StoredRollout(
            id: RolloutID(rawValue: try int("id")),
            run: try optionalInt("run_id").map(RunID.init(rawValue:)),
            region: try text("region"),
            component: try text("component"),
            phase: try text("phase"),
            terminal: try bool("terminal"),
            record: try row["record"].decode(Data.self),
            startedAt: try time("started_at"),
            updatedAt: try time("updated_at")
        )
    }

    func rolloutTransition() throws -> RolloutTransition {
        RolloutTransition(
            rollout: RolloutID(rawValue: try int("rollout_id")),
            seq: Int(try int("seq")),
            run: try optionalInt("run_id").map(RunID.init(rawValue:)),
            fromPhase: try optionalText("from_phase"),
            toPhase: try text("to_phase"),
            effect: try text("effect"),
            detail: try detail("detail"),
            at: try time("at")
        )
    }

    func rolloutCommand() throws -> RolloutCommandRecord {
        RolloutCommandRecord(
            id: try int("id"),
            subject: try text("subject"),
            command: try text("command"),
            actor: try text("actor"),
            requestedAt: try time("requested_at"),
            takenAt: try optionalTime("taken_at")
        )
    }

    func finding() throws -> DriftFindingRecord {
        DriftFindingRecord(
            id: try int("id"),
            region: try text("region"),
            host: try text("host"),
            kind: try text("kind"),
            subject: try text("subject"),
            detail: try detail("detail"),
            firstSeenAt: try time("first_seen_at"),
            firstSeenRun: RunID(rawValue: try int("first_seen_run")),
            lastSeenAt: try time("last_seen_at"),
            lastSeenRun: RunID(rawValue: try int("last_seen_run")),
            clearedAt: try optionalTime("cleared_at"),
            clearedRun: try optionalInt("cleared_run").map(RunID.init(rawValue:))
        )
    }
}

extension PostgresConnection {
    /// Runs `query` and reads every row.
    func records(_ query: PostgresQuery, location: String) async throws -> [PostgresRecord] {
        var records: [PostgresRecord] = []
        for try await row in try await self.query(query, logger: PostgresSessions.logger) {
            records.append(PostgresRecord(row: row.makeRandomAccess(), location: location))
        }
        return records
    }

    func record(_ query: PostgresQuery, location: String) async throws -> PostgresRecord? {
        try await records(query, location: location).first
    }

    func execute(_ query: PostgresQuery) async throws {
        try await self.query(query, logger: PostgresSessions.logger)
    }
}
