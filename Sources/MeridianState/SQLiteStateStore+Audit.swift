import Foundation
import GRDB

// The hash-chained audit log and region leases.
extension SQLiteStateStore {
    // MARK: Audit log

    public func appendAudit(_ record: AuditRecord) async throws -> AuditEntry {
        try await write { db in try Self.appendAudit(db, record, at: self.clock.now()) }
    }

    /// Appends inside the caller's transaction, so an audited change and its
    /// entry commit together. Chains from the head record (or the last row
    /// when the head is missing), so a removed tail leaves a visible gap.
    static func appendAudit(_ db: Database, _ record: AuditRecord, at time: StateTime) throws -> AuditEntry {
        var previous = try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_head WHERE id = 1")
        if previous == nil {
            previous = try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        }
        let entry = AuditChain.entry(after: previous.map { AuditHead(seq: $0["seq"], hash: $0["hash"]) }, record, at: time)
        try db.execute(
            sql: "INSERT INTO audit_log (seq, time, actor, action, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            arguments: [entry.seq, time.rawValue, entry.actor, entry.action.rawValue, entry.subject, entry.detail.text, entry.prevHash, entry.hash]
        )
        try db.execute(
            sql: "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            arguments: [entry.seq, entry.hash]
        )
        return entry
    }

    public func auditLog(afterSeq: Int64, limit: Int) async throws -> [AuditEntry] {
        let rows = self.rows
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [afterSeq, limit])
                .map(rows.auditEntry)
        }
    }

    public func auditHead() async throws -> AuditHead? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_head WHERE id = 1").map { AuditHead(seq: $0["seq"], hash: $0["hash"]) }
        }
    }

    public func verifyAudit(anchor: AuditHead?) async throws -> AuditVerification {
        let rows = self.rows
        return try await read { db in
            // One read transaction: a consistent snapshot even while others append.
            var verifier = AuditChain.Verifier(anchor: anchor)
            let cursor = try Row.fetchCursor(db, sql: "SELECT * FROM audit_log ORDER BY seq")
            while let row = try cursor.next() {
                if let verdict = verifier.check(rows.auditEntry(row)) { return verdict }
            }
            let head = try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_head WHERE id = 1")
                .map { AuditHead(seq: $0["seq"], hash: $0["hash"]) }
            return verifier.finish(head: head)
        }
    }

    // MARK: Leases

    public func acquireLeases(regions: [String], holder: ProcessIdentity, run: RunID?, ttl: Duration) async throws -> [Lease] {
        let wanted = LeaseRules.normalized(regions)
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            var current: [String: Lease] = [:]
            for region in wanted {
                current[region] = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease)
            }
            // SQLite cannot see whether a holder is still connected: expiry alone frees a lease.
            let decisions = try LeaseRules.acquire(regions: wanted, current: current, presence: [:], holder: holder, run: run, now: now, ttl: ttl).get()
            var taken: [Lease] = []
            for decision in decisions {
                if case .takeOver(let lease, let previous, let cause) = decision {
                    _ = try Self.appendAudit(db, LeaseRules.takeoverRecord(lease, previous: previous, cause: cause), at: now)
                }
                guard let lease = decision.granted else { continue }
                try Self.storeLease(db, lease)
                taken.append(lease)
            }
            return taken
        }
    }

    public func renewLeases(regions: [String], holder: ProcessIdentity, ttl: Duration) async throws -> [Lease] {
        let wanted = LeaseRules.normalized(regions)
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            var renewed: [Lease] = []
            for region in wanted {
                let current = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease)
                // Throwing rolls back the renewals written before it.
                let lease = try LeaseRules.renew(region: region, current: current, holder: holder, now: now, ttl: ttl).get()
                try Self.storeLease(db, lease)
                renewed.append(lease)
            }
            return renewed
        }
    }

    public func releaseLeases(regions: [String], holder: ProcessIdentity) async throws -> [Lease] {
        let wanted = LeaseRules.normalized(regions)
        let rows = self.rows
        return try await write { db in
            var released: [Lease] = []
            for region in wanted {
                let current = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease)
                guard let current, LeaseRules.mayRelease(current, holder: holder) else { continue }
                try db.execute(sql: "DELETE FROM leases WHERE region = ?", arguments: [region])
                released.append(current)
            }
            return released
        }
    }

    public func forceReleaseLease(region: String, by actor: String, reason: String) async throws -> Lease? {
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let current = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease)
            try db.execute(sql: "DELETE FROM leases WHERE region = ?", arguments: [region])
            _ = try Self.appendAudit(db, LeaseRules.forceReleaseRecord(region: region, removed: current, by: actor, reason: reason, now: now), at: now)
            return current
        }
    }

    public func leases() async throws -> [Lease] {
        let rows = self.rows
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM leases ORDER BY region").map(rows.lease)
        }
    }

    static func storeLease(_ db: Database, _ lease: Lease) throws {
        try db.execute(
            sql: """
                INSERT OR REPLACE INTO leases (region, holder_user, holder_host, holder_pid, run_id, acquired_at, renewed_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [lease.region, lease.holder.user, lease.holder.host, lease.holder.pid, lease.run?.rawValue,
                        lease.acquiredAt.rawValue, lease.renewedAt.rawValue, lease.expiresAt.rawValue]
        )
    }
}
