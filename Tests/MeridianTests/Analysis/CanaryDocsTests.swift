import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

/// The worked example of a failed step in docs/rollouts.md is output of the
/// analysis, so the doc cannot drift from the code.
@Suite struct CanaryDocsTests {
    /// A 10 % step of two minutes in which the canary answers 5 % of
    /// requests with 503 and adds 300 ms, under the example fleet's thresholds.
    static func failedStep() -> (SyntheticAccessLog, CanaryVerdict) {
        var log = SyntheticAccessLog(seed: 3)
        log.canary = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300)
        return (log, log.analyze(CanaryAnalyzerTests.settings))
    }

    @Test func workedExampleIsWhatTheAnalysisSays() throws {
        let (_, verdict) = Self.failedStep()
        let doc = try String(contentsOf: RepositoryPaths.root.appendingPathComponent("docs/rollouts.md"), encoding: .utf8)
        if ProcessInfo.processInfo.environment["MERIDIAN_PRINT_EXAMPLE"] != nil { print(verdict.text) }
        #expect(doc.contains("```\n" + verdict.text + "```\n"), "docs/rollouts.md should show:\n\(verdict.text)")
    }
}
