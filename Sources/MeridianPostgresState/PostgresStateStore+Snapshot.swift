import Foundation
import MeridianState
import PostgresNIO

// Copying every record out of and into the database, for `meridian state migrate`.
extension PostgresStateStore {
    public func exportSnapshot() async throws -> StateSnapshot {
        try await sessions.withConnection { c in
            try await c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let location = self.location
                let snapshot = StateSnapshot(
                    runs: try await c.records("SELECT \(unescaped: PostgresRecord.runColumns) FROM runs ORDER BY id", location: location).map { try $0.run() },
                    journal: try await c.records("SELECT * FROM journal ORDER BY id", location: location).map { try $0.journalEntry() },
                    manifests: try await c.records("SELECT * FROM applied_manifests ORDER BY id", location: location).map { try $0.manifest() },
                    audit: try await c.records("SELECT * FROM audit_log ORDER BY seq", location: location).map { try $0.auditEntry() },
                    auditHead: try await self.fetchHead(c),
                    leases: try await c.records("SELECT * FROM leases ORDER BY region", location: location).map { try $0.lease() },
                    driftChecks: try await c.records("SELECT * FROM drift_checks ORDER BY run_id, region, host", location: location).map {
                        DriftCheck(run: RunID(rawValue: try $0.int("run_id")), region: try $0.text("region"), host: try $0.text("host"),
                                   examined: try $0.bool("examined"), reason: try $0.optionalText("reason"))
                    },
                    findings: try await c.records("SELECT * FROM drift_findings ORDER BY id", location: location).map { try $0.finding() },
                    sightings: try await c.records("SELECT * FROM drift_sightings ORDER BY run_id, finding_id", location: location).map {
                        DriftSighting(run: RunID(rawValue: try $0.int("run_id")), finding: try $0.int("finding_id"), detail: try $0.detail("detail"))
                    },
                    fileHashKey: try await c.record("SELECT key FROM file_hash_key WHERE id = 1", location: location).map { try $0.row["key"].decode(Data.self) },
                    rollouts: try await c.records("SELECT * FROM rollouts ORDER BY id", location: location).map { try $0.rollout() },
                    rolloutTransitions: try await c.records("SELECT * FROM rollout_transitions ORDER BY rollout_id, seq", location: location).map { try $0.rolloutTransition() },
                    rolloutCommands: try await c.records("SELECT * FROM rollout_commands ORDER BY id", location: location).map { try $0.rolloutCommand() }
                )
                try await c.execute("COMMIT")
                return snapshot
            } catch {
                if !c.isClosed { _ = try? await c.execute("ROLLBACK") }
                throw error
            }
        }
    }

    public func importSnapshot(_ snapshot: StateSnapshot, replacing: Bool) async throws {
        try await write { c in
            // Nobody leases, changes rollouts, appends or records drift while
            // the copy goes in (the locks in the order every other write takes them).
            for lock in [PostgresSchema.leaseLock, PostgresSchema.rolloutLock, PostgresSchema.auditLock, PostgresSchema.driftLock] { try await self.lock(c, lock) }
            var counts: [String: Int64] = [:]
            for table in StateSnapshot.tables {
                counts[table] = try await c.record("SELECT count(*)::int8 AS n FROM \(unescaped: table)", location: self.location)?.int("n") ?? 0
            }
            if counts.values.contains(where: { $0 > 0 }) {
                guard replacing else { throw StateStoreError.targetNotEmpty(location: self.location, counts: counts) }
                try await c.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
                try await c.execute("TRUNCATE rollout_commands, rollout_transitions, rollouts, file_hash_key, drift_sightings, drift_findings, drift_checks, leases, audit_head, audit_log, applied_manifests, journal, run_regions, runs")
                try await c.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
            }
            for run in snapshot.runs {
                try await c.execute(
                    """
                    INSERT INTO runs (id, kind, owner_user, owner_host, owner_pid, fleet_commit, plan_hash, started_at, finished_at, outcome, exit_code, summary)
                    VALUES (\(run.id.rawValue), \(run.kind.rawValue), \(run.owner.user), \(run.owner.host), \(Int64(run.owner.pid)), \(run.fleetCommit), \(run.planHash),
                            \(run.startedAt.rawValue), \(run.finishedAt?.rawValue), \(run.outcome?.rawValue), \(run.exitCode.map(Int64.init)), \(run.summary))
                    """)
                for region in run.regions {
                    try await c.execute("INSERT INTO run_regions (run_id, region) VALUES (\(run.id.rawValue), \(region))")
                }
            }
            for e in snapshot.journal {
                try await c.execute(
                    """
                    INSERT INTO journal (id, run_id, region, host, step, detail, begun_at, finished_at, outcome, outcome_detail)
                    VALUES (\(e.id.rawValue), \(e.run.rawValue), \(e.region), \(e.host), \(e.step), \(e.detail.text), \(e.begunAt.rawValue),
                            \(e.finishedAt?.rawValue), \(e.outcome?.rawValue), \(e.outcomeDetail?.text))
                    """)
            }
            for m in snapshot.manifests {
                try await c.execute(
                    """
                    INSERT INTO applied_manifests (id, run_id, region, host, manifest, sha256, applied_at)
                    VALUES (\(m.id), \(m.run.rawValue), \(m.region), \(m.host), \(m.manifest), \(m.sha256), \(m.appliedAt.rawValue))
                    """)
            }
            for a in snapshot.audit {
                try await c.execute(
                    """
                    INSERT INTO audit_log (seq, time, actor, action, subject, detail, prev_hash, hash)
                    VALUES (\(a.seq), \(a.time.rawValue), \(a.actor), \(a.action.rawValue), \(a.subject), \(a.detail.text), \(a.prevHash), \(a.hash))
                    """)
            }
            if let head = snapshot.auditHead {
                try await c.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, \(head.seq), \(head.hash))")
            }
            for l in snapshot.leases {
                // A copied lease has no session here: expiry alone frees it.
                try await c.execute(
                    """
                    INSERT INTO leases (region, holder_user, holder_host, holder_pid, run_id, acquired_at, renewed_at, expires_at, session_pid)
                    VALUES (\(l.region), \(l.holder.user), \(l.holder.host), \(Int64(l.holder.pid)), \(l.run?.rawValue), \(l.acquiredAt.rawValue),
                            \(l.renewedAt.rawValue), \(l.expiresAt.rawValue), NULL)
                    """)
            }
            for d in snapshot.driftChecks {
                try await c.execute("INSERT INTO drift_checks (run_id, region, host, examined, reason) VALUES (\(d.run.rawValue), \(d.region), \(d.host), \(d.examined), \(d.reason))")
            }
            for f in snapshot.findings {
                try await c.execute(
                    """
                    INSERT INTO drift_findings (id, region, host, kind, subject, detail, first_seen_run, first_seen_at, last_seen_run, last_seen_at, cleared_run, cleared_at)
                    VALUES (\(f.id), \(f.region), \(f.host), \(f.kind), \(f.subject), \(f.detail.text), \(f.firstSeenRun.rawValue), \(f.firstSeenAt.rawValue),
                            \(f.lastSeenRun.rawValue), \(f.lastSeenAt.rawValue), \(f.clearedRun?.rawValue), \(f.clearedAt?.rawValue))
                    """)
            }
            if let key = snapshot.fileHashKey {
                try await c.execute("INSERT INTO file_hash_key (id, key, created_at) VALUES (1, \(key), (extract(epoch FROM clock_timestamp()) * 1000)::int8)")
            }
            for s in snapshot.sightings {
                try await c.execute("INSERT INTO drift_sightings (run_id, finding_id, detail) VALUES (\(s.run.rawValue), \(s.finding), \(s.detail.text))")
            }
            for r in snapshot.rollouts {
                try await c.execute(
                    """
                    INSERT INTO rollouts (id, run_id, region, component, phase, terminal, record, started_at, updated_at)
                    VALUES (\(r.id.rawValue), \(r.run?.rawValue), \(r.region), \(r.component), \(r.phase), \(r.terminal), \(r.record),
                            \(r.startedAt.rawValue), \(r.updatedAt.rawValue))
                    """)
            }
            for t in snapshot.rolloutTransitions {
                try await c.execute(
                    """
                    INSERT INTO rollout_transitions (rollout_id, seq, run_id, from_phase, to_phase, effect, detail, at)
                    VALUES (\(t.rollout.rawValue), \(Int64(t.seq)), \(t.run?.rawValue), \(t.fromPhase), \(t.toPhase), \(t.effect), \(t.detail.text), \(t.at.rawValue))
                    """)
            }
            for m in snapshot.rolloutCommands {
                try await c.execute(
                    """
                    INSERT INTO rollout_commands (id, subject, command, actor, requested_at, taken_at)
                    VALUES (\(m.id), \(m.subject), \(m.command), \(m.actor), \(m.requestedAt.rawValue), \(m.takenAt?.rawValue))
                    """)
            }
            // New ids continue after the copied ones.
            for table in ["runs", "journal", "applied_manifests", "drift_findings", "rollouts", "rollout_commands"] {
                try await c.execute("SELECT setval(pg_get_serial_sequence(\(table), 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM \(unescaped: table)), false)")
            }
        }
    }
}
