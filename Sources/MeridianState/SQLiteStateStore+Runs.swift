import Foundation
import GRDB
import MeridianBasics

// Runs, the step journal, applied manifests and region status.
extension SQLiteStateStore {
    var rows: SQLiteRows { SQLiteRows(path: path) }

    // MARK: Runs

    public func startRun(_ start: RunStart) async throws -> RunRecord {
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            try db.execute(
                sql: """
                    INSERT INTO runs (kind, owner_user, owner_host, owner_pid, fleet_commit, plan_hash, started_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [start.kind.rawValue, start.owner.user, start.owner.host, start.owner.pid,
                            start.fleetCommit, start.planHash, now.rawValue]
            )
            let id = db.lastInsertedRowID
            for region in start.regions {
                try db.execute(sql: "INSERT INTO run_regions (run_id, region) VALUES (?, ?)", arguments: [id, region])
            }
            return try Self.fetchRun(db, RunID(rawValue: id), rows: rows)
        }
    }

    public func finishRun(_ id: RunID, outcome: RunOutcome, exitCode: Int32, summary: String) async throws -> RunRecord {
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let run = try Self.fetchRun(db, id, rows: rows)
            try RunRules.checkRunning(run)
            try db.execute(
                sql: "UPDATE runs SET finished_at = ?, outcome = ?, exit_code = ?, summary = ? WHERE id = ?",
                arguments: [now.rawValue, outcome.rawValue, exitCode, summary, id.rawValue]
            )
            return try Self.fetchRun(db, id, rows: rows)
        }
    }

    public func recordPlan(_ id: RunID, planHash: String) async throws -> RunRecord {
        let rows = self.rows
        return try await write { db in
            try RunRules.checkRunning(try Self.fetchRun(db, id, rows: rows))
            try db.execute(sql: "UPDATE runs SET plan_hash = ? WHERE id = ?", arguments: [planHash, id.rawValue])
            return try Self.fetchRun(db, id, rows: rows)
        }
    }

    public func run(_ id: RunID) async throws -> RunRecord? {
        let rows = self.rows
        return try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(SQLiteRows.runColumns) FROM runs WHERE id = ?", arguments: [id.rawValue])
                .map(rows.run)
        }
    }

    public func recentRuns(limit: Int) async throws -> [RunRecord] {
        let rows = self.rows
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(SQLiteRows.runColumns) FROM runs ORDER BY id DESC LIMIT ?", arguments: [limit])
                .map(rows.run)
        }
    }

    public func unfinishedRuns() async throws -> [RunRecord] {
        let rows = self.rows
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(SQLiteRows.runColumns) FROM runs WHERE outcome IS NULL ORDER BY id")
                .map(rows.run)
        }
    }

    public func abandonedRuns() async throws -> [RunRecord] {
        let now = clock.now()
        let rows = self.rows
        let candidates = try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(SQLiteRows.runColumns),
                           EXISTS (SELECT 1 FROM leases WHERE leases.run_id = runs.id AND expires_at <= ?) AS lease_expired
                    FROM runs WHERE outcome IS NULL ORDER BY id
                    """,
                arguments: [now.rawValue]
            ).map { row in UnfinishedRunEvidence(run: try rows.run(row), leaseExpired: row["lease_expired"]) }
        }
        return RunRules.abandoned(candidates, thisHost: RunRules.thisHost)
    }

    public func markInterrupted(_ id: RunID, by actor: String, note: String) async throws -> RunRecord {
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let run = try Self.fetchRun(db, id, rows: rows)
            try RunRules.checkRunning(run)
            try db.execute(
                sql: "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?",
                arguments: [now.rawValue, RunOutcome.interrupted.rawValue, note, id.rawValue]
            )
            _ = try Self.appendAudit(db, RunRules.interruptedRecord(run, by: actor, note: note), at: now)
            return try Self.fetchRun(db, id, rows: rows)
        }
    }

    static func fetchRun(_ db: Database, _ id: RunID, rows: SQLiteRows) throws -> RunRecord {
        guard let row = try Row.fetchOne(db, sql: "SELECT \(SQLiteRows.runColumns) FROM runs WHERE id = ?", arguments: [id.rawValue]) else {
            throw StateStoreError.unknownRun(id)
        }
        return try rows.run(row)
    }

    // MARK: Journal

    public func beginStep(_ step: StepStart) async throws -> JournalEntryID {
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let run = try Self.fetchRun(db, step.run, rows: rows)
            try RunRules.checkRunning(run)
            try db.execute(
                sql: "INSERT INTO journal (run_id, region, host, step, detail, begun_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [step.run.rawValue, step.region, step.host, step.step, step.detail.text, now.rawValue]
            )
            return JournalEntryID(rawValue: db.lastInsertedRowID)
        }
    }

    public func finishStep(_ id: JournalEntryID, outcome: StepOutcome, detail: JSONDetail) async throws -> JournalEntry {
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let entry = try Self.fetchJournalEntry(db, id, rows: rows)
            guard !entry.isFinished else { throw StateStoreError.journalEntryAlreadyFinished(entry) }
            try db.execute(
                sql: "UPDATE journal SET finished_at = ?, outcome = ?, outcome_detail = ? WHERE id = ?",
                arguments: [now.rawValue, outcome.rawValue, detail.text, id.rawValue]
            )
            return try Self.fetchJournalEntry(db, id, rows: rows)
        }
    }

    public func journal(of run: RunID) async throws -> [JournalEntry] {
        let rows = self.rows
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM journal WHERE run_id = ? ORDER BY id", arguments: [run.rawValue])
                .map(rows.journalEntry)
        }
    }

    public func unfinishedSteps(of run: RunID?) async throws -> [JournalEntry] {
        let rows = self.rows
        return try await read { db in
            if let run {
                return try Row.fetchAll(db, sql: "SELECT * FROM journal WHERE outcome IS NULL AND run_id = ? ORDER BY id", arguments: [run.rawValue])
                    .map(rows.journalEntry)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM journal WHERE outcome IS NULL ORDER BY id").map(rows.journalEntry)
        }
    }

    static func fetchJournalEntry(_ db: Database, _ id: JournalEntryID, rows: SQLiteRows) throws -> JournalEntry {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM journal WHERE id = ?", arguments: [id.rawValue]) else {
            throw StateStoreError.unknownJournalEntry(id)
        }
        return try rows.journalEntry(row)
    }

    // MARK: Applied manifests

    public func recordManifest(run: RunID, region: String, host: String, manifest: Data) async throws -> AppliedManifest {
        let hash = SHA256.hex(manifest)
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            _ = try Self.fetchRun(db, run, rows: rows)
            try db.execute(
                sql: "INSERT INTO applied_manifests (run_id, region, host, manifest, sha256, applied_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [run.rawValue, region, host, manifest, hash, now.rawValue]
            )
            let id = db.lastInsertedRowID
            return AppliedManifest(id: id, run: run, region: region, host: host, manifest: manifest, sha256: hash, appliedAt: now)
        }
    }

    public func latestManifest(region: String, host: String) async throws -> AppliedManifest? {
        try await manifestHistory(region: region, host: host, limit: 1).first
    }

    public func latestManifests(region: String?) async throws -> [AppliedManifest] {
        let rows = self.rows
        return try await read { db in
            // The newest row per host is the one with the largest id.
            let sql = """
                SELECT * FROM applied_manifests
                WHERE id IN (SELECT max(id) FROM applied_manifests \(region == nil ? "" : "WHERE region = ?") GROUP BY region, host)
                ORDER BY region, host
                """
            let arguments: StatementArguments = region.map { [$0] } ?? []
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(rows.manifest)
        }
    }

    public func manifestHistory(region: String, host: String, limit: Int) async throws -> [AppliedManifest] {
        let rows = self.rows
        return try await read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT * FROM applied_manifests WHERE region = ? AND host = ? ORDER BY id DESC LIMIT ?",
                arguments: [region, host, limit]
            ).map(rows.manifest)
        }
    }

    // MARK: Status

    public func lastSuccessfulApply(region: String) async throws -> RunRecord? {
        let rows = self.rows
        return try await read { db in try Self.fetchLastSuccessfulApply(db, region: region, rows: rows) }
    }

    public func regionStatuses(_ regions: [String]) async throws -> [RegionStatus] {
        let rows = self.rows
        return try await read { db in
            try regions.map { region in
                let lease = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease)
                return RegionStatus(region: region, lastApply: try Self.fetchLastSuccessfulApply(db, region: region, rows: rows), lease: lease)
            }
        }
    }

    static func fetchLastSuccessfulApply(_ db: Database, region: String, rows: SQLiteRows) throws -> RunRecord? {
        let kinds = RunKind.allCases.filter(\.changesHosts).map { "'\($0.rawValue)'" }.joined(separator: ", ")
        return try Row.fetchOne(
            db,
            sql: """
                SELECT \(SQLiteRows.runColumns) FROM runs JOIN run_regions ON run_regions.run_id = runs.id
                WHERE run_regions.region = ? AND runs.outcome = 'succeeded' AND runs.kind IN (\(kinds))
                ORDER BY runs.finished_at DESC, runs.id DESC LIMIT 1
                """,
            arguments: [region]
        ).map(rows.run)
    }
}
