import Foundation

/// The SSH sessions one command keeps open, one per host, so every phase of
/// the command (observing, locking, changing, unlocking) reuses the
/// connection the first one opened instead of paying the handshake again.
/// Invariant: at most one pooled session per host; a session that broke or
/// whose server went away is dropped and the next use opens a new one; the
/// command that made the pool closes it at its end (`closeAll`).
public final class SSHSessionPool: @unchecked Sendable {
    private let lock = NSLock()
    private var open: [Key: SSHSession] = [:]

    /// A host as the fleet names it: its region and its name there.
    private struct Key: Hashable {
        var region: String
        var host: String
        init(_ endpoint: SSHEndpoint) { (region, host) = (endpoint.region, endpoint.hostName) }
    }

    public init() {}

    /// The host's open session when it still looks alive, else a new one (kept for later uses).
    public func session(for endpoint: SSHEndpoint) async throws -> SSHSession {
        let id = Key(endpoint)
        if let existing = lock.withLock({ open[id] }) {
            if await existing.looksAlive() { return existing }
            await drop(existing)
        }
        let session = try await SSHSession.open(endpoint)
        let kept = lock.withLock { () -> SSHSession in
            if let raced = open[id] { return raced }
            open[id] = session
            return session
        }
        if kept !== session { await session.close() }
        return kept
    }

    /// Forgets and closes `session` when it is the one pooled for its host
    /// (after it broke, so the next use reconnects).
    public func drop(_ session: SSHSession) async {
        let id = Key(session.endpoint)
        lock.withLock { if open[id] === session { open[id] = nil } }
        await session.close()
    }

    /// How many sessions are open now.
    public var count: Int { lock.withLock { open.count } }

    public func closeAll() async {
        let all = lock.withLock { () -> [SSHSession] in
            defer { open.removeAll() }
            return Array(open.values)
        }
        for session in all { await session.close() }
    }
}
