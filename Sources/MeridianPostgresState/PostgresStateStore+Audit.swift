import Foundation
import MeridianState
import PostgresNIO

// The hash-chained audit log and region leases.
extension PostgresStateStore {
    // MARK: Audit log

    public func appendAudit(_ record: AuditRecord) async throws -> AuditEntry {
        try await write { c in try await self.appendAudit(c, record, at: try await self.now(c)) }
    }

    /// Appends inside the caller's transaction. The transaction-level advisory
    /// lock makes appends from every process take turns, so each reads the head
    /// the one before it wrote: one linear chain. It chains from the head record
    /// (or the last row when the head is missing), as SQLite's does.
    func appendAudit(_ c: PostgresConnection, _ record: AuditRecord, at time: StateTime) async throws -> AuditEntry {
        try await lock(c, PostgresSchema.auditLock)
        var previous = try await c.record("SELECT seq, hash FROM audit_head WHERE id = 1", location: location)
        if previous == nil {
            previous = try await c.record("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", location: location)
        }
        let head = try previous.map { AuditHead(seq: try $0.int("seq"), hash: try $0.text("hash")) }
        let entry = AuditChain.entry(after: head, record, at: time)
        try await c.execute(
            """
            INSERT INTO audit_log (seq, time, actor, action, subject, detail, prev_hash, hash)
            VALUES (\(entry.seq), \(time.rawValue), \(entry.actor), \(entry.action.rawValue), \(entry.subject), \(entry.detail.text), \(entry.prevHash), \(entry.hash))
            """)
        try await c.execute(
            """
            INSERT INTO audit_head (id, seq, hash) VALUES (1, \(entry.seq), \(entry.hash))
            ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
            """)
        return entry
    }

    public func auditLog(afterSeq: Int64, limit: Int) async throws -> [AuditEntry] {
        try await read { c in
            try await c.records("SELECT * FROM audit_log WHERE seq > \(afterSeq) ORDER BY seq LIMIT \(Int64(limit))", location: self.location).map { try $0.auditEntry() }
        }
    }

    public func auditHead() async throws -> AuditHead? {
        try await read { c in try await self.fetchHead(c) }
    }

    func fetchHead(_ c: PostgresConnection) async throws -> AuditHead? {
        try await c.record("SELECT seq, hash FROM audit_head WHERE id = 1", location: location).map { AuditHead(seq: try $0.int("seq"), hash: try $0.text("hash")) }
    }

