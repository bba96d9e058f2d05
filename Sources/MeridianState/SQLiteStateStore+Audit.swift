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
        let seq: Int64 = (previous?["seq"] ?? 0) + 1
        let prevHash: String = previous?["hash"] ?? AuditEntry.genesisHash
        let hash = AuditEntry.hash(
            seq: seq, time: time, actor: record.actor, action: record.action,
            subject: record.subject, detail: record.detail, prevHash: prevHash
        )
        try db.execute(
            sql: "INSERT INTO audit_log (seq, time, actor, action, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            arguments: [seq, time.rawValue, record.actor, record.action.rawValue, record.subject, record.detail.text, prevHash, hash]
        )
        try db.execute(
            sql: "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            arguments: [seq, hash]
        )
        return AuditEntry(
            seq: seq, time: time, actor: record.actor, action: record.action, subject: record.subject,
            detail: record.detail, prevHash: prevHash, hash: hash
        )
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
            var expectedSeq: Int64 = 1
            var previousHash = AuditEntry.genesisHash
            var anchorFound: String?
            let cursor = try Row.fetchCursor(db, sql: "SELECT * FROM audit_log ORDER BY seq")
            while let row = try cursor.next() {
                let entry = rows.auditEntry(row)
                if entry.seq != expectedSeq {
                    return .broken(seq: entry.seq, problem: .missingEntries(from: expectedSeq, through: entry.seq - 1))
                }
                let computed = entry.computedHash
                if computed != entry.hash {
                    return .broken(seq: entry.seq, problem: .hashMismatch(stored: entry.hash, computed: computed))
                }
                if entry.prevHash != previousHash {
                    return .broken(seq: entry.seq, problem: .brokenLink(expected: previousHash, found: entry.prevHash))
                }
                if let anchor, anchor.seq == entry.seq { anchorFound = entry.hash }
                previousHash = entry.hash
                expectedSeq += 1
            }
            let count = expectedSeq - 1
            let last = count == 0 ? nil : AuditHead(seq: count, hash: previousHash)
            let head = try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_head WHERE id = 1")
                .map { AuditHead(seq: $0["seq"], hash: $0["hash"]) }
            switch (head, last) {
            case (nil, nil):
                break
            case (nil, let last?):
                return .broken(seq: last.seq, problem: .headMissing(last: last))
            case (let head?, let last):
                if head != last {
                    return .broken(seq: max(head.seq, last?.seq ?? 0), problem: .headMismatch(head: head, last: last))
                }
            }
            if let anchor, anchorFound != anchor.hash {
                return .broken(seq: anchor.seq, problem: .anchorMismatch(anchor: anchor, found: anchorFound))
            }
            return .intact(entries: count, head: last)
        }
    }

    // MARK: Leases

    public func acquireLeases(regions: [String], holder: ProcessIdentity, run: RunID?, ttl: Duration) async throws -> [Lease] {
        precondition(ttl > .zero, "a lease needs a positive time to live")
        let wanted = Array(Set(regions)).sorted()
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let expires = now.adding(ttl)
            var conflicts: [Lease] = []
            var taken: [Lease] = []
            for region in wanted {
                let current = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease)
                let lease: Lease
                switch current {
                case nil:
                    lease = Lease(region: region, holder: holder, run: run, acquiredAt: now, renewedAt: now, expiresAt: expires)
                case let current? where current.holder == holder:
                    lease = Lease(region: region, holder: holder, run: run, acquiredAt: current.acquiredAt, renewedAt: now, expiresAt: expires)
                case let current? where current.isExpired(at: now):
                    lease = Lease(region: region, holder: holder, run: run, acquiredAt: now, renewedAt: now, expiresAt: expires)
                    let detail = JSONDetail([
                        "previousHolder": current.holder.description,
                        "previousRun": current.run.map { String($0.rawValue) } ?? "",
                        "previousAcquiredAt": current.acquiredAt.description,
                        "expiredAt": current.expiresAt.description,
                        "run": run.map { String($0.rawValue) } ?? "",
                        "holder": holder.description,
                    ])
                    _ = try Self.appendAudit(db, AuditRecord(actor: holder.actor, action: .leaseTakeover, subject: region, detail: detail), at: now)
                case let current?:
                    conflicts.append(current)
                    continue
                }
                try Self.storeLease(db, lease)
                taken.append(lease)
            }
            // Throwing rolls back every lease (and takeover entry) written above.
            if !conflicts.isEmpty { throw StateStoreError.leaseHeld(LeaseConflict(requested: wanted, held: conflicts)) }
            return taken
        }
    }

    public func renewLeases(regions: [String], holder: ProcessIdentity, ttl: Duration) async throws -> [Lease] {
        precondition(ttl > .zero, "a lease needs a positive time to live")
        let wanted = Array(Set(regions)).sorted()
        let rows = self.rows
        return try await write { db in
            let now = self.clock.now()
            let expires = now.adding(ttl)
            var renewed: [Lease] = []
            for region in wanted {
                let current = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease)
                // An expired lease nobody took over yet is still ours to renew.
                guard let current, current.holder == holder else {
                    throw StateStoreError.leaseLost(region: region, holder: holder, current: current)
                }
                let lease = Lease(region: region, holder: holder, run: current.run, acquiredAt: current.acquiredAt, renewedAt: now, expiresAt: expires)
                try Self.storeLease(db, lease)
                renewed.append(lease)
            }
            return renewed
        }
    }

    public func releaseLeases(regions: [String], holder: ProcessIdentity) async throws -> [Lease] {
        let wanted = Array(Set(regions)).sorted()
        let rows = self.rows
        return try await write { db in
            var released: [Lease] = []
            for region in wanted {
                guard let current = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE region = ?", arguments: [region]).map(rows.lease),
                      current.holder == holder else { continue }
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
            var fields = ["reason": reason, "released": current == nil ? "none" : "lease"]
            if let current {
                fields["holder"] = current.holder.description
                fields["run"] = current.run.map { String($0.rawValue) } ?? ""
                fields["acquiredAt"] = current.acquiredAt.description
                fields["expiresAt"] = current.expiresAt.description
                fields["expired"] = current.isExpired(at: now) ? "yes" : "no"
            }
            _ = try Self.appendAudit(db, AuditRecord(actor: actor, action: .leaseForceRelease, subject: region, detail: JSONDetail(fields)), at: now)
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
