import Foundation
import Testing
import MeridianModel
@testable import MeridianPlanning

/// Every transition of the rollout state machine, from a recorded phase and
/// an observation to the next phase and effect, including what a resumed
/// run observes after a crash.
@Suite struct RolloutMachineTests {
    static let canarySettings = RolloutPlanSettings(steps: [10, 50, 100], pauseMillis: 2_000, graceMillis: 30_000, inconclusiveWaitMillis: 4_000, thenInconclusive: .hold, hasSmokeProbes: true)
    static let t0: Int64 = 1_000_000

    static func record(_ phase: RolloutPhase, weight: Int = 0, since: Int64 = t0, strategy: RolloutStrategy = .canary, settings: RolloutPlanSettings = canarySettings) -> RolloutRecord {
        var record = RolloutRecord(region: "eu", component: "inference", strategy: strategy, fromVersion: "1.0.0", toVersion: "2.0.0",
                                   stableSlot: .blue, settings: settings, phase: phase, canaryWeight: weight, startedAt: t0 - 10_000)
        record.phaseSince = since
        return record
    }

    /// Two hosts; `canary`/`stable` say which slots run on both, `linked` whether the canary slot points at the new release.
    static func hosts(canary: Bool = true, stable: Bool = true, linked: Bool = true, deadCanaryOn: String? = nil) -> [RolloutHostObservation] {
        ["h1", "h2"].map { name in
            RolloutHostObservation(host: name, canaryLinked: linked, canaryRunning: canary && name != deadCanaryOn, stableRunning: stable)
        }
    }

    static func seen(_ hosts: [RolloutHostObservation] = RolloutMachineTests.hosts(), gateway: Int = 0, at now: Int64 = t0 + 100,
                     health: ProbeResult? = nil, smoke: ProbeResult? = nil, analysis: StepAnalysis? = nil, command: RolloutCommand? = nil) -> RolloutObservation {
        RolloutObservation(now: now, hosts: hosts, gatewayCanaryWeight: gateway, health: health, smoke: smoke, analysis: analysis, command: command)
    }

