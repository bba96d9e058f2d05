import MeridianModel

/// Judges one canary step from the gateway's access log: the canary slot's
/// lines of the step's window against the stable slot's, for one component.
///
/// A check (errors, latency) fails only when the canary's figures breach a
/// threshold (absolute, or relative to stable) *and* a one-sided test shows
/// the canary worse than stable with the configured confidence; the two
/// checks share 1 − confidence equally (Bonferroni), so a canary that behaves
/// like stable fails a step at most 1 − confidence of the time. A step with
/// fewer canary requests than `min_requests` is inconclusive.
public enum CanaryAnalyzer {
    /// At or above this share of unparsable lines, nothing in the log is trusted.
    public static let unparsableShareLimit = 0.1
    /// Below this expected count in any cell of the 2×2 error table, the
    /// normal approximation is poor and Fisher's exact test is used instead.
    public static let smallExpectedCount = 5.0
    /// The share of requests a p99 threshold allows above it.
    public static let tailShare = 0.01

    public static func analyze(log: AccessLog, component: Component, canarySlot: Slot, window: AnalysisWindow) -> CanaryVerdict {
        analyze(log: log, component: component.name, ports: component.ports, canarySlot: canarySlot, window: window, settings: component.canary.analysis)
    }

    /// `ports` tells which slot a contact went to when nginx passed a failed
    /// contact on to another server (every component slot has its own port).
    public static func analyze(log: AccessLog, component: String, ports: SlotPorts, canarySlot: Slot, window: AnalysisWindow, settings: CanaryAnalysis) -> CanaryVerdict {
        var counts = LogLineCounts()
        counts.read = log.count
        counts.unparsable = log.unparsable.count
        var tally = [Slot.blue: SlotTally(), Slot.green: SlotTally()]
        func slot(ofPort port: Int?) -> Slot? {
            guard let port else { return nil }
            return Slot.allCases.first { ports[$0] == port }
        }
        for line in log.lines {
            guard window.contains(line.endMilliseconds) else { counts.outsideWindow += 1; continue }
            guard line.component == component else { counts.otherComponents += 1; continue }
            guard let answered = line.answered, let answeringSlot = line.slot ?? slot(ofPort: answered.port) else {
                counts.withoutSlot += 1
                continue
            }
            for attempt in line.attempts {
                switch attempt.role {
                case .answered:
                    tally[answeringSlot]?.addAnswer(status: line.status, milliseconds: attempt.responseMilliseconds)
                case .passedOn:
                    if let failed = slot(ofPort: attempt.port) {
                        tally[failed]?.addPassedOn(milliseconds: attempt.responseMilliseconds)
                    }
                case .handedOver:
                    counts.handedOver += 1
                }
            }
        }
        let canaryTally = tally[canarySlot] ?? SlotTally()
        let stableTally = tally[canarySlot.other] ?? SlotTally()
        let canary = canaryTally.traffic(canarySlot)
        let stable = stableTally.traffic(canarySlot.other)
        let thresholds = CanaryThresholds(settings)
        let compared = stable.requests >= settings.minRequests
        var verdict = CanaryVerdict(decision: .pass, component: component, canarySlot: canarySlot, window: window, canary: canary, stable: stable,
                                    comparedWithStable: compared, lines: counts, thresholds: thresholds, checks: [])
        if counts.read > 0, Double(counts.unparsable) >= unparsableShareLimit * Double(counts.read) {
            verdict.decision = .inconclusive(.unparsableLines(count: counts.unparsable, of: counts.read))
            return verdict
        }
        guard canary.requests >= settings.minRequests else {
            verdict.decision = .inconclusive(.tooFewRequests(seen: canary.requests, needed: settings.minRequests))
            return verdict
        }
        verdict.checks = [
            errorCheck(canary, stable, compared: compared, thresholds),
            latencyCheck(canary, canaryTally.latencies, stable, stableTally.latencies, compared: compared, thresholds),
        ]
        let failed = verdict.checks.filter(\.failed)
        verdict.decision = failed.isEmpty ? .pass : .fail(checks: failed)
        return verdict
    }

