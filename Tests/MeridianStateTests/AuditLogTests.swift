import Foundation
import MeridianBasics
import MeridianPostgresState
import MeridianState
import Testing

@Suite("Hash-chained audit log")
struct AuditLogTests {
    /// A store with five entries, and a raw connection that has dropped the
    /// append-only triggers the way a deliberate tamperer would.
    func storeWithFiveEntries(_ backend: Backend) async throws -> (StoreFixture, any StateStore, StoreFixture) {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        for index in 1...5 {
            _ = try await store.appendAudit(AuditRecord(
                actor: "alice@laptop-1", action: "apply", subject: "eu-west",
                detail: JSONDetail(["step": "\(index)"])
            ))
        }
        return (fixture, store, fixture)
    }

    @Test(arguments: Backend.allCases) func entriesChainAndVerify(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
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

    @Test(arguments: Backend.allCases) func aPlainEditIsRefusedByTheAppendOnlyTriggers(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        _ = try await store.appendAudit(AuditRecord(actor: "alice@laptop-1", action: "apply", subject: "eu-west"))
        await #expect(throws: (any Error).self) { try await fixture.edit(["UPDATE audit_log SET actor = 'mallory@x'"]) }
        await #expect(throws: (any Error).self) { try await fixture.edit(["DELETE FROM audit_log"]) }
        #expect(try await store.verifyAudit(anchor: nil).isIntact)
    }

    @Test(arguments: Backend.allCases) func anEditedEntryIsNamed(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        try await raw.tamper(["UPDATE audit_log SET actor = 'mallory@x' WHERE seq = 3"])
        let result = try await store.verifyAudit(anchor: nil)
        guard case .broken(3, .hashMismatch) = result else {
            Issue.record("expected a hash mismatch at entry 3, got \(result)")
            return
        }
        #expect(result.description.contains("entry 3"))
        #expect(result.description.contains("edited"))
    }

    @Test(arguments: Backend.allCases) func aDeletedMiddleEntryIsNamed(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        try await raw.tamper(["DELETE FROM audit_log WHERE seq = 3"])
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 4, problem: .missingEntries(from: 3, through: 3)))
        #expect(result.description.contains("entry 3 is missing"))
    }

    @Test(arguments: Backend.allCases) func aDeletedFirstEntryIsNamed(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        try await raw.tamper(["DELETE FROM audit_log WHERE seq <= 2"])
        #expect(try await store.verifyAudit(anchor: nil) == .broken(seq: 3, problem: .missingEntries(from: 1, through: 2)))
    }

    @Test(arguments: Backend.allCases) func aDeletedEntryWithRenumberedSuccessorsIsCaughtByTheirHashes(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        try await raw.tamper(["DELETE FROM audit_log WHERE seq = 3", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3"])
        let result = try await store.verifyAudit(anchor: nil)
        guard case .broken(3, .hashMismatch) = result else {
            Issue.record("expected a hash mismatch at entry 3, got \(result)")
            return
        }
    }

    @Test(arguments: Backend.allCases) func anEditedAndRehashedEntryBreaksTheNextLink(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        let target = entries[1]
        let forgedHash = AuditEntry.hash(
            seq: target.seq, time: target.time, actor: "mallory@x", action: target.action,
            subject: target.subject, detail: target.detail, prevHash: target.prevHash
        )
        try await raw.tamper(["UPDATE audit_log SET actor = 'mallory@x', hash = '\(forgedHash)' WHERE seq = 2"])
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 3, problem: .brokenLink(expected: forgedHash, found: target.hash)))
    }

    @Test(arguments: Backend.allCases) func aBrokenPrevLinkIsNamed(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        let target = entries[3]
        let wrongPrev = String(repeating: "f", count: 64)
        // Re-hashed with the wrong link, so only the link is wrong.
        let rehashed = AuditEntry.hash(
            seq: target.seq, time: target.time, actor: target.actor, action: target.action,
            subject: target.subject, detail: target.detail, prevHash: wrongPrev
        )
        try await raw.tamper(["UPDATE audit_log SET prev_hash = '\(wrongPrev)', hash = '\(rehashed)' WHERE seq = 4"])
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 4, problem: .brokenLink(expected: entries[2].hash, found: wrongPrev)))
    }

    @Test(arguments: Backend.allCases) func aRemovedTailIsCaughtByTheHeadRecord(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        let head = try #require(try await store.auditHead())
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        try await raw.tamper(["DELETE FROM audit_log WHERE seq >= 4"])
        let result = try await store.verifyAudit(anchor: nil)
        #expect(result == .broken(seq: 5, problem: .headMismatch(head: head, last: AuditHead(seq: 3, hash: entries[2].hash))))
        #expect(result.description.contains("tail"))

        // A later append chains from the head, so the hole stays visible.
        _ = try await store.appendAudit(AuditRecord(actor: "alice@laptop-1", action: "apply", subject: "eu-west"))
        #expect(try await store.verifyAudit(anchor: nil) == .broken(seq: 6, problem: .missingEntries(from: 4, through: 5)))
    }

    @Test(arguments: Backend.allCases) func aRemovedTailAndHeadIsCaughtOnlyByAnAnchor(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        let anchor = try #require(try await store.auditHead())
        let entries = try await store.auditLog(afterSeq: 0, limit: 10)
        try await raw.tamper(["DELETE FROM audit_log WHERE seq >= 4", "UPDATE audit_head SET seq = 3, hash = '\(entries[2].hash)'"])
        // Consistent on its own: this is the documented limit without an anchor.
        #expect(try await store.verifyAudit(anchor: nil) == .intact(entries: 3, head: AuditHead(seq: 3, hash: entries[2].hash)))
        #expect(try await store.verifyAudit(anchor: anchor) == .broken(seq: 5, problem: .anchorMismatch(anchor: anchor, found: nil)))
    }

    @Test(arguments: Backend.allCases) func aDeletedHeadRecordIsNamed(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        let head = try #require(try await store.auditHead())
        try await raw.tamper(["DELETE FROM audit_head"])
        #expect(try await store.verifyAudit(anchor: nil) == .broken(seq: 5, problem: .headMissing(last: head)))
    }

    @Test(arguments: Backend.allCases) func reorderedEntriesAreCaughtByTheirHashes(_ backend: Backend) async throws {
        let (_, store, raw) = try await storeWithFiveEntries(backend)
        // Swap entries 2 and 3 (through a free seq), each keeping its own hash.
        try await raw.tamper([
            "UPDATE audit_log SET seq = 100 WHERE seq = 2",
            "UPDATE audit_log SET seq = 2 WHERE seq = 3",
            "UPDATE audit_log SET seq = 3 WHERE seq = 100",
        ])
        let result = try await store.verifyAudit(anchor: nil)
        guard case .broken(2, .hashMismatch) = result else {
            Issue.record("expected a hash mismatch at entry 2, got \(result)")
            return
        }
    }

    @Test(arguments: Backend.allCases) func concurrentAppendsFromSeveralStoresMakeOneChain(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        var stores: [any StateStore] = []
        for _ in 0..<4 { stores.append(try await fixture.open()) }
        let appenders = stores
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, store) in appenders.enumerated() {
                group.addTask {
                    for step in 0..<15 {
                        _ = try await store.appendAudit(AuditRecord(actor: "op\(index)@host", action: "apply", subject: "eu-west", detail: JSONDetail(["step": "\(step)"])))
                    }
                }
            }
            try await group.waitForAll()
        }
        let entries = try await stores[0].auditLog(afterSeq: 0, limit: 1000)
        #expect(entries.map(\.seq) == Array(1...60))
        #expect(Set(entries.map(\.actor)).count == 4)
        #expect(try await stores[0].verifyAudit(anchor: nil) == .intact(entries: 60, head: AuditHead(seq: 60, hash: entries[59].hash)))
    }
}
