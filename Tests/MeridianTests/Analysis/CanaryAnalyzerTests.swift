import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

/// Canary analysis on synthetic access logs: each log is named by its seed,
/// which every failure message prints.
@Suite struct CanaryAnalyzerTests {
    /// The example fleet's inference thresholds.
    static let settings = CanaryAnalysis(maxErrorRate: 0.01, maxP99Latency: .milliseconds(800), minRequests: 50,
                                         maxErrorRateIncrease: 0.005, maxLatencyRatio: 1.5, confidence: 0.95)
    static let seeds: [UInt64] = [1, 2, 3, 17, 42, 2026]

    static func failedKinds(_ verdict: CanaryVerdict) -> [CanaryCheck.Kind] {
        guard case .fail(let checks) = verdict.decision else { return [] }
        return checks.map(\.kind)
    }

    @Test func aGoodCanaryPasses() {
        for seed in Self.seeds {
            let verdict = SyntheticAccessLog(seed: seed).analyze(Self.settings)
            #expect(verdict.decision == .pass, "seed \(seed)\n\(verdict.text)")
            #expect(verdict.canary.requests > 150 && verdict.stable.requests > 1500, "seed \(seed)")
            #expect(verdict.comparedWithStable)
            #expect(verdict.lines.otherComponents == 50)
            #expect(verdict.checks.map(\.kind) == [.errors, .latency])
        }
    }

