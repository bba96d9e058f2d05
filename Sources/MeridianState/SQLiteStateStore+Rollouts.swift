import Foundation
import GRDB

// Rollouts: their records, transitions and operators' commands.
extension SQLiteStateStore {
    public func startRollout(region: String, component: String, _ first: RolloutUpdate) async throws -> StoredRollout {
        try await write { db in
            let now = self.clock.now()
            if let open = try Row.fetchOne(db, sql: "SELECT * FROM rollouts WHERE region = ? AND component = ? AND terminal = 0", arguments: [region, component]) {
                throw StateStoreError.rolloutInProgress(Self.rollout(open))
            }
            try db.execute(
                sql: "INSERT INTO rollouts (run_id, region, component, phase, terminal, record, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [first.run?.rawValue, region, component, first.phase, first.terminal, first.record, now.rawValue, now.rawValue]
            )
            let id = RolloutID(rawValue: db.lastInsertedRowID)
            let stored = StoredRollout(id: id, run: first.run, region: region, component: component, phase: first.phase, terminal: first.terminal,
                                       record: first.record, startedAt: now, updatedAt: now)
            try Self.journal(db, stored, seq: 1, from: nil, first, at: now)
            return stored
        }
    }

    public func recordRolloutTransition(_ id: RolloutID, _ next: RolloutUpdate) async throws -> StoredRollout {
        try await write { db in
            let now = self.clock.now()
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM rollouts WHERE id = ?", arguments: [id.rawValue]) else {
                throw StateStoreError.unknownRollout(id)
            }
            var stored = Self.rollout(row)
            if stored.terminal { throw StateStoreError.rolloutFinished(stored) }
            let previous = stored.phase
            try db.execute(
                sql: "UPDATE rollouts SET phase = ?, terminal = ?, record = ?, updated_at = ? WHERE id = ?",
                arguments: [next.phase, next.terminal, next.record, now.rawValue, id.rawValue]
            )
            let seq: Int = try Int.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) + 1 FROM rollout_transitions WHERE rollout_id = ?", arguments: [id.rawValue]) ?? 1
            stored.phase = next.phase
            stored.terminal = next.terminal
            stored.record = next.record
            stored.updatedAt = now
            try Self.journal(db, stored, seq: seq, from: previous, next, at: now)
            return stored
        }
    }

    /// The transition row and its audit entry, inside the caller's transaction.
    static func journal(_ db: Database, _ rollout: StoredRollout, seq: Int, from: String?, _ update: RolloutUpdate, at now: StateTime) throws {
        try db.execute(
            sql: "INSERT INTO rollout_transitions (rollout_id, seq, run_id, from_phase, to_phase, effect, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            arguments: [rollout.id.rawValue, seq, update.run?.rawValue, from, update.phase, update.effect, update.detail.text, now.rawValue]
        )
        var fields = ["rollout": String(rollout.id.rawValue), "component": rollout.component, "to": update.phase, "effect": update.effect, "detail": update.detail.text]
        if let from { fields["from"] = from }
        if let run = update.run { fields["run"] = String(run.rawValue) }
        _ = try appendAudit(db, AuditRecord(actor: update.actor, action: .rolloutTransition, subject: rollout.region, detail: JSONDetail(fields)), at: now)
    }

    public func rollout(_ id: RolloutID) async throws -> StoredRollout? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM rollouts WHERE id = ?", arguments: [id.rawValue]).map(Self.rollout)
        }
    }

    public func latestRollouts(region: String?) async throws -> [StoredRollout] {
        try await read { db in
            let filter = region == nil ? "" : "WHERE region = ?"
            let sql = """
                SELECT * FROM rollouts
                WHERE id IN (SELECT max(id) FROM rollouts \(filter) GROUP BY region, component)
                   OR (terminal = 0 \(region == nil ? "" : "AND region = ?"))
                ORDER BY region, component, id
                """
            let arguments: StatementArguments = region.map { [$0, $0] } ?? []
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.rollout)
        }
    }

    public func rolloutTransitions(_ id: RolloutID) async throws -> [RolloutTransition] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM rollout_transitions WHERE rollout_id = ? ORDER BY seq", arguments: [id.rawValue]).map { row in
                RolloutTransition(rollout: RolloutID(rawValue: row["rollout_id"]), seq: row["seq"], run: (row["run_id"] as Int64?).map(RunID.init(rawValue:)),
                                  fromPhase: row["from_phase"], toPhase: row["to_phase"], effect: row["effect"],
                                  detail: JSONDetail(unchecked: row["detail"]), at: StateTime(rawValue: row["at"]))
            }
        }
    }

    public func requestRolloutCommand(subject: String, command: String, actor: String) async throws -> RolloutCommandRecord {
        try await write { db in
            let now = self.clock.now()
            try db.execute(sql: "INSERT INTO rollout_commands (subject, command, actor, requested_at) VALUES (?, ?, ?, ?)",
                           arguments: [subject, command, actor, now.rawValue])
            let id = db.lastInsertedRowID
            _ = try Self.appendAudit(db, AuditRecord(actor: actor, action: .rolloutCommand, subject: subject, detail: JSONDetail(["command": command, "id": String(id)])), at: now)
            return RolloutCommandRecord(id: id, subject: subject, command: command, actor: actor, requestedAt: now, takenAt: nil)
        }
    }

    public func takeRolloutCommands(subject: String) async throws -> [RolloutCommandRecord] {
        try await write { db in
            let now = self.clock.now()
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM rollout_commands WHERE subject = ? AND taken_at IS NULL ORDER BY id", arguments: [subject])
            try db.execute(sql: "UPDATE rollout_commands SET taken_at = ? WHERE subject = ? AND taken_at IS NULL", arguments: [now.rawValue, subject])
            return rows.map { row in
                RolloutCommandRecord(id: row["id"], subject: row["subject"], command: row["command"], actor: row["actor"],
                                     requestedAt: StateTime(rawValue: row["requested_at"]), takenAt: now)
            }
        }
    }

    static func rollout(_ row: Row) -> StoredRollout {
        StoredRollout(id: RolloutID(rawValue: row["id"]), run: (row["run_id"] as Int64?).map(RunID.init(rawValue:)), region: row["region"],
                      component: row["component"], phase: row["phase"], terminal: row["terminal"], record: row["record"],
                      startedAt: StateTime(rawValue: row["started_at"]), updatedAt: StateTime(rawValue: row["updated_at"]))
    }
}
