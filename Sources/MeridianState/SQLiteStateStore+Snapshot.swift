import Foundation
import GRDB

// Copying every record out of and into one file, for `meridian state migrate`.
extension SQLiteStateStore {
    public func exportSnapshot() async throws -> StateSnapshot {
        let rows = self.rows
        return try await read { db in
            StateSnapshot(
                runs: try Row.fetchAll(db, sql: "SELECT \(SQLiteRows.runColumns) FROM runs ORDER BY id").map(rows.run),
                journal: try Row.fetchAll(db, sql: "SELECT * FROM journal ORDER BY id").map(rows.journalEntry),
                manifests: try Row.fetchAll(db, sql: "SELECT * FROM applied_manifests ORDER BY id").map(rows.manifest),
                audit: try Row.fetchAll(db, sql: "SELECT * FROM audit_log ORDER BY seq").map(rows.auditEntry),
                auditHead: try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_head WHERE id = 1").map { AuditHead(seq: $0["seq"], hash: $0["hash"]) },
                leases: try Row.fetchAll(db, sql: "SELECT * FROM leases ORDER BY region").map(rows.lease),
                driftChecks: try Row.fetchAll(db, sql: "SELECT * FROM drift_checks ORDER BY run_id, region, host").map { row in
                    DriftCheck(run: RunID(rawValue: row["run_id"]), region: row["region"], host: row["host"], examined: row["examined"], reason: row["reason"])
                },
                findings: try Row.fetchAll(db, sql: "SELECT * FROM drift_findings ORDER BY id").map(rows.finding),
                sightings: try Row.fetchAll(db, sql: "SELECT * FROM drift_sightings ORDER BY run_id, finding_id").map { row in
                    DriftSighting(run: RunID(rawValue: row["run_id"]), finding: row["finding_id"], detail: rows.detail(row, "detail"))
                },
                fileHashKey: try Data.fetchOne(db, sql: "SELECT key FROM file_hash_key WHERE id = 1"),
                rollouts: try Row.fetchAll(db, sql: "SELECT * FROM rollouts ORDER BY id").map(Self.rollout),
                rolloutTransitions: try Row.fetchAll(db, sql: "SELECT * FROM rollout_transitions ORDER BY rollout_id, seq").map(Self.transition),
                rolloutCommands: try Row.fetchAll(db, sql: "SELECT * FROM rollout_commands ORDER BY id").map(Self.command)
            )
        }
    }

