import Foundation

/// Bounded waiting for tests: a condition is checked until it holds or the
/// bound is reached, so no test can wait forever and every wait that gives
/// up says so (callers pass the result to `#expect` or `#require` with a
/// message naming what never happened).
public enum Poll {
    /// Checks `condition` every `interval`, at most `attempts` times; true as
    /// soon as it holds. Sleeps without holding a thread of the cooperative
    /// pool, which the code under test may need.
    public static func until(
        attempts: Int = 2000,
        every interval: Duration = .milliseconds(10),
        _ condition: () async throws -> Bool
    ) async rethrows -> Bool {
        for _ in 0..<attempts {
            if try await condition() { return true }
            try? await Task.sleep(for: interval)
        }
        return try await condition()
    }

    /// As `until`, for synchronous tests: blocks the calling thread between checks.
    public static func blockingUntil(
        attempts: Int = 2000,
        everyMicroseconds interval: UInt32 = 10_000,
        _ condition: () throws -> Bool
    ) rethrows -> Bool {
        for _ in 0..<attempts {
            if try condition() { return true }
            usleep(interval)
        }
        return try condition()
    }
}

extension Process {
    /// Waits (bounded: `attempts` × 10 ms) for the process to end by itself and
    /// returns true when it did. At the bound it is killed with SIGKILL and
    /// reaped, so its termination status can always be read afterwards.
    public func endsWithin(attempts: Int = 2000) -> Bool {
        let ended = Poll.blockingUntil(attempts: attempts) { !isRunning }
        if !ended { kill(processIdentifier, SIGKILL) }
        waitUntilExit()
        return ended
    }
}
