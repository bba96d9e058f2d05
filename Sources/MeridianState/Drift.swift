import Foundation

/// One difference a drift run saw on a host. `kind` is the engine's drift
/// kind name (the store keeps it as text so the engine owns the closed enum);
/// `subject` names the thing that differs, e.g. a file path or a component.
public struct DriftObservation: Hashable, Codable, Sendable {
    public var kind: String
    public var subject: String
    public var detail: JSONDetail

    public init(kind: String, subject: String, detail: JSONDetail = .empty) {
        self.kind = kind
        self.subject = subject
        self.detail = detail
    }
}

/// What a drift run learned about one host.
public struct HostDriftReport: Hashable, Codable, Sendable {
    /// Whether the host could be looked at. Only a host that was examined can
    /// clear its earlier findings: an unreachable host proves nothing.
    public enum Status: Hashable, Codable, Sendable {
        case examined(findings: [DriftObservation])
        case unreachable(reason: String)
    }

    public var region: String
    public var host: String
    public var status: Status

    public init(region: String, host: String, status: Status) {
        self.region = region
        self.host = host
        self.status = status
    }
}

/// One episode of one finding: from the first drift run that saw it to the
/// first examining run that no longer did. The identity of a finding is
/// (region, host, kind, subject); at most one episode per identity is open
/// (not cleared) at a time, and a finding that comes back after clearing
/// opens a new episode.
public struct DriftFindingRecord: Hashable, Codable, Sendable {
    public let id: Int64
    public let region: String
    public let host: String
    public let kind: String
    public let subject: String
    /// The detail from the newest run that saw it.
    public let detail: JSONDetail
    public let firstSeenAt: StateTime
    public let firstSeenRun: RunID
    public let lastSeenAt: StateTime
    public let lastSeenRun: RunID
    public let clearedAt: StateTime?
    public let clearedRun: RunID?

    public var isOpen: Bool { clearedAt == nil }

    public init(
        id: Int64, region: String, host: String, kind: String, subject: String, detail: JSONDetail,
        firstSeenAt: StateTime, firstSeenRun: RunID, lastSeenAt: StateTime, lastSeenRun: RunID,
        clearedAt: StateTime?, clearedRun: RunID?
    ) {
        self.id = id
        self.region = region
        self.host = host
        self.kind = kind
        self.subject = subject
        self.detail = detail
        self.firstSeenAt = firstSeenAt
        self.firstSeenRun = firstSeenRun
        self.lastSeenAt = lastSeenAt
        self.lastSeenRun = lastSeenRun
        self.clearedAt = clearedAt
        self.clearedRun = clearedRun
    }
}

/// How one recorded drift run changed the findings.
public struct DriftDelta: Hashable, Codable, Sendable {
    /// Findings this run saw for the first time (new episodes).
    public let appeared: [DriftFindingRecord]
    /// Findings that were already open and were seen again.
    public let persisting: [DriftFindingRecord]
    /// Findings this run cleared: examined hosts no longer show them.
    public let cleared: [DriftFindingRecord]

    public init(appeared: [DriftFindingRecord], persisting: [DriftFindingRecord], cleared: [DriftFindingRecord]) {
        self.appeared = appeared
        self.persisting = persisting
        self.cleared = cleared
    }
}
