import Foundation
import GRDB

// Rollouts: their records, transitions and operators' commands. The rules
// are `RolloutRules`, shared with every backend.
extension SQLiteStateStore {
    public func startRollout(region: String, component: String, _ first: RolloutUpdate) async throws -> StoredRollout {
        try await write { db in
            let now = self.clock.now()
            let open = try Row.fetchOne(db, sql: "SELECT * FROM rollouts WHERE region = ? AND component = ? AND terminal = 0", arguments: [region, component])
            try RolloutRules.checkMayStart(unfinished: open.map(Self.rollout))
            try db.execute(
                sql: "INSERT INTO rollouts (run_id, region, component, phase, terminal, record, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [first.run?.rawValue, region, component, first.phase, first.terminal, first.record, now.rawValue, now.rawValue]
            )
            let stored = RolloutRules.started(id: RolloutID(rawValue: db.lastInsertedRowID), region: region, component: component, first, at: now)
            try Self.journal(db, RolloutRules.transition(stored, lastSeq: nil, from: nil, first, at: now), of: stored, actor: first.actor)
            return stored
        }
    }

    public func recordRolloutTransition(_ id: RolloutID, _ next: RolloutUpdate) async throws -> StoredRollout {
        try await write { db in
            let now = self.clock.now()
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM rollouts WHERE id = ?", arguments: [id.rawValue]) else {
                throw StateStoreError.unknownRollout(id)
            }
            let current = Self.rollout(row)
            let stored = try RolloutRules.advanced(current, next, at: now)
            try db.execute(
                sql: "UPDATE rollouts SET phase = ?, terminal = ?, record = ?, updated_at = ? WHERE id = ?",
                arguments: [stored.phase, stored.terminal, stored.record, now.rawValue, id.rawValue]
            )
            let lastSeq = try Int.fetchOne(db, sql: "SELECT max(seq) FROM rollout_transitions WHERE rollout_id = ?", arguments: [id.rawValue])
            try Self.journal(db, RolloutRules.transition(stored, lastSeq: lastSeq, from: current.phase, next, at: now), of: stored, actor: next.actor)
            return stored
        }
    }

    /// The transition row and its audit entry, inside the caller's transaction.
    static func journal(_ db: Database, _ transition: RolloutTransition, of rollout: StoredRollout, actor: String) throws {
        try db.execute(
            sql: "INSERT INTO rollout_transitions (rollout_id, seq, run_id, from_phase, to_phase, effect, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            arguments: [transition.rollout.rawValue, transition.seq, transition.run?.rawValue, transition.fromPhase, transition.toPhase,
                        transition.effect, transition.detail.text, transition.at.rawValue]
        )
        _ = try appendAudit(db, RolloutRules.transitionRecord(rollout, transition, actor: actor), at: transition.at)
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
            try Row.fetchAll(db, sql: "SELECT * FROM rollout_transitions WHERE rollout_id = ? ORDER BY seq", arguments: [id.rawValue]).map(Self.transition)
        }
    }

    public func requestRolloutCommand(subject: String, command: String, actor: String) async throws -> RolloutCommandRecord {
        try await write { db in
            let now = self.clock.now()
            try db.execute(sql: "INSERT INTO rollout_commands (subject, command, actor, requested_at) VALUES (?, ?, ?, ?)",
                           arguments: [subject, command, actor, now.rawValue])
            let record = RolloutCommandRecord(id: db.lastInsertedRowID, subject: subject, command: command, actor: actor, requestedAt: now, takenAt: nil)
            _ = try Self.appendAudit(db, RolloutRules.commandRecord(record), at: now)
            return record
        }
    }

    public func takeRolloutCommands(subject: String) async throws -> [RolloutCommandRecord] {
        try await write { db in
            let now = self.clock.now()
            let pending = try Row.fetchAll(db, sql: "SELECT * FROM rollout_commands WHERE subject = ? AND taken_at IS NULL ORDER BY id", arguments: [subject])
                .map(Self.command)
            let taken = RolloutRules.taken(pending, at: now)
            for command in taken {
                try db.execute(sql: "UPDATE rollout_commands SET taken_at = ? WHERE id = ?", arguments: [now.rawValue, command.id])
            }
            return taken
        }
    }

    static func rollout(_ row: Row) -> StoredRollout {
        StoredRollout(id: RolloutID(rawValue: row["id"]), run: (row["run_id"] as Int64?).map(RunID.init(rawValue:)), region: row["region"],
                      component: row["component"], phase: row["phase"], terminal: row["terminal"], record: row["record"],
                      startedAt: StateTime(rawValue: row["started_at"]), updatedAt: StateTime(rawValue: row["updated_at"]))
    }

    static func transition(_ row: Row) -> RolloutTransition {
        RolloutTransition(rollout: RolloutID(rawValue: row["rollout_id"]), seq: row["seq"], run: (row["run_id"] as Int64?).map(RunID.init(rawValue:)),
                          fromPhase: row["from_phase"], toPhase: row["to_phase"], effect: row["effect"],
                          detail: JSONDetail(unchecked: row["detail"]), at: StateTime(rawValue: row["at"]))
    }

    static func command(_ row: Row) -> RolloutCommandRecord {
        RolloutCommandRecord(id: row["id"], subject: row["subject"], command: row["command"], actor: row["actor"],
                             requestedAt: StateTime(rawValue: row["requested_at"]), takenAt: (row["taken_at"] as Int64?).map(StateTime.init(rawValue:)))
    }
}