    public func verifyAudit(anchor: AuditHead?) async throws -> AuditVerification {
        try await sessions.withConnection { c in
            // One REPEATABLE READ snapshot: the log and its head as of one moment, even while others append.
            try await c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                // Read whole before judging: a connection runs one statement at a time.
                let rows = try await c.records("SELECT * FROM audit_log ORDER BY seq", location: self.location)
                let head = try await self.fetchHead(c)
                try await c.execute("COMMIT")
                var verifier = AuditChain.Verifier(anchor: anchor)
                for row in rows {
                    if let verdict = verifier.check(try row.auditEntry()) { return verdict }
                }
                return verifier.finish(head: head)
            } catch {
                if !c.isClosed { _ = try? await c.execute("ROLLBACK") }
                throw error
            }
        }
    }

    // MARK: Leases

    /// SQL true for a `leases` row whose holder's lease session has ended:
    /// the row names a server session, and that session no longer holds the
    /// region's marker. A row with no session (copied from SQLite) is judged by expiry alone.
    static let holderGoneCondition = """
        leases.session_pid IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_locks p
            WHERE p.locktype = 'advisory' AND p.granted AND p.objsubid = 2
              AND p.classid = \(PostgresSchema.leaseMarkerClass)::int8::oid
              AND p.objid = (hashtext(leases.region)::int8 & 4294967295)::oid
              AND p.pid = leases.session_pid)
        """

    /// Every lease call runs on the one lease session, in a transaction that
    /// takes turns with every other process's lease calls.
    func leaseTransaction<T: Sendable>(_ body: @Sendable @escaping (PostgresConnection, StateTime) async throws -> T) async throws -> T {
        try await leaseSession.transaction { c in
            try await self.lock(c, PostgresSchema.leaseLock)
            return try await body(c, try await self.now(c))
        }
    }

    func currentLeases(_ c: PostgresConnection, _ regions: [String]) async throws -> (leases: [String: Lease], presence: [String: HolderPresence]) {
        var leases: [String: Lease] = [:]
        var presence: [String: HolderPresence] = [:]
        let rows = try await c.records(
            """
            SELECT leases.*, leases.session_pid IS NULL AS session_unknown, (\(unescaped: Self.holderGoneCondition)) AS holder_gone
            FROM leases WHERE region = ANY(\(regions))
            """, location: location)
        for row in rows {
            let lease = try row.lease()
            leases[lease.region] = lease
            presence[lease.region] = try row.bool("session_unknown") ? .unknown : (try row.bool("holder_gone") ? .gone : .connected)
        }
        return (leases, presence)
    }

    /// Writes a lease held by this store's lease session, and takes that session's marker for the region.
    func storeLease(_ c: PostgresConnection, _ lease: Lease) async throws {
        try await c.execute(
            """
            INSERT INTO leases (region, holder_user, holder_host, holder_pid, run_id, acquired_at, renewed_at, expires_at, session_pid)
            VALUES (\(lease.region), \(lease.holder.user), \(lease.holder.host), \(Int64(lease.holder.pid)), \(lease.run?.rawValue),
                    \(lease.acquiredAt.rawValue), \(lease.renewedAt.rawValue), \(lease.expiresAt.rawValue), pg_backend_pid())
            ON CONFLICT (region) DO UPDATE SET holder_user = excluded.holder_user, holder_host = excluded.holder_host,
                holder_pid = excluded.holder_pid, run_id = excluded.run_id, acquired_at = excluded.acquired_at,
                renewed_at = excluded.renewed_at, expires_at = excluded.expires_at, session_pid = excluded.session_pid
            """)
        // A session lock taken in a transaction outlives its commit; taken once per region and session.
        try await c.execute(
            """
            SELECT pg_advisory_lock_shared(\(PostgresSchema.leaseMarkerClass), hashtext(\(lease.region)))
            WHERE NOT EXISTS (SELECT 1 FROM pg_locks p WHERE p.locktype = 'advisory' AND p.pid = pg_backend_pid() AND p.objsubid = 2
                AND p.classid = \(PostgresSchema.leaseMarkerClass)::int8::oid AND p.objid = (hashtext(\(lease.region))::int8 & 4294967295)::oid)
            """)
    }

    /// Drops this session's marker for a region it no longer holds.
    func dropMarker(_ c: PostgresConnection, region: String) async throws {
        try await c.execute("SELECT pg_advisory_unlock_shared(\(PostgresSchema.leaseMarkerClass), hashtext(\(region)))")
    }

    public func acquireLeases(regions: [String], holder: ProcessIdentity, run: RunID?, ttl: Duration) async throws -> [Lease] {
        let wanted = LeaseRules.normalized(regions)
        return try await leaseTransaction { c, now in
            let (current, presence) = try await self.currentLeases(c, wanted)
            let decisions = try LeaseRules.acquire(regions: wanted, current: current, presence: presence, holder: holder, run: run, now: now, ttl: ttl).get()
            var taken: [Lease] = []
            for decision in decisions {
                if case .takeOver(let lease, let previous, let cause) = decision {
                    _ = try await self.appendAudit(c, LeaseRules.takeoverRecord(lease, previous: previous, cause: cause), at: now)
                }
                guard let lease = decision.granted else { continue }
                try await self.storeLease(c, lease)
                taken.append(lease)
            }
            return taken
        }
    }

    public func renewLeases(regions: [String], holder: ProcessIdentity, ttl: Duration) async throws -> [Lease] {
        let wanted = LeaseRules.normalized(regions)
        return try await leaseTransaction { c, now in
            let (current, _) = try await self.currentLeases(c, wanted)
            var renewed: [Lease] = []
            for region in wanted {
                let lease = try LeaseRules.renew(region: region, current: current[region], holder: holder, now: now, ttl: ttl).get()
                // After a reconnect the lease moves to the new session (a new marker).
                try await self.storeLease(c, lease)
                renewed.append(lease)
            }
            return renewed
        }
    }

    public func releaseLeases(regions: [String], holder: ProcessIdentity) async throws -> [Lease] {
        let wanted = LeaseRules.normalized(regions)
        return try await leaseTransaction { c, _ in
            let (current, _) = try await self.currentLeases(c, wanted)
            var released: [Lease] = []
            for region in wanted {
                guard let lease = current[region], LeaseRules.mayRelease(lease, holder: holder) else { continue }
                try await c.execute("DELETE FROM leases WHERE region = \(region)")
                try await self.dropMarker(c, region: region)
                released.append(lease)
            }
            return released
        }
    }

    public func forceReleaseLease(region: String, by actor: String, reason: String) async throws -> Lease? {
        try await leaseTransaction { c, now in
            let (current, _) = try await self.currentLeases(c, [region])
            let removed = current[region]
            try await c.execute("DELETE FROM leases WHERE region = \(region)")
            _ = try await self.appendAudit(c, LeaseRules.forceReleaseRecord(region: region, removed: removed, by: actor, reason: reason, now: now), at: now)
            return removed
        }
    }

    public func leases() async throws -> [Lease] {
        try await read { c in
            try await c.records("SELECT * FROM leases ORDER BY region", location: self.location).map { try $0.lease() }
        }
    }
}
