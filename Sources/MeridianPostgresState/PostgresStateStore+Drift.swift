import Foundation
import MeridianState
import PostgresNIO

// Drift history: every drift run's checks and sightings, and finding episodes.
extension PostgresStateStore {
    public func recordDrift(run: RunID, reports: [HostDriftReport]) async throws -> DriftDelta {
        try await write { c in
            let now = try await self.now(c)
            let record = try await self.fetchRun(c, run)
            guard record.kind == .drift else { throw StateStoreError.notADriftRun(record) }
            // Concurrent drift runs take turns, so two never open the same episode.
            try await self.lock(c, PostgresSchema.driftLock)
            var appeared: [Int64] = []
            var persisting: [Int64] = []
            var cleared: [Int64] = []
            for report in DriftRules.latestReports(reports) {
                let (examined, reason) = DriftRules.check(report.status)
                try await c.execute(
                    """
                    INSERT INTO drift_checks (run_id, region, host, examined, reason) VALUES (\(run.rawValue), \(report.region), \(report.host), \(examined), \(reason))
                    ON CONFLICT (run_id, region, host) DO UPDATE SET examined = excluded.examined, reason = excluded.reason
                    """)
                let open = try await c.records(
                    "SELECT * FROM drift_findings WHERE region = \(report.region) AND host = \(report.host) AND cleared_at IS NULL ORDER BY id",
                    location: self.location).map { try $0.finding() }
                for change in DriftRules.changes(for: report.status, open: open) {
                    switch change {
                    case .refresh(let id, let finding):
                        try await c.execute("UPDATE drift_findings SET detail = \(finding.detail.text), last_seen_run = \(run.rawValue), last_seen_at = \(now.rawValue) WHERE id = \(id)")
                        persisting.append(id)
                        try await self.recordSighting(c, run: run, finding: id, detail: finding.detail)
                    case .open(let finding):
                        let row = try await c.record(
                            """
                            INSERT INTO drift_findings (region, host, kind, subject, detail, first_seen_run, first_seen_at, last_seen_run, last_seen_at)
                            VALUES (\(report.region), \(report.host), \(finding.kind), \(finding.subject), \(finding.detail.text),
                                    \(run.rawValue), \(now.rawValue), \(run.rawValue), \(now.rawValue)) RETURNING id
                            """, location: self.location)
                        let id = try row?.int("id") ?? 0
                        appeared.append(id)
                        try await self.recordSighting(c, run: run, finding: id, detail: finding.detail)
                    case .clear(let id):
                        try await c.execute("UPDATE drift_findings SET cleared_run = \(run.rawValue), cleared_at = \(now.rawValue) WHERE id = \(id)")
                        cleared.append(id)
                    }
                }
            }
            func fetch(_ ids: [Int64]) async throws -> [DriftFindingRecord] {
                guard !ids.isEmpty else { return [] }
                let rows = try await c.records("SELECT * FROM drift_findings WHERE id = ANY(\(ids))", location: self.location).map { try $0.finding() }
                let byID = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                return ids.compactMap { byID[$0] }
            }
            return DriftDelta(appeared: try await fetch(appeared), persisting: try await fetch(persisting), cleared: try await fetch(cleared))
        }
    }

    func recordSighting(_ c: PostgresConnection, run: RunID, finding: Int64, detail: JSONDetail) async throws {
        try await c.execute(
            """
            INSERT INTO drift_sightings (run_id, finding_id, detail) VALUES (\(run.rawValue), \(finding), \(detail.text))
            ON CONFLICT (run_id, finding_id) DO UPDATE SET detail = excluded.detail
            """)
    }

    public func driftHistory(region: String?) async throws -> [DriftFindingRecord] {
        try await findings(region: region, openOnly: false)
    }

    public func openDriftFindings(region: String?) async throws -> [DriftFindingRecord] {
        try await findings(region: region, openOnly: true)
    }

    private func findings(region: String?, openOnly: Bool) async throws -> [DriftFindingRecord] {
        try await read { c in
            let open = openOnly ? "cleared_at IS NULL" : "TRUE"
            if let region {
                return try await c.records("SELECT * FROM drift_findings WHERE region = \(region) AND \(unescaped: open) ORDER BY first_seen_at, id", location: self.location).map { try $0.finding() }
            }
            return try await c.records("SELECT * FROM drift_findings WHERE \(unescaped: open) ORDER BY first_seen_at, id", location: self.location).map { try $0.finding() }
        }
    }
}
