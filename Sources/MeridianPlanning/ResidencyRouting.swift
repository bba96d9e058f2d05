import Foundation
import MeridianBasics
import MeridianModel

/// For each data jurisdiction, the regions allowed to process it in the order
/// requests are sent to them. Invariant: every region listed under an entry
/// lies in one of that entry's `allowed` jurisdictions, appears once, and
/// entries are sorted by data jurisdiction.
public struct RoutingTable: Sendable, Equatable, Codable {
    public static let formatVersion = 1

    /// The routes of one data jurisdiction.
    public struct Entry: Sendable, Equatable, Codable {
        public var data: Jurisdiction
        /// The jurisdictions allowed to process the data, in preference order:
        /// the data's own jurisdiction first when it is allowed, then the
        /// others in the order the residency rule lists them.
        public var allowed: [Jurisdiction]
        /// Every region of an allowed jurisdiction: jurisdictions in `allowed`
        /// order, and within one by priority, then by name.
        public var regions: [RoutedRegion]

        public init(data: Jurisdiction, allowed: [Jurisdiction], regions: [RoutedRegion]) {
            self.data = data
            self.allowed = allowed
            self.regions = regions
        }

        /// Whether a region of this name may process the data.
        public func admits(region name: String) -> Bool { regions.contains { $0.name == name } }
    }

    public var entries: [Entry]
    /// The jurisdiction a request without the residency header is treated as;
    /// nil refuses such requests.
    public var assumeWhenMissing: Jurisdiction?

    public init(entries: [Entry], assumeWhenMissing: Jurisdiction? = nil) {
        self.entries = entries.sorted { $0.data < $1.data }
        self.assumeWhenMissing = assumeWhenMissing
    }

    public func entry(for data: Jurisdiction) -> Entry? { entries.first { $0.data == data } }

    /// The same table with only the entry of `data` (none when it has none).
    public func restricted(to data: Jurisdiction) -> RoutingTable {
        RoutingTable(entries: entries.filter { $0.data == data }, assumeWhenMissing: assumeWhenMissing)
    }

    /// What the gateway of region `local` does with a request whose data is of
    /// jurisdiction `data` (nil: the request carries no residency header),
    /// given the regions that are healthy now.
    ///
    /// The request is served locally when the local region may process the
    /// data and is healthy; otherwise it goes to the first healthy region of
    /// the entry, in table order; otherwise it is refused. It is never sent to
    /// a region the entry does not list. A region the table does not know is
    /// treated as one that may not process anything: it can only forward.
    public func decide(dataJurisdiction data: Jurisdiction?, at local: String, healthy: Set<String>) -> RoutingDecision {
        guard let jurisdiction = data ?? assumeWhenMissing else { return .refuse(.missingHeader) }
        guard let entry = entry(for: jurisdiction) else { return .refuse(.unknownJurisdiction(jurisdiction.code)) }
        if entry.admits(region: local) && healthy.contains(local) { return .serveLocally }
        if let target = entry.regions.first(where: { $0.name != local && healthy.contains($0.name) }) {
            return .forward(to: target.name)
        }
        return .refuse(.noHealthyAllowedRegion(jurisdiction))
    }

    /// `decide` for the raw header value as a gateway receives it. Spaces and
    /// tabs around the value are not part of it (HTTP's optional whitespace,
    /// which nginx strips too); then absent or empty is a missing header, and
    /// anything that is not exactly a jurisdiction code (`EU`, not `eu` or
    /// `E U`) is unknown, because guessing would route data on a value nobody
    /// declared.
    public func decide(header raw: String?, at local: String, healthy: Set<String>) -> RoutingDecision {
        let header = raw.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t")) }
        guard let header, !header.isEmpty else { return decide(dataJurisdiction: nil, at: local, healthy: healthy) }
        guard let jurisdiction = Jurisdiction(header) else { return .refuse(.unknownJurisdiction(header)) }
        return decide(dataJurisdiction: jurisdiction, at: local, healthy: healthy)
    }

    /// `decide` for every line of the residency header a request carries, in
    /// order: lines whose values differ after trimming are a conflict (the
    /// client said two things about where its data may go, and picking one
    /// would route on a guess), so the request is refused; equal ones are one.
    public func decide(headerLines lines: [String], at local: String, healthy: Set<String>) -> RoutingDecision {
        let values = lines.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t")) }
        if let first = values.first, let other = values.first(where: { $0 != first }) { return .refuse(.conflictingHeaders(first, other)) }
        return decide(header: lines.first, at: local, healthy: healthy)
    }