    static func analysis(_ step: Int, _ verdict: StepVerdict) -> StepAnalysis {
        StepAnalysis(step: step, weight: [10, 50, 100][step], verdict: verdict, summary: "canary error rate 0.05 > 0.01 (p = 0.001)",
                     values: ["canary_requests": "120"], windowStart: t0, windowEnd: t0 + 2_000)
    }

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var record: RolloutRecord
        var seen: RolloutObservation
        var phase: RolloutPhase
        var effect: RolloutEffect
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        // Installing and starting the idle slot.
        Row(name: "installing, nothing linked yet: install", record: record(.installing), seen: seen(hosts(canary: false, linked: false)), phase: .installing, effect: .install),
        Row(name: "installing, linked and running everywhere: health-check", record: record(.installing), seen: seen(), phase: .healthChecking, effect: .none),
        Row(name: "installing, linked but not running (killed between link and start): start it", record: record(.installing), seen: seen(hosts(canary: false)), phase: .startingIdle, effect: .none),
        Row(name: "starting idle, not running: start", record: record(.startingIdle), seen: seen(hosts(canary: false)), phase: .startingIdle, effect: .startSlot(.green)),
        Row(name: "starting idle, running: health-check", record: record(.startingIdle), seen: seen(), phase: .healthChecking, effect: .none),
        Row(name: "starting idle, link gone: install again", record: record(.startingIdle), seen: seen(hosts(linked: false)), phase: .installing, effect: .none),
        // Health and smoke before any traffic.
        Row(name: "health-checking, not checked yet: check the canary slot", record: record(.healthChecking), seen: seen(), phase: .healthChecking, effect: .checkHealth(.green)),
        Row(name: "health-checking, healthy with smoke probes: smoke-test", record: record(.healthChecking), seen: seen(health: .passed), phase: .smokeTesting, effect: .none),
        Row(name: "health-checking, healthy, no smoke probes: first step",
            record: record(.healthChecking, settings: RolloutPlanSettings(steps: [10, 100], pauseMillis: 1, graceMillis: 1, hasSmokeProbes: false)),
            seen: seen(health: .passed), phase: .shifting(step: 0), effect: .none),
        Row(name: "health-checking, unhealthy: abort with no traffic moved", record: record(.healthChecking), seen: seen(health: .failed("HTTP 503")), phase: .aborting, effect: .none),
        Row(name: "health-checking, the idle slot died (crash): start it again", record: record(.healthChecking), seen: seen(hosts(deadCanaryOn: "h2")), phase: .startingIdle, effect: .none),
        Row(name: "smoke-testing, not run yet: run", record: record(.smokeTesting), seen: seen(), phase: .smokeTesting, effect: .runSmoke(.green)),
        Row(name: "smoke-testing, passed: first step", record: record(.smokeTesting), seen: seen(smoke: .passed), phase: .shifting(step: 0), effect: .none),
        Row(name: "smoke-testing, failed: abort", record: record(.smokeTesting), seen: seen(smoke: .failed("no \"ok\" in /v1/models")), phase: .aborting, effect: .none),
        // Shifting traffic.
        Row(name: "shifting to step 1, gateway still 0: set 10 %", record: record(.shifting(step: 0)), seen: seen(), phase: .shifting(step: 0), effect: .setWeight(canary: 10)),
        Row(name: "shifting to step 1, gateway serves 10 % (crash after the reload): analyse", record: record(.shifting(step: 0)), seen: seen(gateway: 10), phase: .analysing(step: 0), effect: .none),
        Row(name: "shifting to step 2 from 10 %: set 50 %", record: record(.shifting(step: 1), weight: 10), seen: seen(gateway: 10), phase: .shifting(step: 1), effect: .setWeight(canary: 50)),
        Row(name: "shifting to the last step: set 100 %", record: record(.shifting(step: 2), weight: 50), seen: seen(gateway: 50), phase: .shifting(step: 2), effect: .setWeight(canary: 100)),
        Row(name: "shifting, 100 % served: switched", record: record(.shifting(step: 2), weight: 50), seen: seen(gateway: 100), phase: .switched, effect: .none),
        Row(name: "shifting with no traffic yet, canary died: start it first", record: record(.shifting(step: 0)), seen: seen(hosts(deadCanaryOn: "h1")), phase: .startingIdle, effect: .none),
        Row(name: "shifting at 10 %, canary died: abort at once", record: record(.shifting(step: 1), weight: 10), seen: seen(hosts(deadCanaryOn: "h1"), gateway: 10), phase: .aborting, effect: .none),
        // Analysing a step.
        Row(name: "analysing, pause not over: wait for its end", record: record(.analysing(step: 0), weight: 10), seen: seen(gateway: 10, at: t0 + 500), phase: .analysing(step: 0), effect: .wait(until: t0 + 2_000)),
        Row(name: "analysing, pause over: analyse the step's window", record: record(.analysing(step: 0), weight: 10), seen: seen(gateway: 10, at: t0 + 2_100), phase: .analysing(step: 0), effect: .analyse(step: 0, from: t0, to: t0 + 2_100)),
        Row(name: "analysing, passed: next step", record: record(.analysing(step: 0), weight: 10), seen: seen(gateway: 10, at: t0 + 2_100, analysis: analysis(0, .pass)), phase: .shifting(step: 1), effect: .none),
        Row(name: "analysing, failed: abort", record: record(.analysing(step: 0), weight: 10), seen: seen(gateway: 10, at: t0 + 2_100, analysis: analysis(0, .fail)), phase: .aborting, effect: .none),
        Row(name: "analysing, inconclusive within the wait: wait longer", record: record(.analysing(step: 0), weight: 10), seen: seen(gateway: 10, at: t0 + 2_100, analysis: analysis(0, .inconclusive)), phase: .analysing(step: 0), effect: .wait(until: t0 + 6_000)),
        Row(name: "analysing, still inconclusive after the wait, then hold: hold", record: record(.analysing(step: 0), weight: 10), seen: seen(gateway: 10, at: t0 + 6_100, analysis: analysis(0, .inconclusive)), phase: .holding(step: 0), effect: .none),
        Row(name: "analysing, still inconclusive after the wait, then fail: abort",
            record: record(.analysing(step: 0), weight: 10, settings: RolloutPlanSettings(steps: [10, 50, 100], pauseMillis: 2_000, graceMillis: 30_000, inconclusiveWaitMillis: 0, thenInconclusive: .fail, hasSmokeProbes: true)),
            seen: seen(gateway: 10, at: t0 + 2_100, analysis: analysis(0, .inconclusive)), phase: .aborting, effect: .none),
        Row(name: "analysing, gateway not what the record says (crash, hand edit): set it again", record: record(.analysing(step: 1), weight: 50), seen: seen(gateway: 10, at: t0 + 100), phase: .shifting(step: 1), effect: .none),
        Row(name: "analysing, canary died on one host: abort", record: record(.analysing(step: 0), weight: 10), seen: seen(hosts(deadCanaryOn: "h2"), gateway: 10), phase: .aborting, effect: .none),
        Row(name: "analysing, gateway reset to 0 by a restart, canary dead: abort, never analyse", record: record(.analysing(step: 0), weight: 10), seen: seen(hosts(deadCanaryOn: "h1"), gateway: 0), phase: .aborting, effect: .none),
        // Holding.
        Row(name: "holding: wait for a command", record: record(.holding(step: 0), weight: 10), seen: seen(gateway: 10), phase: .holding(step: 0), effect: .awaitCommand),
        Row(name: "holding, promote: next step", record: record(.holding(step: 0), weight: 10), seen: seen(gateway: 10, command: .promote), phase: .shifting(step: 1), effect: .none),
        Row(name: "holding, abort: back to stable", record: record(.holding(step: 0), weight: 10), seen: seen(gateway: 10, command: .abort), phase: .aborting, effect: .none),
        // Switched, the grace period and promotion.
        Row(name: "switched, in the grace period: wait for its end", record: record(.switched, weight: 100), seen: seen(gateway: 100, at: t0 + 1_000), phase: .switched, effect: .wait(until: t0 + 30_000)),
        Row(name: "switched, grace over: stop the old slot", record: record(.switched, weight: 100), seen: seen(gateway: 100, at: t0 + 30_000), phase: .switched, effect: .stopSlot(.blue)),
        Row(name: "switched, old slot stopped: promoted", record: record(.switched, weight: 100), seen: seen(hosts(stable: false), gateway: 100, at: t0 + 30_100), phase: .promoted, effect: .finish),
        Row(name: "switched, gateway lost the switch (crash): set 100 % again", record: record(.switched, weight: 100), seen: seen(gateway: 0), phase: .switched, effect: .setWeight(canary: 100)),
        Row(name: "switched, rollback: back to the old slot", record: record(.switched, weight: 100), seen: seen(gateway: 100, command: .rollback), phase: .aborting, effect: .none),
        Row(name: "switched, promote: stop the old slot now", record: record(.switched, weight: 100), seen: seen(gateway: 100, command: .promote), phase: .switched, effect: .stopSlot(.blue)),
        Row(name: "switched, new slot died while the old runs: back to the old slot", record: record(.switched, weight: 100), seen: seen(hosts(deadCanaryOn: "h1"), gateway: 100), phase: .aborting, effect: .none),
        // Aborting returns to stable.
        Row(name: "aborting, traffic on the canary: everything to stable in one reload", record: record(.aborting, weight: 10), seen: seen(gateway: 10), phase: .aborting, effect: .setWeight(canary: 0)),
        Row(name: "aborting, traffic on stable: stop the canary slot", record: record(.aborting, weight: 10), seen: seen(gateway: 0), phase: .aborting, effect: .stopSlot(.green)),
        Row(name: "aborting, canary stopped: rolled back", record: record(.aborting), seen: seen(hosts(canary: false), gateway: 0), phase: .rolledBack, effect: .finish),
        Row(name: "aborting, stable slot dead (crash, reboot): start it before moving traffic", record: record(.aborting, weight: 50), seen: seen(hosts(stable: false), gateway: 50), phase: .aborting, effect: .startSlot(.blue)),
        Row(name: "aborting, a second abort changes nothing", record: record(.aborting, weight: 10), seen: seen(gateway: 10, command: .abort), phase: .aborting, effect: .setWeight(canary: 0)),
        // Terminal phases.
        Row(name: "promoted: finished", record: record(.promoted, weight: 100), seen: seen(gateway: 100, command: .abort), phase: .promoted, effect: .finish),
        Row(name: "rolled back: finished", record: record(.rolledBack), seen: seen(), phase: .rolledBack, effect: .finish),
        Row(name: "failed: finished until an operator acts", record: record(.failed), seen: seen(), phase: .failed, effect: .finish),
        // Blue-green is the one-step canary with no analysis.
        Row(name: "blue-green, after smoke: one step to 100 %",
            record: record(.shifting(step: 0), strategy: .blueGreen, settings: RolloutPlanSettings(steps: [100], pauseMillis: 0, graceMillis: 30_000, hasSmokeProbes: false)),
            seen: seen(), phase: .shifting(step: 0), effect: .setWeight(canary: 100)),
        Row(name: "blue-green, switched in one reload: grace period",
            record: record(.shifting(step: 0), strategy: .blueGreen, settings: RolloutPlanSettings(steps: [100], pauseMillis: 0, graceMillis: 30_000, hasSmokeProbes: false)),
            seen: seen(gateway: 100), phase: .switched, effect: .none),
    ]

    @Test(arguments: rows)
    func transition(_ row: Row) {
        let decision = RolloutMachine.next(row.record, row.seen)
        #expect(decision.record.phase == row.phase, "\(row.name)")
        #expect(decision.effect == row.effect, "\(row.name)")
    }

    @Test func everyPhaseNamesItselfAndReadsBack() {
        let phases: [RolloutPhase] = [.installing, .startingIdle, .healthChecking, .smokeTesting, .shifting(step: 2), .analysing(step: 0), .holding(step: 1),
                                      .switched, .promoted, .aborting, .rolledBack, .failed]
        for phase in phases { #expect(RolloutPhase(phase.description) == phase) }
        #expect(RolloutPhase("analysing") == nil && RolloutPhase("shifting:-1") == nil && RolloutPhase("switched:1") == nil)
    }

    @Test func aFailedStepRecordsItsAnalysisAndReason() {
        let decision = RolloutMachine.next(Self.record(.analysing(step: 0), weight: 10), Self.seen(gateway: 10, at: Self.t0 + 2_100, analysis: Self.analysis(0, .fail)))
        #expect(decision.record.analyses == [Self.analysis(0, .fail)])
        #expect(decision.record.reason == "step 1 (10%) failed its analysis: canary error rate 0.05 > 0.01 (p = 0.001)")
        #expect(decision.record.phaseSince == Self.t0 + 2_100)
    }

    /// A canary verdict from the analyzer is what the machine records and judges by.
    @Test func aFailedVerdictIsRecordedWithItsFiguresAndRollsBack() throws {
        var log = SyntheticAccessLog(seed: 7)
        log.canary = SlotBehaviour(errorRate: 0.05, addedMilliseconds: 300)
        let analysis = StepAnalysis(verdict: log.analyze(CanaryAnalysis()), step: 0, weight: 10)
        #expect(analysis.verdict == .fail)
        #expect(analysis.summary.contains("errors:"), "\(analysis.summary)")
        #expect(Int(analysis.values["canary_requests"] ?? "") ?? 0 > 100)
        #expect(analysis.values["errors_check"]?.contains("α") == true)
        let decision = RolloutMachine.next(Self.record(.analysing(step: 0), weight: 10), Self.seen(gateway: 10, at: Self.t0 + 2_100, analysis: analysis))
        #expect(decision.record.phase == .aborting)
        #expect(decision.record.reason?.hasPrefix("step 1 (10%) failed its analysis: errors:") == true)

        var good = SyntheticAccessLog(seed: 7)
        good.canary = SlotBehaviour()
        #expect(StepAnalysis(verdict: good.analyze(CanaryAnalysis()), step: 0, weight: 10).verdict == .pass)
        var quiet = SyntheticAccessLog(seed: 7)
        quiet.requests = 30
        #expect(StepAnalysis(verdict: quiet.analyze(CanaryAnalysis()), step: 0, weight: 10).verdict == .inconclusive)
    }

    @Test func shiftingRecordsTheWeightTheGatewayServes() {
        let decision = RolloutMachine.next(Self.record(.shifting(step: 1), weight: 10), Self.seen(gateway: 50))
        #expect(decision.record.canaryWeight == 50)
    }

    /// Failed effects: before traffic moved, back to stable; when traffic cannot go back, failed.
    @Test func failedEffectsReturnToStableOrStopForAnOperator() {
        let now = Self.t0 + 5
        #expect(RolloutMachine.failed(Self.record(.startingIdle), effect: .startSlot(.green), reason: "port in use", now: now).phase == .aborting)
        #expect(RolloutMachine.failed(Self.record(.shifting(step: 1), weight: 10), effect: .setWeight(canary: 50), reason: "nginx -t failed", now: now).phase == .aborting)
        let stuck = RolloutMachine.failed(Self.record(.aborting, weight: 10), effect: .setWeight(canary: 0), reason: "nginx is not running", now: now)
        #expect(stuck.phase == .failed)
        #expect(stuck.reason?.contains("meridian rollout resume eu") == true)
        let stop = RolloutMachine.failed(Self.record(.aborting), effect: .stopSlot(.green), reason: "ssh dropped", now: now)
        #expect(stop.phase == .aborting && stop.reason?.contains("tries again") == true)
    }

    /// Drives a whole rollout against a simulated region: each effect changes
    /// the simulated hosts and gateway the way the engine would.
    struct Region {
        var hosts = RolloutMachineTests.hosts(canary: false, linked: false)
        var gateway = 0
        var now = RolloutMachineTests.t0
        var verdicts: [StepVerdict]
        var health: ProbeResult = .passed
        var pending: (health: ProbeResult?, smoke: ProbeResult?, analysis: StepAnalysis?) = (nil, nil, nil)
        var weightsSeen: [Int] = []

        mutating func carry(_ effect: RolloutEffect) {
            pending = (nil, nil, nil)
            now += 10
            switch effect {
            case .none, .finish, .awaitCommand: break
            case .install: for i in hosts.indices { hosts[i].canaryLinked = true; hosts[i].canaryRunning = true }
            case .startSlot(let slot): for i in hosts.indices { if slot == .green { hosts[i].canaryRunning = true } else { hosts[i].stableRunning = true } }
            case .checkHealth: pending.health = health
            case .runSmoke: pending.smoke = .passed
            case .setWeight(let weight): gateway = weight; weightsSeen.append(weight)
            case .wait(let until): now = max(now, until)
            case .analyse(let step, let from, let to):
                pending.analysis = StepAnalysis(step: step, weight: gateway, verdict: verdicts[step], summary: "simulated", windowStart: from, windowEnd: to)
            case .stopSlot(let slot): for i in hosts.indices { if slot == .green { hosts[i].canaryRunning = false } else { hosts[i].stableRunning = false } }
            }
        }

        var observation: RolloutObservation {
            RolloutObservation(now: now, hosts: hosts, gatewayCanaryWeight: gateway, health: pending.health, smoke: pending.smoke, analysis: pending.analysis)
        }
    }

    func drive(_ region: inout Region, from record: RolloutRecord) -> RolloutRecord {
        var record = record
        for _ in 0..<200 {
            let decision = RolloutMachine.next(record, region.observation)
            record = decision.record
            if decision.effect == .finish { return record }
            // The invariant: traffic is only ever moved onto a canary that runs everywhere and passed its checks.
            if case .setWeight(let weight) = decision.effect, weight > 0 {
                #expect(region.hosts.allSatisfy(\.canaryRunning) && region.health == .passed, "traffic moved onto a dead or unhealthy canary at \(record.phase)")
            }
            region.carry(decision.effect)
        }
        Issue.record("the rollout did not finish in 200 decisions; it is at \(record.phase)")
        return record
    }

    @Test func aGoodVersionGoesThroughEveryStepTo100AndStopsTheOldSlot() {
        var region = Region(verdicts: [.pass, .pass, .pass])
        let end = drive(&region, from: Self.record(.installing))
        #expect(end.phase == .promoted)
        #expect(region.weightsSeen == [10, 50, 100])
        #expect(region.hosts.allSatisfy { $0.canaryRunning && !$0.stableRunning })
        #expect(end.analyses.map(\.verdict) == [.pass, .pass])
    }

    @Test func aBadVersionIsRolledBackAtItsFirstStep() {
        var region = Region(verdicts: [.fail, .pass, .pass])
        let end = drive(&region, from: Self.record(.installing))
        #expect(end.phase == .rolledBack)
        #expect(region.weightsSeen == [10, 0])
        #expect(region.hosts.allSatisfy { !$0.canaryRunning && $0.stableRunning })
        #expect(end.reason?.hasPrefix("step 1 (10%) failed its analysis") == true)
    }

    @Test func anUnhealthyCanaryNeverTakesTraffic() {
        var region = Region(verdicts: [.pass, .pass, .pass], health: .failed("HTTP 500"))
        let end = drive(&region, from: Self.record(.installing))
        #expect(end.phase == .rolledBack)
        #expect(region.weightsSeen.isEmpty)
    }

    /// A crash at any decision: the resumed run starts from the last record
    /// written and the region as it is; it always ends promoted or back on stable.
    @Test(arguments: 0..<24)
    func aCrashAfterAnyDecisionResumesOrReturnsToStable(crashAfter: Int) {
        var region = Region(verdicts: [.pass, .fail, .pass])
        var record = Self.record(.installing)
        for _ in 0..<crashAfter {
            let decision = RolloutMachine.next(record, region.observation)
            record = decision.record
            if decision.effect == .finish { break }
            region.carry(decision.effect)
        }
        // The crash loses whatever the probes said; the canary process may also have died with it.
        region.pending = (nil, nil, nil)
        if crashAfter % 3 == 1 { region.hosts[1].canaryRunning = false }
        let end = drive(&region, from: record)
        #expect(end.phase == .rolledBack || end.phase == .promoted, "crash after \(crashAfter): ended \(end.phase)")
        if end.phase == .rolledBack {
            #expect(region.gateway == 0 && region.hosts.allSatisfy(\.stableRunning))
        }
    }
}
