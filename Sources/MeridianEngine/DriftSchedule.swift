import Foundation
import MeridianBasics

/// When a repeating drift job runs next: every `interval`, shifted by a
/// random jitter of up to `jitter` × interval either way, so that many
/// control planes started together do not look at their hosts in lockstep.
public struct DriftSchedule: Sendable, Equatable {
    public var interval: Duration
    /// A fraction of the interval, 0…0.5.
    public var jitter: Double

    public init(interval: Duration, jitter: Double = 0.1) {
        self.interval = interval
        self.jitter = min(max(jitter, 0), 0.5)
    }

    /// The pause before the next run, given how long the last run took; never negative.
    public func pause<R: RandomNumberGenerator>(after elapsed: Duration, using rng: inout R) -> Duration {
        let seconds = interval.seconds
        let shift = jitter > 0 ? Double.random(in: -jitter...jitter, using: &rng) * seconds : 0
        let pause = seconds + shift - elapsed.seconds
        return .milliseconds(Int64(max(0, pause) * 1000))
    }

    /// Runs `body` now and then again after each pause, one run at a time,
    /// until the task is cancelled (SIGTERM/SIGINT in the CLI). A cancelled
    /// pause ends the loop at once; a cancelled run ends it when the run returns.
    public func repeatUntilCancelled(_ body: @Sendable () async -> Void) async {
        var rng = SystemRandomNumberGenerator()
        let clock = ContinuousClock()
        while !Task.isCancelled {
            let start = clock.now
            await body()
            if Task.isCancelled { break }
            let pause = self.pause(after: clock.now - start, using: &rng)
            do { try await Task.sleep(for: pause) } catch { break }
        }
    }
}
