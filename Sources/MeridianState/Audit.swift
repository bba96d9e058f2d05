import Foundation
import MeridianBasics

/// The name of an audited action. Open-ended on purpose — every layer adds
/// its own — but the ones the store writes itself are named here.
public struct AuditAction: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    /// An operator released a region's lease by hand (`meridian unlock`).
    public static let leaseForceRelease: AuditAction = "lease.force-release"
    /// A run took over a lease whose holder let it expire.
    public static let leaseTakeover: AuditAction = "lease.takeover"
    /// A run marked an earlier, abandoned run as interrupted.
    public static let runInterrupted: AuditAction = "run.interrupted"
    /// A rollout moved to its next phase (detail: from, to, the effect, values).
    public static let rolloutTransition: AuditAction = "rollout.transition"
    /// An operator asked a rollout to promote, abort or roll back.
    public static let rolloutCommand: AuditAction = "rollout.command"
}

/// What a caller asks to append to the audit log.
public struct AuditRecord: Hashable, Codable, Sendable {
    /// `user@host`.
    public var actor: String
    public var action: AuditAction
    /// What the action was applied to, e.g. a region or `region/host`.
    public var subject: String
    public var detail: JSONDetail

    public init(actor: String, action: AuditAction, subject: String, detail: JSONDetail = .empty) {
        self.actor = actor
        self.action = action
        self.subject = subject
        self.detail = detail
    }
}

/// One entry of the hash-chained audit log. Invariants: `seq` counts from 1
/// with no gaps; `prevHash` is the `hash` of entry `seq - 1` (or
/// `AuditEntry.genesisHash` for entry 1); `hash` is
/// `AuditEntry.hash(seq:time:actor:action:subject:detail:prevHash:)`.
public struct AuditEntry: Hashable, Codable, Sendable {
    public let seq: Int64
    public let time: StateTime
    public let actor: String
    public let action: AuditAction
    public let subject: String
    public let detail: JSONDetail
    public let prevHash: String
    public let hash: String

    public init(seq: Int64, time: StateTime, actor: String, action: AuditAction, subject: String, detail: JSONDetail, prevHash: String, hash: String) {
        self.seq = seq
        self.time = time
        self.actor = actor
        self.action = action
        self.subject = subject
        self.detail = detail
        self.prevHash = prevHash
        self.hash = hash
    }

    /// The `prevHash` of the first entry: 64 zeros.
    public static let genesisHash = String(repeating: "0", count: 64)

    /// The bytes an entry's hash covers. Each field is written as its UTF-8
    /// byte count, a colon, the bytes and a newline, after a version line, so
    /// no two different entries serialize alike (a field cannot leak into
    /// its neighbour) and anyone can recompute the hash outside meridian.
    public static func canonicalBytes(
        seq: Int64, time: StateTime, actor: String, action: AuditAction, subject: String, detail: JSONDetail, prevHash: String
    ) -> Data {
        var out = Data("meridian-audit-v1\n".utf8)
        for field in [String(seq), String(time.rawValue), actor, action.rawValue, subject, detail.text, prevHash] {
            let bytes = Data(field.utf8)
            out.append(contentsOf: Array("\(bytes.count):".utf8))
            out.append(bytes)
            out.append(0x0A)
        }
        return out
    }

    /// The SHA-256 (lowercase hex) of the canonical bytes.
    public static func hash(
        seq: Int64, time: StateTime, actor: String, action: AuditAction, subject: String, detail: JSONDetail, prevHash: String
    ) -> String {
        SHA256.hex(canonicalBytes(seq: seq, time: time, actor: actor, action: action, subject: subject, detail: detail, prevHash: prevHash))
    }

    /// The hash this entry's fields call for; differs from `hash` when the row was edited.
    public var computedHash: String {
        AuditEntry.hash(seq: seq, time: time, actor: actor, action: action, subject: subject, detail: detail, prevHash: prevHash)
    }
}

/// The newest entry of the audit log as a (seq, hash) pair. The store keeps
/// it in a separate row updated with every append so a removed tail shows;
/// copied somewhere else (a CI log, a commit) it anchors the chain against
/// someone who rewrites the whole file.
public struct AuditHead: Hashable, Codable, Sendable, CustomStringConvertible {
    public let seq: Int64
    public let hash: String

    public init(seq: Int64, hash: String) {
        self.seq = seq
        self.hash = hash
    }

    public var description: String { "entry \(seq) \(hash)" }
}

/// What is wrong at the first bad place in the audit log.
public enum AuditProblem: Hashable, Codable, Sendable {
    /// Entries `from...through` are not there: deleted rows (or, when `from`
    /// is 1, a deleted beginning).
    case missingEntries(from: Int64, through: Int64)
    /// The entry's fields no longer hash to its stored hash: it was edited.
    case hashMismatch(stored: String, computed: String)
    /// The entry hashes correctly but does not point at the entry before it:
    /// the entry before was edited and re-hashed, or entries were re-chained.
    case brokenLink(expected: String, found: String)
    /// The head record says the log ends at `head`, but it ends at `last`:
    /// the tail was removed or rewritten, or the head record was edited.
    case headMismatch(head: AuditHead, last: AuditHead?)
    /// There are entries but no head record: it was deleted.
    case headMissing(last: AuditHead)
    /// An anchor kept outside the store does not match the entry at its seq.
    case anchorMismatch(anchor: AuditHead, found: String?)
}

/// The result of `StateStore.verifyAudit`. `intact` means every check in
/// docs/state.md passed; `broken` names the first entry that failed.
public enum AuditVerification: Hashable, Codable, Sendable, CustomStringConvertible {
    case intact(entries: Int64, head: AuditHead?)
    case broken(seq: Int64, problem: AuditProblem)

    public var isIntact: Bool {
        switch self {
        case .intact: return true
        case .broken: return false
        }
    }

    public var description: String {
        switch self {
        case .intact(let entries, let head):
            let headText = head.map { ", head \($0)" } ?? ""
            return "audit log intact: \(entries) entries\(headText)"
        case .broken(let seq, let problem):
            switch problem {
            case .missingEntries(let from, let through):
                let range = from == through ? "entry \(from) is" : "entries \(from) through \(through) are"
                return "audit log broken at entry \(seq): \(range) missing (deleted)"
            case .hashMismatch(let stored, let computed):
                return "audit log broken at entry \(seq): its contents hash to \(computed) but it records \(stored) (the entry was edited)"
            case .brokenLink(let expected, let found):
                return "audit log broken at entry \(seq): it follows \(found) but the entry before it hashes to \(expected) (an earlier entry was edited and re-hashed)"
            case .headMismatch(let head, let last):
                let lastText = last.map { "ends at \($0)" } ?? "is empty"
                return "audit log broken at entry \(seq): the head record says \(head) but the log \(lastText) (its tail was removed or rewritten)"
            case .headMissing(let last):
                return "audit log broken at entry \(seq): the head record is missing while the log ends at \(last)"
            case .anchorMismatch(let anchor, let found):
                let foundText = found.map { "holds \($0)" } ?? "is missing"
                return "audit log broken at entry \(seq): the anchor says \(anchor.hash) but the entry \(foundText)"
            }
        }
    }
}
