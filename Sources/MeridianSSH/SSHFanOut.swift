/// The outcome of one host's part of a fan-out, in the order hosts were given.
public struct HostOutcome<Value: Sendable>: Sendable {
    public let endpoint: SSHEndpoint
    public let result: Result<Value, any Error>
    /// Time from the start of this host's connect to the end of its body.
    public let duration: Duration
}

/// Bounded parallel work over many hosts. Invariant: one session per host per
/// run, opened once, reused by every step of `body` and closed at the end
/// (or, with a `pool`, taken from it and left open in it for the next phase);
/// at most `parallelism` sessions are open at once; a host's failure (dead,
/// slow, refused) is its own outcome and never delays the others beyond that
/// host's own timeouts, because each session blocks only its own queue.
public enum SSHFanOut {
    public static let defaultParallelism = 32
    /// Each session in flight can hold one dispatch worker thread while it
    /// waits on its socket; libdispatch caps those at 255 per process, so the
    /// width is capped well below that.
    public static let maximumParallelism = 128

    public static func run<Value: Sendable>(
        _ endpoints: [SSHEndpoint],
        parallelism: Int = defaultParallelism,
        pool: SSHSessionPool? = nil,
        _ body: @escaping @Sendable (SSHSession) async throws -> Value
    ) async -> [HostOutcome<Value>] {
        let width = min(max(1, parallelism), maximumParallelism)
        return await withTaskGroup(of: (Int, HostOutcome<Value>).self) { group in
            var outcomes = [HostOutcome<Value>?](repeating: nil, count: endpoints.count)
            var next = 0
            func launch() {
                let index = next
                let endpoint = endpoints[index]
                next += 1
                group.addTask {
                    let start = ContinuousClock.now
                    let result: Result<Value, any Error>
                    do {
                        let session: SSHSession
                        if let pool { session = try await pool.session(for: endpoint) } else { session = try await SSHSession.open(endpoint) }
                        do {
                            result = .success(try await body(session))
                        } catch {
                            result = .failure(error)
                        }
                        if let pool {
                            if case .failure = result, await !session.looksAlive() { await pool.drop(session) }
                        } else {
                            await session.close()
                        }
                    } catch {
                        result = .failure(error)
                    }
                    return (index, HostOutcome(endpoint: endpoint, result: result, duration: ContinuousClock.now - start))
                }
            }
            while next < min(width, endpoints.count) { launch() }
            while let (index, outcome) = await group.next() {
                outcomes[index] = outcome
                if next < endpoints.count { launch() }
            }
            return outcomes.compactMap { $0 }
        }
    }
}
