import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

/// What a step does after its analysis, with the component's inconclusive handling.
@Suite struct CanaryStepTests {
    static func verdict(_ requests: Int, canary: SlotBehaviour = SlotBehaviour()) -> CanaryVerdict {
        var log = SyntheticAccessLog(seed: 21)
        log.requests = requests
        log.canary = canary
        return log.analyze(CanaryAnalyzerTests.settings)
    }

    @Test func passAdvancesAndFailRollsBack() {
        #expect(CanaryStepOutcome.after(Self.verdict(2_000), waitedPastPause: .zero, handling: InconclusiveHandling()) == .advance)
        let bad = Self.verdict(2_000, canary: SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300))
        guard case .rollBack(.analysisFailed(let checks)) = CanaryStepOutcome.after(bad, waitedPastPause: .zero, handling: InconclusiveHandling()) else {
            Issue.record("a failed analysis must roll back")
            return
        }
        #expect(checks.map(\.kind) == [.errors, .latency])
        let reason = CanaryStepFailure.analysisFailed(checks).description.split(separator: "\n")
        #expect(reason.count == 2 && reason[0].hasPrefix("errors: error rate ") && reason[1].hasPrefix("latency: p99 "), "\(reason)")
        #expect(reason[1].contains("Mann-Whitney U = ") && reason[1].hasSuffix("< α 0.025"), "\(reason)")
    }

    @Test func inconclusiveWaitsUpToTheLimitThenFailsOrHolds() {
        let thin = Self.verdict(100)
        guard case .inconclusive(let reason) = thin.decision else {
            Issue.record("expected inconclusive: \(thin.text)")
            return
        }
        let handling = InconclusiveHandling(wait: .seconds(300), then: .hold)
        #expect(CanaryStepOutcome.after(thin, waitedPastPause: .zero, handling: handling) == .waitLonger(milliseconds: 300_000))
        #expect(CanaryStepOutcome.after(thin, waitedPastPause: .seconds(120), handling: handling) == .waitLonger(milliseconds: 180_000))
        #expect(CanaryStepOutcome.after(thin, waitedPastPause: .seconds(300), handling: handling) == .hold(reason))
        let failing = InconclusiveHandling(wait: .seconds(300), then: .fail)
        #expect(CanaryStepOutcome.after(thin, waitedPastPause: .seconds(301), handling: failing) == .rollBack(.stillInconclusive(reason, waitedMilliseconds: 301_000)))
        #expect(CanaryStepOutcome.after(thin, waitedPastPause: .zero, handling: InconclusiveHandling(wait: .zero, then: .fail))
                == .rollBack(.stillInconclusive(reason, waitedMilliseconds: 0)))
    }
}
