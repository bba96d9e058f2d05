import Foundation

/// The audit chain's rules every backend shares: how the next entry is
/// chained, and how a walk over the stored entries is judged. A store
/// serializes appends (SQLite's write lock, a PostgreSQL advisory lock) so
/// two appends never read the same head.
public enum AuditChain {
    /// The entry that follows `previous` (nil for an empty log).
    public static func entry(after previous: AuditHead?, _ record: AuditRecord, at time: StateTime) -> AuditEntry {
        let seq = (previous?.seq ?? 0) + 1
        let prevHash = previous?.hash ?? AuditEntry.genesisHash
        let hash = AuditEntry.hash(
            seq: seq, time: time, actor: record.actor, action: record.action,
            subject: record.subject, detail: record.detail, prevHash: prevHash
        )
        return AuditEntry(seq: seq, time: time, actor: record.actor, action: record.action, subject: record.subject,
                          detail: record.detail, prevHash: prevHash, hash: hash)
    }

    /// Walks the log in seq order, one entry at a time, so a store can stream
    /// it from one snapshot; the first problem ends the walk.
    public struct Verifier: Sendable {
        let anchor: AuditHead?
        var expectedSeq: Int64 = 1
        var previousHash = AuditEntry.genesisHash
        var anchorFound: String?

        public init(anchor: AuditHead?) { self.anchor = anchor }

        /// Checks the next entry; a non-nil result is the verdict, stop walking.
        public mutating func check(_ entry: AuditEntry) -> AuditVerification? {
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
            return nil
        }

        /// The verdict once every entry passed, against the stored head record.
        public func finish(head: AuditHead?) -> AuditVerification {
            let count = expectedSeq - 1
            let last = count == 0 ? nil : AuditHead(seq: count, hash: previousHash)
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
}
