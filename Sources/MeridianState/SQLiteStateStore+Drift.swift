import Foundation
import GRDB

// Drift history: every drift run's checks and sightings, and finding episodes.
extension SQLiteStateStore {
    public func recordDrift(run: RunID, reports: [HostDriftReport]) async throws -> DriftDelta {
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let record = try Self.fetchRun(db, run, rows: rows)
            guard record.kind == .drift else { throw StateStoreError.notADriftRun(record) }

            var appeared: [Int64] = []
            var persisting: [Int64] = []
            var cleared: [Int64] = []
            for report in DriftRules.latestReports(reports) {
                let (examined, reason) = DriftRules.check(report.status)
                try db.execute(
                    sql: "INSERT OR REPLACE INTO drift_checks (run_id, region, host, examined, reason) VALUES (?, ?, ?, ?, ?)",
                    arguments: [run.rawValue, report.region, report.host, examined, reason]
                )
                let open = try Row.fetchAll(
                    db,
                    sql: "SELECT * FROM drift_findings WHERE region = ? AND host = ? AND cleared_at IS NULL ORDER BY id",
                    arguments: [report.region, report.host]
                ).map(rows.finding)
                for change in DriftRules.changes(for: report.status, open: open) {
                    switch change {
                    case .refresh(let id, let finding):
                        try db.execute(
                            sql: "UPDATE drift_findings SET detail = ?, last_seen_run = ?, last_seen_at = ? WHERE id = ?",
                            arguments: [finding.detail.text, run.rawValue, now.rawValue, id]
                        )
                        persisting.append(id)
                        try Self.recordSighting(db, run: run, finding: id, detail: finding.detail)
                    case .open(let finding):
                        try db.execute(
                            sql: """
                                INSERT INTO drift_findings (region, host, kind, subject, detail, first_seen_run, first_seen_at, last_seen_run, last_seen_at)
                                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                                """,
                            arguments: [report.region, report.host, finding.kind, finding.subject, finding.detail.text,
                                        run.rawValue, now.rawValue, run.rawValue, now.rawValue]
                        )
                        let id = db.lastInsertedRowID
                        appeared.append(id)
                        try Self.recordSighting(db, run: run, finding: id, detail: finding.detail)
                    case .clear(let id):
                        try db.execute(
                            sql: "UPDATE drift_findings SET cleared_run = ?, cleared_at = ? WHERE id = ?",
                            arguments: [run.rawValue, now.rawValue, id]
                        )
                        cleared.append(id)
                    }
                }
            }
            func fetch(_ ids: [Int64]) throws -> [DriftFindingRecord] {
                try ids.compactMap { id in
                    try Row.fetchOne(db, sql: "SELECT * FROM drift_findings WHERE id = ?", arguments: [id]).map(rows.finding)
                }
            }
            return DriftDelta(appeared: try fetch(appeared), persisting: try fetch(persisting), cleared: try fetch(cleared))
        }
    }

    static func recordSighting(_ db: Database, run: RunID, finding: Int64, detail: JSONDetail) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO drift_sightings (run_id, finding_id, detail) VALUES (?, ?, ?)",
            arguments: [run.rawValue, finding, detail.text]
        )
    }

    public func driftHistory(region: String?) async throws -> [DriftFindingRecord] {
        try await findings(region: region, openOnly: false)
    }

    public func openDriftFindings(region: String?) async throws -> [DriftFindingRecord] {
        try await findings(region: region, openOnly: true)
    }

    private func findings(region: String?, openOnly: Bool) async throws -> [DriftFindingRecord] {
        let rows = self.rows
        return try await read { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let region {
                conditions.append("region = ?")
                arguments += [region]
            }
            if openOnly { conditions.append("cleared_at IS NULL") }
            let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            return try Row.fetchAll(
                db,
                sql: "SELECT * FROM drift_findings \(whereClause) ORDER BY first_seen_at, id",
                arguments: arguments
            ).map(rows.finding)
        }
    }
}