    public func importSnapshot(_ snapshot: StateSnapshot, replacing: Bool) async throws {
        let path = self.path
        try await write { db in
            var counts: [String: Int64] = [:]
            for table in StateSnapshot.tables {
                counts[table] = try Int64.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? 0
            }
            if counts.values.contains(where: { $0 > 0 }) {
                guard replacing else { throw StateStoreError.targetNotEmpty(location: path, counts: counts) }
                try db.execute(sql: "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete")
                for table in ["rollout_commands", "rollout_transitions", "rollouts", "file_hash_key", "drift_sightings", "drift_findings", "drift_checks", "leases", "audit_head", "audit_log", "applied_manifests", "journal", "run_regions", "runs"] {
                    try db.execute(sql: "DELETE FROM \(table)")
                }
                try db.execute(sql: SQLiteSchema.auditTriggers)
            }
            for run in snapshot.runs {
                try db.execute(
                    sql: """
                        INSERT INTO runs (id, kind, owner_user, owner_host, owner_pid, fleet_commit, plan_hash, started_at, finished_at, outcome, exit_code, summary)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [run.id.rawValue, run.kind.rawValue, run.owner.user, run.owner.host, run.owner.pid, run.fleetCommit, run.planHash,
                                run.startedAt.rawValue, run.finishedAt?.rawValue, run.outcome?.rawValue, run.exitCode, run.summary]
                )
                for region in run.regions {
                    try db.execute(sql: "INSERT INTO run_regions (run_id, region) VALUES (?, ?)", arguments: [run.id.rawValue, region])
                }
            }
            for entry in snapshot.journal {
                try db.execute(
                    sql: "INSERT INTO journal (id, run_id, region, host, step, detail, begun_at, finished_at, outcome, outcome_detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    arguments: [entry.id.rawValue, entry.run.rawValue, entry.region, entry.host, entry.step, entry.detail.text, entry.begunAt.rawValue,
                                entry.finishedAt?.rawValue, entry.outcome?.rawValue, entry.outcomeDetail?.text]
                )
            }
            for manifest in snapshot.manifests {
                try db.execute(
                    sql: "INSERT INTO applied_manifests (id, run_id, region, host, manifest, sha256, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    arguments: [manifest.id, manifest.run.rawValue, manifest.region, manifest.host, manifest.manifest, manifest.sha256, manifest.appliedAt.rawValue]
                )
            }
            for entry in snapshot.audit {
                try db.execute(
                    sql: "INSERT INTO audit_log (seq, time, actor, action, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    arguments: [entry.seq, entry.time.rawValue, entry.actor, entry.action.rawValue, entry.subject, entry.detail.text, entry.prevHash, entry.hash]
                )
            }
            if let head = snapshot.auditHead {
                try db.execute(sql: "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", arguments: [head.seq, head.hash])
            }
            for lease in snapshot.leases { try Self.storeLease(db, lease) }
            for check in snapshot.driftChecks {
                try db.execute(
                    sql: "INSERT INTO drift_checks (run_id, region, host, examined, reason) VALUES (?, ?, ?, ?, ?)",
                    arguments: [check.run.rawValue, check.region, check.host, check.examined, check.reason]
                )
            }
            for finding in snapshot.findings {
                try db.execute(
                    sql: """
                        INSERT INTO drift_findings (id, region, host, kind, subject, detail, first_seen_run, first_seen_at, last_seen_run, last_seen_at, cleared_run, cleared_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [finding.id, finding.region, finding.host, finding.kind, finding.subject, finding.detail.text,
                                finding.firstSeenRun.rawValue, finding.firstSeenAt.rawValue, finding.lastSeenRun.rawValue, finding.lastSeenAt.rawValue,
                                finding.clearedRun?.rawValue, finding.clearedAt?.rawValue]
                )
            }
            if let key = snapshot.fileHashKey {
                try db.execute(sql: "INSERT INTO file_hash_key (id, key, created_at) VALUES (1, ?, ?)", arguments: [key, Int64(Date().timeIntervalSince1970 * 1000)])
            }
            for sighting in snapshot.sightings {
                try db.execute(
                    sql: "INSERT INTO drift_sightings (run_id, finding_id, detail) VALUES (?, ?, ?)",
                    arguments: [sighting.run.rawValue, sighting.finding, sighting.detail.text]
                )
            }
            for rollout in snapshot.rollouts {
                try db.execute(
                    sql: "INSERT INTO rollouts (id, run_id, region, component, phase, terminal, record, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    arguments: [rollout.id.rawValue, rollout.run?.rawValue, rollout.region, rollout.component, rollout.phase, rollout.terminal,
                                rollout.record, rollout.startedAt.rawValue, rollout.updatedAt.rawValue]
                )
            }
            for t in snapshot.rolloutTransitions {
                try db.execute(
                    sql: "INSERT INTO rollout_transitions (rollout_id, seq, run_id, from_phase, to_phase, effect, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    arguments: [t.rollout.rawValue, t.seq, t.run?.rawValue, t.fromPhase, t.toPhase, t.effect, t.detail.text, t.at.rawValue]
                )
            }
            for command in snapshot.rolloutCommands {
                try db.execute(
                    sql: "INSERT INTO rollout_commands (id, subject, command, actor, requested_at, taken_at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [command.id, command.subject, command.command, command.actor, command.requestedAt.rawValue, command.takenAt?.rawValue]
                )
            }
        }
    }
}
