import Foundation

/// Whether a store can tell that a lease's holder is still connected to it.
/// SQLite cannot (`unknown`); PostgreSQL ties each lease to its holder's
/// database session, which ends when the holder's process or connection does.
public enum HolderPresence: Hashable, Sendable {
    case unknown
    case connected
    case gone
}

/// Why a lease passed from one holder to another without a release.
public enum LeaseTakeoverCause: String, Hashable, Sendable {
    /// The holder stopped renewing it and it reached its expiry.
    case expired
    /// The holder's database session ended (its process died or its connection dropped).
    case holderDisconnected
}

/// What acquiring one region's lease does, decided from the lease as stored.
public enum LeaseDecision: Hashable, Sendable {
    /// Nobody held it: a new lease.
    case take(Lease)
    /// The holder asked again: the same lease, extended.
    case extend(Lease)
    /// Someone else held it but is gone or late: a new lease, on the record.
    case takeOver(Lease, previous: Lease, cause: LeaseTakeoverCause)
    /// Someone else holds it.
    case refuse(Lease)

    /// The lease to store, nil for a refusal.
    public var granted: Lease? {
        switch self {
        case .take(let lease), .extend(let lease), .takeOver(let lease, _, _): return lease
        case .refuse: return nil
        }
    }
}

/// The lease rules every backend shares: who may take, extend, renew and
/// release a region's lease, and what goes on the audit record. A store only
/// reads the current leases (and, where it can, whether their holders are
/// still connected) inside one serialized transaction, calls these, and
/// writes the outcome.
public enum LeaseRules {
    /// Regions as a lease request takes them: sorted, without duplicates.
    public static func normalized(_ regions: [String]) -> [String] {
        Array(Set(regions)).sorted()
    }

    /// One region: free, the holder's own, expired or disconnected is granted; anything else refused.
    public static func decide(
        region: String, current: Lease?, presence: HolderPresence,
        holder: ProcessIdentity, run: RunID?, now: StateTime, ttl: Duration
    ) -> LeaseDecision {
        let expires = now.adding(ttl)
        let fresh = Lease(region: region, holder: holder, run: run, acquiredAt: now, renewedAt: now, expiresAt: expires)
        guard let current else { return .take(fresh) }
        if current.holder == holder {
            return .extend(Lease(region: region, holder: holder, run: run, acquiredAt: current.acquiredAt, renewedAt: now, expiresAt: expires))
        }
        if current.isExpired(at: now) { return .takeOver(fresh, previous: current, cause: .expired) }
        switch presence {
        case .gone: return .takeOver(fresh, previous: current, cause: .holderDisconnected)
        case .connected, .unknown: return .refuse(current)
        }
    }

    /// All regions or none: the decisions to carry out, or the conflict naming every lease in the way.
    public static func acquire(
        regions: [String], current: [String: Lease], presence: [String: HolderPresence],
        holder: ProcessIdentity, run: RunID?, now: StateTime, ttl: Duration
    ) -> Result<[LeaseDecision], StateStoreError> {
        precondition(ttl > .zero, "a lease needs a positive time to live")
        let wanted = normalized(regions)
        let decisions = wanted.map { region in
            decide(region: region, current: current[region], presence: presence[region] ?? .unknown,
                   holder: holder, run: run, now: now, ttl: ttl)
        }
        let refused = decisions.compactMap { decision -> Lease? in
            if case .refuse(let lease) = decision { return lease }
            return nil
        }
        if !refused.isEmpty { return .failure(.leaseHeld(LeaseConflict(requested: wanted, held: refused))) }
        return .success(decisions)
    }

    /// Renewal keeps a lease the holder still holds — even an expired one
    /// nobody took over yet — and loses it otherwise.
    public static func renew(region: String, current: Lease?, holder: ProcessIdentity, now: StateTime, ttl: Duration) -> Result<Lease, StateStoreError> {
        precondition(ttl > .zero, "a lease needs a positive time to live")
        guard let current, current.holder == holder else {
            return .failure(.leaseLost(region: region, holder: holder, current: current))
        }
        return .success(Lease(region: region, holder: holder, run: current.run, acquiredAt: current.acquiredAt, renewedAt: now, expiresAt: now.adding(ttl)))
    }

    /// Whether `holder` may release the stored lease (only its own).
    public static func mayRelease(_ current: Lease?, holder: ProcessIdentity) -> Bool {
        current?.holder == holder
    }

    /// The audit entry a takeover writes, in the same transaction as the lease.
    public static func takeoverRecord(_ lease: Lease, previous: Lease, cause: LeaseTakeoverCause) -> AuditRecord {
        var fields = [
            "previousHolder": previous.holder.description,
            "previousRun": previous.run.map { String($0.rawValue) } ?? "",
            "previousAcquiredAt": previous.acquiredAt.description,
            "expiredAt": previous.expiresAt.description,
            "run": lease.run.map { String($0.rawValue) } ?? "",
            "holder": lease.holder.description,
        ]
        switch cause {
        case .expired: break
        case .holderDisconnected: fields["cause"] = "the holder's database session ended"
        }
        return AuditRecord(actor: lease.holder.actor, action: .leaseTakeover, subject: lease.region, detail: JSONDetail(fields))
    }

    /// The audit entry `meridian unlock` writes, also when there was no lease.
    public static func forceReleaseRecord(region: String, removed: Lease?, by actor: String, reason: String, now: StateTime) -> AuditRecord {
        var fields = ["reason": reason, "released": removed == nil ? "none" : "lease"]
        if let removed {
            fields["holder"] = removed.holder.description
            fields["run"] = removed.run.map { String($0.rawValue) } ?? ""
            fields["acquiredAt"] = removed.acquiredAt.description
            fields["expiresAt"] = removed.expiresAt.description
            fields["expired"] = removed.isExpired(at: now) ? "yes" : "no"
        }
        return AuditRecord(actor: actor, action: .leaseForceRelease, subject: region, detail: JSONDetail(fields))
    }
}
