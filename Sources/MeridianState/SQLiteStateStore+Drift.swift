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

            // One report per host: a host reported twice keeps its last report.
            var byHost: [String: HostDriftReport] = [:]
            var order: [String] = []
            for report in reports {
                let key = "\(report.region)\u{0}\(report.host)"
                if byHost[key] == nil { order.append(key) }
                byHost[key] = report
            }

            var appeared: [Int64] = []
            var persisting: [Int64] = []
            var cleared: [Int64] = []
            for key in order {
                guard let report = byHost[key] else { continue }
                switch report.status {
                case .unreachable(let reason):
                    // Nothing was seen, so nothing is cleared.
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO drift_checks (run_id, region, host, examined, reason) VALUES (?, ?, ?, 0, ?)",
                        arguments: [run.rawValue, report.region, report.host, reason]
                    )
                case .examined(let findings):
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO drift_checks (run_id, region, host, examined, reason) VALUES (?, ?, ?, 1, NULL)",
                        arguments: [run.rawValue, report.region, report.host]
                    )
                    var seen: Set<Int64> = []
                    var latest: [String: DriftObservation] = [:]
                    var observationOrder: [String] = []
                    for finding in findings {
                        let key = "\(finding.kind)\u{0}\(finding.subject)"
                        if latest[key] == nil { observationOrder.append(key) }
                        latest[key] = finding
                    }
                    for key in observationOrder {
                        guard let finding = latest[key] else { continue }
                        let open = try Int64.fetchOne(
                            db,
                            sql: "SELECT id FROM drift_findings WHERE region = ? AND host = ? AND kind = ? AND subject = ? AND cleared_at IS NULL",
                            arguments: [report.region, report.host, finding.kind, finding.subject]
                        )
                        let id: Int64
                        if let open {
                            try db.execute(
                                sql: "UPDATE drift_findings SET detail = ?, last_seen_run = ?, last_seen_at = ? WHERE id = ?",
                                arguments: [finding.detail.text, run.rawValue, now.rawValue, open]
                            )
                            id = open
                            persisting.append(id)
                        } else {
                            try db.execute(
                                sql: """
                                    INSERT INTO drift_findings (region, host, kind, subject, detail, first_seen_run, first_seen_at, last_seen_run, last_seen_at)
                                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                                    """,
                                arguments: [report.region, report.host, finding.kind, finding.subject, finding.detail.text,
                                            run.rawValue, now.rawValue, run.rawValue, now.rawValue]
                            )
                            id = db.lastInsertedRowID
                            appeared.append(id)
                        }
                        seen.insert(id)
                        try db.execute(
                            sql: "INSERT OR REPLACE INTO drift_sightings (run_id, finding_id, detail) VALUES (?, ?, ?)",
                            arguments: [run.rawValue, id, finding.detail.text]
                        )
                    }
                    let stillOpen = try Int64.fetchAll(
                        db,
                        sql: "SELECT id FROM drift_findings WHERE region = ? AND host = ? AND cleared_at IS NULL ORDER BY id",
                        arguments: [report.region, report.host]
                    )
                    for id in stillOpen where !seen.contains(id) {
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
