import Foundation

/// A region's lease: the right to change that region, held by one process
/// until `expiresAt`. Invariant: `acquiredAt <= renewedAt < expiresAt`.
public struct Lease: Hashable, Codable, Sendable, CustomStringConvertible {
    public let region: String
    public let holder: ProcessIdentity
    /// The run that took the lease, when there was one.
    public let run: RunID?
    public let acquiredAt: StateTime
    public let renewedAt: StateTime
    public let expiresAt: StateTime

    public init(region: String, holder: ProcessIdentity, run: RunID?, acquiredAt: StateTime, renewedAt: StateTime, expiresAt: StateTime) {
        self.region = region
        self.holder = holder
        self.run = run
        self.acquiredAt = acquiredAt
        self.renewedAt = renewedAt
        self.expiresAt = expiresAt
    }

    /// True once `now` has reached the expiry: anyone may take the lease over.
    public func isExpired(at now: StateTime) -> Bool { now >= expiresAt }

    /// `region eu-west is held by ana@ci-3 pid 4242 (run 17) since …, until …`
    public var description: String {
        let runText = run.map { " (\($0))" } ?? ""
        return "region \(region) is held by \(holder)\(runText) since \(acquiredAt), until \(expiresAt)"
    }
}

/// Why leases could not be taken: the regions someone else holds, unexpired.
/// Invariant: `held` is not empty and sorted by region.
public struct LeaseConflict: Hashable, Codable, Sendable, CustomStringConvertible {
    /// Every region that was asked for.
    public let requested: [String]
    /// The leases in the way.
    public let held: [Lease]

    public init(requested: [String], held: [Lease]) {
        self.requested = requested
        self.held = held.sorted { $0.region < $1.region }
    }

    public var description: String {
        let lines = held.map(\.description).joined(separator: "; ")
        let regions = held.map(\.region).joined(separator: " ")
        return "\(lines). Wait for that run to finish, or, if its process is gone, "
            + "wait for the lease to expire or release it with `meridian unlock \(regions)`."
    }
}
