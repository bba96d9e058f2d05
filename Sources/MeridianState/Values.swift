import Foundation

/// A point in time as the state store keeps it: whole milliseconds since
/// 1970-01-01 UTC. Every time the store hands out has been through this
/// rounding, so a value read back compares equal to the one written.
public struct StateTime: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public let rawValue: Int64

    public init(rawValue: Int64) { self.rawValue = rawValue }

    /// Rounds `date` to the nearest millisecond.
    public init(_ date: Date) {
        self.rawValue = Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    public var date: Date { Date(timeIntervalSince1970: Double(rawValue) / 1000) }

    public static func < (lhs: StateTime, rhs: StateTime) -> Bool { lhs.rawValue < rhs.rawValue }

    /// This time moved by `duration`, rounded to milliseconds.
    public func adding(_ duration: Duration) -> StateTime {
        StateTime(rawValue: rawValue + duration.wholeMilliseconds)
    }

    /// ISO 8601 in UTC with milliseconds, e.g. `2025-03-01T09:30:00.250Z`.
    public var description: String {
        let seconds = Int(floor(Double(rawValue) / 1000))
        let millis = Int(rawValue - Int64(seconds) * 1000)
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
            Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), millis
        )
    }
}

extension Duration {
    /// The duration in whole milliseconds, rounded toward zero.
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// Where the store reads the current time. Tests inject a clock they move
/// by hand so lease expiry is exercised without sleeping.
public struct StateClock: Sendable {
    public let now: @Sendable () -> StateTime

    public init(now: @escaping @Sendable () -> StateTime) { self.now = now }

    /// The system's wall clock.
    public static let system = StateClock { StateTime(Date()) }
}

/// A JSON document kept as the exact text the store writes and hashes.
/// Invariant: `text` is valid JSON (checked at construction); the store never
/// re-encodes it, so its hash is stable across reads.
public struct JSONDetail: Hashable, Codable, Sendable, CustomStringConvertible {
    public let text: String

    /// The empty object, `{}`.
    public static let empty = JSONDetail(unchecked: "{}")

    /// Wraps JSON text, refusing text that does not parse.
    public init(json text: String) throws {
        guard (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil else {
            throw StateStoreError.invalidDetail(text: text)
        }
        self.text = text
    }

    /// Encodes `value` with sorted keys, so equal values give equal text.
    public init<Value: Encodable>(encoding value: Value) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        self.text = String(decoding: data, as: UTF8.self)
    }

    /// A detail made of string fields, the common case for audit entries.
    public init(_ fields: [String: String]) {
        // Encoding a [String: String] cannot fail.
        self = (try? JSONDetail(encoding: fields)) ?? .empty
    }

    init(unchecked text: String) { self.text = text }

    /// Text read back from a store that only ever wrote validated JSON; not
    /// re-checked, so an edited row reaches the audit hash check unchanged.
    public static func stored(_ text: String) -> JSONDetail { JSONDetail(unchecked: text) }

    /// Decodes the detail into `type`.
    public func decode<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    public var description: String { text }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        try self.init(json: try container.decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

/// Who is acting: the operating-system user, the machine and the process.
/// Lease holders and run owners are compared by all three fields.
public struct ProcessIdentity: Hashable, Codable, Sendable, CustomStringConvertible {
    public let user: String
    public let host: String
    public let pid: Int32

    public init(user: String, host: String, pid: Int32) {
        self.user = user
        self.host = host
        self.pid = pid
    }

    /// `user@host`, the form runs and audit entries name their actor by.
    public var actor: String { "\(user)@\(host)" }

    /// `user@host pid N`.
    public var description: String { "\(actor) pid \(pid)" }

    /// The identity of this process.
    public static func current() -> ProcessIdentity {
        ProcessIdentity(user: currentUserName(), host: currentHostName(), pid: getpid())
    }

    static func currentHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "unknown-host" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "unknown-host" : name
    }

    static func currentUserName() -> String {
        if let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name {
            return String(cString: name)
        }
        if let name = ProcessInfo.processInfo.environment["USER"], !name.isEmpty { return name }
        return "uid\(geteuid())"
    }
}

/// Identifies one run; assigned by the store, increasing.
public struct RunID: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public static func < (lhs: RunID, rhs: RunID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "run \(rawValue)" }
}

/// Identifies one journal entry; assigned by the store, increasing.
public struct JournalEntryID: RawRepresentable, Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public static func < (lhs: JournalEntryID, rhs: JournalEntryID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "journal entry \(rawValue)" }
}