    static func errorCheck(_ canary: SlotTraffic, _ stable: SlotTraffic, compared: Bool, _ thresholds: CanaryThresholds) -> CanaryCheck {
        var breaches: [CanaryBreach] = []
        if canary.errorRate > thresholds.maxErrorRate {
            breaches.append(.errorRate(observed: canary.errorRate, limit: thresholds.maxErrorRate))
        }
        if compared, let limit = thresholds.maxErrorRateIncrease, canary.errorRate - stable.errorRate > limit {
            breaches.append(.errorRateIncrease(canary: canary.errorRate, stable: stable.errorRate, limit: limit))
        }
        let test: CanaryTest
        if compared {
            test = proportionTest(canary.serverErrors, canary.requests, stable.serverErrors, stable.requests)
        } else {
            let p = CanaryStatistics.binomialUpperTail(canary.serverErrors, canary.requests, thresholds.maxErrorRate)
            test = .binomial(events: canary.serverErrors, trials: canary.requests, allowedRate: thresholds.maxErrorRate, pValue: p)
        }
        return CanaryCheck(kind: .errors, breaches: breaches, test: test, alpha: thresholds.alphaPerCheck)
    }

    /// Fisher's exact test when any cell of the 2×2 table (errors and
    /// successes of each slot) would expect fewer than 5 under equal rates;
    /// else the two-proportion z-test.
    static func proportionTest(_ x1: Int, _ n1: Int, _ x2: Int, _ n2: Int) -> CanaryTest {
        let pooled = Double(x1 + x2) / Double(n1 + n2)
        let smallest = min(pooled, 1 - pooled) * Double(min(n1, n2))
        if smallest < smallExpectedCount {
            return .fisherExact(pValue: CanaryStatistics.fisherExact(x1, n1, x2, n2))
        }
        let (z, p) = CanaryStatistics.twoProportionZ(x1, n1, x2, n2)
        return .twoProportionZ(z: z, pValue: p)
    }

    static func latencyCheck(_ canary: SlotTraffic, _ canaryLatencies: [Int], _ stable: SlotTraffic, _ stableLatencies: [Int], compared: Bool, _ thresholds: CanaryThresholds) -> CanaryCheck {
        var breaches: [CanaryBreach] = []
        if let p99 = canary.p99Milliseconds, p99 > thresholds.maxP99Milliseconds {
            breaches.append(.p99(observedMilliseconds: p99, limitMilliseconds: thresholds.maxP99Milliseconds))
        }
        if compared, let limit = thresholds.maxLatencyRatio, let p99 = canary.p99Milliseconds, let stableP99 = stable.p99Milliseconds,
           Double(p99) > limit * Double(stableP99) {
            breaches.append(.latencyRatio(canaryMilliseconds: p99, stableMilliseconds: stableP99, limit: limit))
        }
        var test: CanaryTest?
        if compared, !canaryLatencies.isEmpty, !stableLatencies.isEmpty {
            let result = CanaryStatistics.mannWhitney(canaryLatencies, stableLatencies)
            test = .mannWhitneyU(u: result.u, z: result.z, pValue: result.pValue)
        } else if !compared, !canaryLatencies.isEmpty {
            let slower = canaryLatencies.count { $0 > thresholds.maxP99Milliseconds }
            let p = CanaryStatistics.binomialUpperTail(slower, canaryLatencies.count, tailShare)
            test = .binomial(events: slower, trials: canaryLatencies.count, allowedRate: tailShare, pValue: p)
        }
        return CanaryCheck(kind: .latency, breaches: breaches, test: test, alpha: thresholds.alphaPerCheck)
    }
}

/// What one slot's contacts added up to while the log is read.
struct SlotTally {
    var requests = 0
    var passedOn = 0
    var serverErrors = 0
    var clientErrors = 0
    var latencies: [Int] = []

    /// 5xx are the slot's errors; 4xx are the client's and only counted.
    mutating func addAnswer(status: Int, milliseconds: Int?) {
        requests += 1
        if status >= 500 { serverErrors += 1 } else if status >= 400 { clientErrors += 1 }
        if let milliseconds { latencies.append(milliseconds) }
    }

    /// nginx moves to the next server only after an error, a timeout or a
    /// status `proxy_next_upstream` names: the slot failed this contact.
    mutating func addPassedOn(milliseconds: Int?) {
        requests += 1
        passedOn += 1
        serverErrors += 1
        if let milliseconds { latencies.append(milliseconds) }
    }

    func traffic(_ slot: Slot) -> SlotTraffic {
        let sorted = latencies.sorted()
        return SlotTraffic(slot: slot, requests: requests, passedOn: passedOn, serverErrors: serverErrors, clientErrors: clientErrors,
                           latencySamples: sorted.count, p50Milliseconds: CanaryStatistics.percentile(50, ofSorted: sorted),
                           p99Milliseconds: CanaryStatistics.percentile(99, ofSorted: sorted))
    }
}
