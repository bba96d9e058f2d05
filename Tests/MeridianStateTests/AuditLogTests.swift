import Foundation
import GRDB
import MeridianBasics
import MeridianState
import Testing

@Suite("Hash-chained audit log")
struct AuditLogTests {
    /// A store with five entries, and a raw connection that has dropped the
    /// append-only triggers the way a deliberate tamperer would.
    func storeWithFiveEntries() async throws -> (TemporaryFolder, SQLiteStateStore, DatabaseQueue) {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        for index in 1...5 {
            _ = try await store.appendAudit(AuditRecord(
                actor: "alice@laptop-1", action: "apply", subject: "eu-west",
                detail: JSONDetail(["step": "\(index)"])
            ))
        }
        let raw = try rawConnection(folder.databasePath)
        try await raw.write { db in
            try db.execute(sql: "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete")
        }
        return (folder, store, raw)
    }

    @Test func entriesChainAndVerify() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        #expect(try await store.verifyAudit(anchor: nil) == .intact(entries: 0, head: nil))
        let first = try await store.appendAudit(AuditRecord(actor: "alice@laptop-1", action: "apply", subject: "eu-west"))
        let second = try await store.appendAudit(AuditRecord(actor: "bob@ci-3", action: .leaseForceRelease, subject: "us-east", detail: JSONDetail(["reason": "stuck"])))
        #expect(first.seq == 1)
        #expect(first.prevHash == AuditEntry.genesisHash)
        #expect(second.prevHash == first.hash)
        #expect(first.hash == first.computedHash)
        #expect(try await store.auditLog(afterSeq: 0, limit: 100) == [first, second])
        #expect(try await store.auditLog(afterSeq: 1, limit: 100) == [second])
        let head = AuditHead(seq: 2, hash: second.hash)
        #expect(try await store.auditHead() == head)
        #expect(try await store.verifyAudit(anchor: nil) == .intact(entries: 2, head: head))
        #expect(try await store.verifyAudit(anchor: AuditHead(seq: 1, hash: first.hash)).isIntact)
    }

    @Test func theHashIsOverALengthPrefixedCanonicalForm() {
        let bytes = AuditEntry.canonicalBytes(
            seq: 7, time: StateTime(rawValue: 1000), actor: "a@b", action: "x", subject: "eu",
            detail: JSONDetail(["k": "v"]), prevHash: "00"
        )
        let expected = "meridian-audit-v1\n1:7\n4:1000\n3:a@b\n1:x\n2:eu\n9:{\"k\":\"v\"}\n2:00\n"
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
        #expect(AuditEntry.hash(seq: 7, time: StateTime(rawValue: 1000), actor: "a@b", action: "x", subject: "eu",
                                detail: JSONDetail(["k": "v"]), prevHash: "00") == SHA256.hex(expected))
        // Moving a character across a field boundary changes the bytes.
        let shifted = AuditEntry.canonicalBytes(
            seq: 7, time: StateTime(rawValue: 1000), actor: "a@", action: "bx", subject: "eu",
            detail: JSONDetail(["k": "v"]), prevHash: "00"
        )
        #expect(shifted != bytes)
    }

    @Test func aPlainEditIsRefusedByTheAppendOnlyTriggers() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        _ = try await store.appendAudit(AuditRecord(actor: "alice@laptop-1", action: "apply", subject: "eu-west"))
        let raw = try rawConnection(folder.databasePath)
        await #expect(throws: DatabaseError.self) {
            try await raw.write { db in try db.execute(sql: "UPDATE audit_log SET actor = 'mallory@x'") }
        }
        await #expect(throws: DatabaseError.self) {
            try await raw.write { db in try db.execute(sql: "DELETE FROM audit_log") }
        }
        #expect(try await store.verifyAudit(anchor: nil).isIntact)
    }

    @Test func anEditedEntryIsNamed() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        try await raw.write { db in try db.execute(sql: "UPDATE audit_log SET actor = 'mallory@x' WHERE seq = 3") }
        let result = try await store.verifyAudit(anchor: nil)
        guard case .broken(3, .hashMismatch) = result else {
            Issue.record("expected a hash mismatch at entry 3, got \(result)")
            return
        }
        #expect(result.description.contains("entry 3"))
        #expect(result.description.contains("edited"))
    }

    @Test func aDeletedMiddleEntryIsNamed() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        try await raw.write { db in try db.execute(sql: "DELETE FROM audit_log WHERE seq = 3") }
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 4, problem: .missingEntries(from: 3, through: 3)))
        #expect(result.description.contains("entry 3 is missing"))
    }

    @Test func aDeletedFirstEntryIsNamed() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        try await raw.write { db in try db.execute(sql: "DELETE FROM audit_log WHERE seq <= 2") }
        #expect(try await store.verifyAudit(anchor: nil) == .broken(seq: 3, problem: .missingEntries(from: 1, through: 2)))
    }

    @Test func aDeletedEntryWithRenumberedSuccessorsIsCaughtByTheirHashes() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        try await raw.write { db in
            try db.execute(sql: "DELETE FROM audit_log WHERE seq = 3")
            try db.execute(sql: "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
        }
        let result = try await store.verifyAudit(anchor: nil)
        guard case .broken(3, .hashMismatch) = result else {
            Issue.record("expected a hash mismatch at entry 3, got \(result)")
            return
        }
    }

    @Test func anEditedAndRehashedEntryBreaksTheNextLink() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        let target = entries[1]
        let forgedHash = AuditEntry.hash(
            seq: target.seq, time: target.time, actor: "mallory@x", action: target.action,
            subject: target.subject, detail: target.detail, prevHash: target.prevHash
        )
        try await raw.write { db in
            try db.execute(sql: "UPDATE audit_log SET actor = 'mallory@x', hash = ? WHERE seq = 2", arguments: [forgedHash])
        }
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 3, problem: .brokenLink(expected: forgedHash, found: target.hash)))
    }

    @Test func aBrokenPrevLinkIsNamed() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        let target = entries[3]
        let wrongPrev = String(repeating: "f", count: 64)
        // Re-hashed with the wrong link, so only the link is wrong.
        let rehashed = AuditEntry.hash(
            seq: target.seq, time: target.time, actor: target.actor, action: target.action,
            subject: target.subject, detail: target.detail, prevHash: wrongPrev
        )
        try await raw.write { db in
            try db.execute(sql: "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = 4", arguments: [wrongPrev, rehashed])
        }
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 4, problem: .brokenLink(expected: entries[2].hash, found: wrongPrev)))
    }

    @Test func aRemovedTailIsCaughtByTheHeadRecord() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        let head = try #require(try await store.auditHead())
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        try await raw.write { db in try db.execute(sql: "DELETE FROM audit_log WHERE seq >= 4") }
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 5, problem: .headMismatch(head: head, last: AuditHead(seq: 3, hash: entries[2].hash))))
        #expect(result.description.contains("tail"))

        // A later append chains from the head, so the hole stays visible.
        _ = try await store.appendAudit(AuditRecord(actor: "alice@laptop-1", action: "apply", subject: "eu-west"))
        #expect(try await store.verifyAudit(anchor: nil) == .broken(seq: 6, problem: .missingEntries(from: 4, through: 5)))
    }

    @Test func aRemovedTailAndHeadIsCaughtOnlyByAnAnchor() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        let anchor = try #require(try await store.auditHead())
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        try await raw.write { db in
            try db.execute(sql: "DELETE FROM audit_log WHERE seq >= 4")
            try db.execute(sql: "UPDATE audit_head SET seq = 3, hash = ?", arguments: [entries[2].hash])
        }
        // Consistent on its own: this is the documented limit without an anchor.
        #expect(try await store.verifyAudit(anchor: nil) == .intact(entries: 3, head: AuditHead(seq: 3, hash: entries[2].hash)))
        #expect(try await store.verifyAudit(anchor: anchor) == .broken(seq: 5, problem: .anchorMismatch(anchor: anchor, found: nil)))
    }

    @Test func aDeletedHeadRecordIsNamed() async throws {
        let (_, store, raw) = try await storeWithFiveEntries()
        let head = try #require(try await store.auditHead())
        try await raw.write { db in try db.execute(sql: "DELETE FROM audit_head") }
        #expect(try await store.verifyAudit(anchor: nil) == .broken(seq: 5, problem: .headMissing(last: head)))
    }
}