    @Test func aBadCanaryFailsOnErrorsAndLatency() throws {
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.canary = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300)
            let verdict = log.analyze(Self.settings)
            #expect(Self.failedKinds(verdict) == [.errors, .latency], "seed \(seed)\n\(verdict.text)")
            guard case .fail(let checks) = verdict.decision else { continue }
            let errors = checks[0], latency = checks[1]
            #expect(errors.breaches.contains { if case .errorRate = $0 { true } else { false } }, "seed \(seed)")
            #expect(errors.breaches.contains { if case .errorRateIncrease = $0 { true } else { false } }, "seed \(seed)")
            #expect(latency.breaches.contains { if case .latencyRatio = $0 { true } else { false } }, "seed \(seed)")
            // +300 ms on a 120 ms median stays under the 800 ms p99 limit: the ratio to stable is what breaks.
            #expect(!latency.breaches.contains { if case .p99 = $0 { true } else { false } }, "seed \(seed)\n\(verdict.text)")
            if case .mannWhitneyU(_, let z, let p) = latency.test { #expect(z > 10 && p < 1e-12, "seed \(seed)") }
            else { Issue.record("seed \(seed): latency was not tested with Mann-Whitney U") }
            #expect(errors.test.map { $0.pValue < 0.025 } == true, "seed \(seed)")
        }
    }

    @Test func onlyLatencyOrOnlyErrorsFailsThatCheckAlone() {
        var slow = SyntheticAccessLog(seed: 7)
        slow.canary.addedMilliseconds = 300
        #expect(Self.failedKinds(slow.analyze(Self.settings)) == [.latency])
        var failing = SyntheticAccessLog(seed: 7)
        failing.canary.errorRate = 0.05
        #expect(Self.failedKinds(failing.analyze(Self.settings)) == [.errors])
    }

    @Test func lowTrafficIsInconclusive() {
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.requests = 200 // about 20 reach a 10 % canary, fewer than 50
            log.canary = SlotBehaviour(errorRate: 0.2, addedMilliseconds: 500)
            let verdict = log.analyze(Self.settings)
            guard case .inconclusive(.tooFewRequests(let seen, 50)) = verdict.decision else {
                Issue.record("seed \(seed): expected inconclusive\n\(verdict.text)")
                continue
            }
            #expect(seen == verdict.canary.requests && seen < 50, "seed \(seed)")
            #expect(verdict.checks.isEmpty)
        }
    }

    @Test func requestsInOneShortBurstDoNotFailAGoodCanary() {
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.arrivals = (offset: 30_000, length: 2_000)
            let verdict = log.analyze(Self.settings)
            #expect(verdict.decision == .pass, "seed \(seed)\n\(verdict.text)")
        }
    }

    @Test func aBurstOfStableErrorsDoesNotFailTheCanary() {
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.errorBursts = [Burst(offsetMilliseconds: 40_000, lengthMilliseconds: 15_000, errorRate: 0.6, slots: [.blue])]
            let verdict = log.analyze(Self.settings)
            #expect(verdict.decision == .pass, "seed \(seed)\n\(verdict.text)")
            #expect(verdict.stable.errorRate > 0.05, "seed \(seed)")
        }
    }

    @Test func anIncidentSharedByBothSlotsIsNotTheCanarysFault() {
        // Both slots fail 10 % of requests for 20 s: the canary's error rate
        // breaches max_error_rate, but it is no worse than stable's.
        var breached = 0
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.errorBursts = [Burst(offsetMilliseconds: 50_000, lengthMilliseconds: 20_000, errorRate: 0.1, slots: [.blue, .green])]
            let verdict = log.analyze(Self.settings)
            #expect(verdict.decision == .pass, "seed \(seed)\n\(verdict.text)")
            if verdict.checks.first?.breaches.isEmpty == false { breached += 1 }
        }
        #expect(breached >= Self.seeds.count / 2, "the incident should push most canaries past max_error_rate")
    }

    @Test func aStableSlotWorseThanTheCanaryPasses() {
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.stable = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300)
            let verdict = log.analyze(Self.settings)
            #expect(verdict.decision == .pass, "seed \(seed)\n\(verdict.text)")
        }
    }

    @Test func clientErrorsAreNotCounted() {
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.canary.clientErrorRate = 0.3
            let verdict = log.analyze(Self.settings)
            #expect(verdict.decision == .pass, "seed \(seed)\n\(verdict.text)")
            #expect(Double(verdict.canary.clientErrors) > 0.2 * Double(verdict.canary.requests), "seed \(seed)")
            #expect(verdict.canary.errorRate < 0.01, "seed \(seed)")
        }
    }

    @Test func unparsableLinesAreCountedAndTooManyMakeItInconclusive() {
        var few = SyntheticAccessLog(seed: 5)
        few.garbageLines = 20
        let fine = few.analyze(Self.settings)
        #expect(fine.lines.unparsable == 20 && fine.lines.read == 2_070)
        #expect(fine.decision == .pass, "\(fine.text)")
        var many = SyntheticAccessLog(seed: 5)
        many.garbageLines = 300
        let verdict = many.analyze(Self.settings)
        #expect(verdict.decision == .inconclusive(.unparsableLines(count: 300, of: 2_350)), "\(verdict.text)")
    }

    @Test func failuresPassedOnToStableStillCountAgainstTheCanary() {
        for seed in Self.seeds {
            var log = SyntheticAccessLog(seed: seed)
            log.canary = SlotBehaviour(errorRate: 0.08, passedOnShare: 1)
            let verdict = log.analyze(Self.settings)
            #expect(Self.failedKinds(verdict) == [.errors], "seed \(seed)\n\(verdict.text)")
            #expect(verdict.canary.passedOn == verdict.canary.serverErrors && verdict.canary.passedOn > 5, "seed \(seed)")
            // The stable slot answered those requests: they are its requests too, and successes.
            #expect(verdict.stable.errorRate < 0.01, "seed \(seed)")
        }
    }

    @Test func retriedLinesAreAttributedContactByContact() {
        let text = [
            "1733040001.000\tinference\t127.0.1.1:8102, 127.0.1.2:8101\tblue\t200\t0.400\t0.300, 0.090",
            "1733040002.000\tinference\t127.0.1.1:8102 : 127.0.1.2:8101\tblue\t200\t0.200\t0.100, 0.090",
            "1733040002.500\tinference\t127.0.1.1:8102 : 127.0.1.2:8101\tblue\t200\t0.200\t0.100 : 0.090",
            "1733040003.000\tinference\tinference_upstream\t-\t502\t0.000\t-",
            "1733040004.000\t-\t-\t-\t451\t0.000\t-",
        ].joined(separator: "\n")
        let log = AccessLog(text: text)
        #expect(log.unparsable.map(\.number) == [2], "the second line pairs two groups with one list of times")
        let verdict = CanaryAnalyzer.analyze(log: log, component: "inference", ports: SlotPorts(blue: 8101, green: 8102), canarySlot: .green,
                                             window: AnalysisWindow(startMilliseconds: 1_733_040_000_000, endMilliseconds: 1_733_040_010_000),
                                             settings: CanaryAnalysis(minRequests: 1))
        #expect(verdict.canary.requests == 1 && verdict.canary.passedOn == 1 && verdict.canary.serverErrors == 1)
        #expect(verdict.canary.p99Milliseconds == 300)
        #expect(verdict.stable.requests == 2 && verdict.stable.serverErrors == 0)
        #expect(verdict.lines.handedOver == 1 && verdict.lines.withoutSlot == 1 && verdict.lines.otherComponents == 1)
        #expect(verdict.lines.read == 5 && verdict.lines.unparsable == 1)
    }

    @Test func linesOutsideTheWindowAreLeftOut() {
        var log = SyntheticAccessLog(seed: 9)
        log.canary = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300)
        let all = log.analyze(Self.settings)
        let firstHalf = CanaryAnalyzer.analyze(log: log.log(), component: "inference", ports: SyntheticAccessLog.component.ports, canarySlot: .green,
                                               window: AnalysisWindow(startMilliseconds: log.startMilliseconds, endMilliseconds: log.startMilliseconds + 60_000),
                                               settings: Self.settings)
        #expect(firstHalf.lines.outsideWindow > 900)
        #expect(firstHalf.canary.requests + firstHalf.stable.requests + firstHalf.lines.outsideWindow + firstHalf.lines.otherComponents == all.lines.read)
    }

    @Test func atAFullStepOnlyAbsoluteThresholdsAreTested() {
        // At 100 % the stable slot has nothing to compare with: binomial tests
        // against max_error_rate and against the 1 % a p99 limit allows.
        var good = SyntheticAccessLog(seed: 11)
        good.canaryWeight = 1
        let passed = good.analyze(Self.settings)
        #expect(!passed.comparedWithStable && passed.decision == .pass, "\(passed.text)")
        var bad = good
        bad.canary = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 700)
        let verdict = bad.analyze(Self.settings)
        #expect(Self.failedKinds(verdict) == [.errors, .latency], "\(verdict.text)")
        #expect(verdict.text.contains("(requests slower than max_p99_latency against the 1 % a p99 allows) < α 0.025"), "\(verdict.text)")
        #expect(verdict.text.contains("stable    blue, 0 requests") && verdict.text.contains("absolute thresholds only"), "\(verdict.text)")
        for check in verdict.checks {
            guard case .binomial = check.test else { Issue.record("\(check.kind) used \(String(describing: check.test))"); continue }
        }
    }

    @Test func theVerdictRoundTripsThroughJSON() throws {
        var log = SyntheticAccessLog(seed: 3)
        log.canary = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300)
        let verdict = log.analyze(Self.settings)
        let data = try JSONEncoder().encode(verdict)
        #expect(try JSONDecoder().decode(CanaryVerdict.self, from: data) == verdict)
        let json = String(decoding: data, as: UTF8.self)
        #expect(json.contains("\"errorRate\"") && json.contains("\"pValue\"") && json.contains("\"alphaPerCheck\""))
    }

    /// When canary and stable behave alike, a step may fail only by chance:
    /// at most 1 − confidence of the time. Thresholds of zero are always
    /// breached, so only the statistical tests decide here.
    @Test func identicalSlotsFailAtMostOneMinusConfidenceOfTheTime() {
        let strict = CanaryAnalysis(maxErrorRate: 0, maxP99Latency: .zero, minRequests: 20, maxErrorRateIncrease: 0, maxLatencyRatio: 1, confidence: 0.95)
        let runs = 200
        var failedSeeds: [UInt64] = []
        var failedChecks: [CanaryCheck.Kind: Int] = [:]
        for seed in 1...UInt64(runs) {
            var log = SyntheticAccessLog(seed: seed * 7_919)
            log.requests = 600
            log.canaryWeight = 0.3
            log.otherComponentLines = 0
            log.canary.errorRate = 0.03
            log.stable.errorRate = 0.03
            let verdict = log.analyze(strict)
            if case .fail(let checks) = verdict.decision {
                failedSeeds.append(seed * 7_919)
                for check in checks { failedChecks[check.kind, default: 0] += 1 }
            }
        }
        if ProcessInfo.processInfo.environment["MERIDIAN_PRINT_EXAMPLE"] != nil {
            print("identical slots: \(failedSeeds.count) of \(runs) steps failed; errors \(failedChecks[.errors] ?? 0), latency \(failedChecks[.latency] ?? 0)")
        }
        // A step: at most 5 % of 200 = 10, plus three standard deviations (√(200 · 0.05 · 0.95) ≈ 3.1).
        #expect(failedSeeds.count <= 19, "\(failedSeeds.count) of \(runs) failed; seeds \(failedSeeds)")
        // Each check: at most 2.5 % of 200 = 5, plus three standard deviations (≈ 2.2).
        for kind in CanaryCheck.Kind.allCases {
            #expect(failedChecks[kind, default: 0] <= 12, "\(kind) failed \(failedChecks[kind, default: 0]) of \(runs); seeds \(failedSeeds)")
        }
    }

    /// The same tests catch a bad canary nearly always.
    @Test func aBadCanaryIsCaughtOnEverySeed() {
        var missed: [UInt64] = []
        for seed in 1...UInt64(30) {
            var log = SyntheticAccessLog(seed: seed * 104_729)
            log.canary = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300)
            if case .fail = log.analyze(Self.settings).decision {} else { missed.append(seed * 104_729) }
        }
        #expect(missed.isEmpty, "missed seeds \(missed)")
    }
}