    private enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case missing
        case routes
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let version = try container.decode(Int.self, forKey: .formatVersion)
        guard version == RoutingTable.formatVersion else {
            throw DecodingError.dataCorruptedError(forKey: .formatVersion, in: container,
                debugDescription: "routing table format \(version) is not supported; this meridian reads format \(RoutingTable.formatVersion)")
        }
        let missing = try container.decode(MissingRule.self, forKey: .missing)
        self.init(entries: try container.decode([Entry].self, forKey: .routes), assumeWhenMissing: missing.assumed)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(RoutingTable.formatVersion, forKey: .formatVersion)
        try container.encode(MissingRule(assumeWhenMissing), forKey: .missing)
        try container.encode(entries, forKey: .routes)
    }

    /// The table as canonical JSON, in the same shape as its Codable form:
    /// `{"format_version":1,"missing":{"action":"refuse"},"routes":[…]}`.
    public var json: CanonicalJSON {
        [
            "format_version": .integer(RoutingTable.formatVersion),
            "missing": MissingRule(assumeWhenMissing).json,
            "routes": .array(entries.map { entry in
                [
                    "data": .string(entry.data.code),
                    "allowed": .array(entry.allowed.map { .string($0.code) }),
                    "regions": .array(entry.regions.map { ["name": .string($0.name), "jurisdiction": .string($0.jurisdiction.code)] }),
                ]
            }),
        ]
    }

    /// `missing` in the JSON forms: `{"action":"refuse"}` or
    /// `{"action":"assume","jurisdiction":"EU"}`.
    struct MissingRule: Codable {
        var action: String
        var jurisdiction: Jurisdiction?

        init(_ assumed: Jurisdiction?) {
            action = assumed == nil ? "refuse" : "assume"
            jurisdiction = assumed
        }

        init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            action = try container.decode(String.self, forKey: .action)
            jurisdiction = try container.decodeIfPresent(Jurisdiction.self, forKey: .jurisdiction)
            switch (action, jurisdiction) {
            case ("refuse", nil), ("assume", .some): break
            default:
                throw DecodingError.dataCorruptedError(forKey: .action, in: container,
                    debugDescription: "missing must be {\"action\":\"refuse\"} or {\"action\":\"assume\",\"jurisdiction\":CODE}")
            }
        }

        var assumed: Jurisdiction? { action == "assume" ? jurisdiction : nil }

        var json: CanonicalJSON {
            guard let jurisdiction else { return ["action": "refuse"] }
            return ["action": "assume", "jurisdiction": .string(jurisdiction.code)]
        }
    }
}

/// A region as the routing table lists it: its name and jurisdiction.
public struct RoutedRegion: Sendable, Hashable, Codable {
    public var name: String
    public var jurisdiction: Jurisdiction

    public init(name: String, jurisdiction: Jurisdiction) {
        self.name = name
        self.jurisdiction = jurisdiction
    }
}

/// What a regional gateway does with one request. Invariant: `forward` only
/// ever names a region the routing table allows for the request's data.
public enum RoutingDecision: Sendable, Hashable, CustomStringConvertible {
    /// The local region may process the data and is healthy.
    case serveLocally
    /// Sent to this region, the first healthy allowed one in table order.
    case forward(to: String)
    /// Refused with the fleet's refuse status (fail closed).
    case refuse(RefusalReason)

    public var description: String {
        switch self {
        case .serveLocally: return "serve locally"
        case .forward(let region): return "forward to \(region)"
        case .refuse(let reason): return "refuse: \(reason)"
        }
    }
}

/// Why a gateway refuses a request; each has its own reason text so that a
/// client can tell them apart.
public enum RefusalReason: Sendable, Hashable, CustomStringConvertible {
    /// The request has no residency header and the fleet assumes nothing.
    case missingHeader
    /// The header names a jurisdiction with no residency rule (or is not a code at all).
    case unknownJurisdiction(String)
    /// No region allowed to process the data is healthy.
    case noHealthyAllowedRegion(Jurisdiction)
    /// Two lines of the residency header say different things (the first two that differ, trimmed).
    case conflictingHeaders(String, String)

    /// A short machine-readable token, sent by gateways with the refusal.
    public var token: String {
        switch self {
        case .missingHeader: return "missing-residency"
        case .unknownJurisdiction: return "unknown-jurisdiction"
        case .noHealthyAllowedRegion: return "no-healthy-region"
        case .conflictingHeaders: return "conflicting-jurisdictions"
        }
    }

    public var description: String {
        switch self {
        case .missingHeader: return "the request carries no residency header"
        case .unknownJurisdiction(let code): return "no residency rule covers data of jurisdiction \"\(code)\""
        case .noHealthyAllowedRegion(let data): return "no region allowed to process \(data) data is healthy"
        case .conflictingHeaders(let first, let second): return "the request's residency header lines differ (\"\(first)\" and \"\(second)\")"
        }
    }
}
