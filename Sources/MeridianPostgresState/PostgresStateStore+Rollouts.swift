import Foundation
import MeridianState
import PostgresNIO

// Rollouts: their records, transitions and operators' commands. The rules
// are `RolloutRules`, shared with SQLite; every write takes the rollout lock
// first (then, for its audit entry, the audit lock), so rollout writes from
// every process take turns as SQLite's IMMEDIATE transactions do, and each
// transition commits with its journal row and its audit entry or not at all.
extension PostgresStateStore {
    func rolloutTransaction<T: Sendable>(_ body: @Sendable @escaping (PostgresConnection, StateTime) async throws -> T) async throws -> T {
        try await write { c in
            try await self.lock(c, PostgresSchema.rolloutLock)
            return try await body(c, try await self.now(c))
        }
    }

    public func startRollout(region: String, component: String, _ first: RolloutUpdate) async throws -> StoredRollout {
        try await rolloutTransaction { c, now in
            // Under the lock, READ COMMITTED sees every rollout committed before it.
            let open = try await c.record(
                "SELECT * FROM rollouts WHERE region = \(region) AND component = \(component) AND NOT terminal", location: self.location)
            try RolloutRules.checkMayStart(unfinished: try open?.rollout())
            guard let row = try await c.record(
                """
                INSERT INTO rollouts (run_id, region, component, phase, terminal, record, started_at, updated_at)
                VALUES (\(first.run?.rawValue), \(region), \(component), \(first.phase), \(first.terminal), \(first.record), \(now.rawValue), \(now.rawValue))
                RETURNING id
                """, location: self.location) else { throw StateStoreError.database(path: self.location, message: "INSERT returned no id") }
            let stored = RolloutRules.started(id: RolloutID(rawValue: try row.int("id")), region: region, component: component, first, at: now)
            try await self.journal(c, RolloutRules.transition(stored, lastSeq: nil, from: nil, first, at: now), of: stored, actor: first.actor)
            return stored
        }
    }

    public func recordRolloutTransition(_ id: RolloutID, _ next: RolloutUpdate) async throws -> StoredRollout {
        try await rolloutTransaction { c, now in
            guard let current = try await c.record("SELECT * FROM rollouts WHERE id = \(id.rawValue) FOR UPDATE", location: self.location)?.rollout() else {
                throw StateStoreError.unknownRollout(id)
            }
            let stored = try RolloutRules.advanced(current, next, at: now)
            try await c.execute(
                """
                UPDATE rollouts SET phase = \(stored.phase), terminal = \(stored.terminal), record = \(stored.record), updated_at = \(now.rawValue)
                WHERE id = \(id.rawValue)
                """)
            let lastSeq = try await c.record("SELECT max(seq)::int8 AS seq FROM rollout_transitions WHERE rollout_id = \(id.rawValue)", location: self.location)?
                .optionalInt("seq").map(Int.init)
            try await self.journal(c, RolloutRules.transition(stored, lastSeq: lastSeq, from: current.phase, next, at: now), of: stored, actor: next.actor)
            return stored
        }
    }

    /// The transition row and its audit entry, inside the caller's transaction.
    func journal(_ c: PostgresConnection, _ t: RolloutTransition, of rollout: StoredRollout, actor: String) async throws {
        try await c.execute(
            """
            INSERT INTO rollout_transitions (rollout_id, seq, run_id, from_phase, to_phase, effect, detail, at)
            VALUES (\(t.rollout.rawValue), \(Int64(t.seq)), \(t.run?.rawValue), \(t.fromPhase), \(t.toPhase), \(t.effect), \(t.detail.text), \(t.at.rawValue))
            """)
        _ = try await appendAudit(c, RolloutRules.transitionRecord(rollout, t, actor: actor), at: t.at)
    }

    public func rollout(_ id: RolloutID) async throws -> StoredRollout? {
        try await read { c in
            try await c.record("SELECT * FROM rollouts WHERE id = \(id.rawValue)", location: self.location)?.rollout()
        }
    }

    public func latestRollouts(region: String?) async throws -> [StoredRollout] {
        try await read { c in
            // The newest of each (region, component), and every unfinished one.
            if let region {
                return try await c.records(
                    """
                    SELECT * FROM rollouts
                    WHERE region = \(region) AND (NOT terminal OR id IN (SELECT max(id) FROM rollouts WHERE region = \(region) GROUP BY region, component))
                    ORDER BY region, component, id
                    """, location: self.location).map { try $0.rollout() }
            }
            return try await c.records(
                """
                SELECT * FROM rollouts
                WHERE NOT terminal OR id IN (SELECT max(id) FROM rollouts GROUP BY region, component)
                ORDER BY region, component, id
                """, location: self.location).map { try $0.rollout() }
        }
    }

    public func rolloutTransitions(_ id: RolloutID) async throws -> [RolloutTransition] {
        try await read { c in
            try await c.records("SELECT * FROM rollout_transitions WHERE rollout_id = \(id.rawValue) ORDER BY seq", location: self.location)
                .map { try $0.rolloutTransition() }
        }
    }

    public func requestRolloutCommand(subject: String, command: String, actor: String) async throws -> RolloutCommandRecord {
        try await rolloutTransaction { c, now in
            guard let row = try await c.record(
                """
                INSERT INTO rollout_commands (subject, command, actor, requested_at) VALUES (\(subject), \(command), \(actor), \(now.rawValue))
                RETURNING id
                """, location: self.location) else { throw StateStoreError.database(path: self.location, message: "INSERT returned no id") }
            let record = RolloutCommandRecord(id: try row.int("id"), subject: subject, command: command, actor: actor, requestedAt: now, takenAt: nil)
            _ = try await self.appendAudit(c, RolloutRules.commandRecord(record), at: now)
            return record
        }
    }

    public func takeRolloutCommands(subject: String) async throws -> [RolloutCommandRecord] {
        try await rolloutTransaction { c, now in
            let pending = try await c.records(
                "SELECT * FROM rollout_commands WHERE subject = \(subject) AND taken_at IS NULL ORDER BY id FOR UPDATE", location: self.location
            ).map { try $0.rolloutCommand() }
            let taken = RolloutRules.taken(pending, at: now)
            let ids = taken.map(\.id)
            try await c.execute("UPDATE rollout_commands SET taken_at = \(now.rawValue) WHERE id = ANY(\(ids))")
            return taken
        }
    }
}
