import Foundation
import Testing
import MeridianBasics
import MeridianState
import MeridianTestHosts

/// Canary and blue-green rollouts of the example inference service through a
/// real nginx gateway, under live traffic from a bounded load generator: the
/// built binary against sshd test hosts on 127.0.190.x to 127.0.193.x,
/// ports 19700–19799.
@Suite(.serialized) struct TrafficRolloutTests {
    /// The newest rollout record of the region, as `rollout status --format json` prints it.
    func rolloutStatus(_ fleet: TrafficRolloutFleet) throws -> [String: Any] {
        let status = try fleet.meridian(["rollout", "status", "north", "--format", "json"])
        let entries = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [[String: Any]] ?? []
        return entries.max { ($0["id"] as? Int ?? 0) < ($1["id"] as? Int ?? 0) }?["record"] as? [String: Any] ?? [:]
    }

    /// Waits (bounded: `attempts` looks 50 ms apart) while `process` runs until
    /// the newest rollout is in `phase`; true when it got there.
    func waitForPhase(_ phase: String, _ fleet: TrafficRolloutFleet, while process: Process, attempts: Int) async -> Bool {
        for _ in 0..<attempts where process.isRunning {
            if (try? rolloutStatus(fleet)["phase"] as? String) == phase { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    @Test func aGoodCanaryGoesThroughEveryStepAndABadOneIsRolledBackAtItsFirst() async throws {
        let fleet = try TrafficRolloutFleet(addressPrefix: "127.0.190", portBase: 19700)
        defer { fleet.tearDown() }
        try fleet.addRelease("1.0.0")
        try fleet.addRelease("1.1.0")
        try fleet.addRelease("1.2.0", errorRate: 0.05, addedLatency: "300ms")
        try fleet.setPlatform("1.0.0", strategy: "canary")
        let first = try fleet.meridian(["apply", "--auto-approve"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")

        // A good version under load: every step passes its analysis and the gateway ends at 100 %.
        var load = GatewayLoad(address: fleet.gateway.address, port: fleet.gatewayPort)
        #expect(await load.waitFor(50), "the gateway did not answer before the rollout")
        try fleet.setPlatform("1.1.0", strategy: "canary")
        let goodLog = fleet.directory.appendingPathComponent("apply-good.log")
        let good = try fleet.start(["apply", "--auto-approve"], output: goodLog)
        // While the first step's traffic runs, plan and drift keep the canary's weights.
        let sawStep = await waitForPhase("analysing:0", fleet, while: good, attempts: 600)
        #expect(sawStep, "the rollout never reached its first step's analysis")
        if sawStep {
            let during = try fleet.meridian(["plan", "--detailed-exitcode"])
            #expect(during.status == 0, "a plan during the canary would change something:\n\(during.stdout)\n\(during.stderr)")
            #expect(!during.stdout.contains("router/nginx.conf"), "\(during.stdout)")
        }
        #expect(good.endsWithin(attempts: 12_000), "apply did not finish the canary within 120 s")
        let goodOutput = (try? String(contentsOf: goodLog, encoding: .utf8)) ?? ""
        #expect(good.terminationStatus == 0, "\(goodOutput)")
        var (answers, errors) = await load.stop()
        #expect(errors.isEmpty, "requests without an answer during a good canary: \(errors.prefix(3))")
        #expect(answers.allSatisfy { $0.status == 200 }, "failed answers during a good canary: \(answers.filter { $0.status != 200 }.count)")
        #expect(answers.contains { $0.version == "1.0.0" } && answers.contains { $0.version == "1.1.0" })
        #expect(answers.suffix(20).allSatisfy { $0.version == "1.1.0" }, "the gateway does not serve the new version after the rollout")
        let promoted = try rolloutStatus(fleet)
        #expect(promoted["phase"] as? String == "promoted", "\(promoted)")
        let verdicts = (promoted["analyses"] as? [[String: Any]] ?? []).compactMap { $0["verdict"] as? String }
        #expect(verdicts == ["pass", "pass"], "\(promoted)")
        #expect(try fleet.meridian(["plan", "--detailed-exitcode"]).status == 0, "the plan after the canary would move traffic")
        let drift = try fleet.meridian(["drift"])
        #expect(drift.status == 0, "\(drift.stdout)\n\(drift.stderr)")

        // The misbehaving version (5 % errors, +300 ms) fails its first step and all traffic goes back.
        load = GatewayLoad(address: fleet.gateway.address, port: fleet.gatewayPort)
        #expect(await load.waitFor(50))
        try fleet.setPlatform("1.2.0", strategy: "canary")
        let bad = try fleet.meridian(["apply", "--auto-approve"])
        (answers, errors) = await load.stop()
        #expect(bad.status == 3, "\(bad.stdout)\n\(bad.stderr)")
        #expect(bad.stdout.contains("north: ROLLED BACK"), "\(bad.stdout)")
        #expect(bad.stdout.contains("step 1 (10%) failed its analysis"), "\(bad.stdout)")
        #expect(errors.isEmpty, "requests without an answer: \(errors.prefix(3))")
        let failed = answers.filter { $0.status >= 500 }.count
        let share = Double(failed) / Double(max(1, answers.count))
        print("bad canary: \(failed) of \(answers.count) requests failed (\(String(format: "%.2f", share * 100)) %), \(answers.filter { $0.version == "1.2.0" }.count) answered by 1.2.0")
        #expect(share <= 0.10 * 0.05 + 0.01, "\(failed) of \(answers.count) requests failed")
        #expect(answers.contains { $0.version == "1.2.0" }, "the canary never took traffic")
        #expect(answers.suffix(20).allSatisfy { $0.version == "1.1.0" }, "traffic did not go back to the stable slot")
        let rolledBack = try rolloutStatus(fleet)
        #expect(rolledBack["phase"] as? String == "rolled-back", "\(rolledBack)")
        let analyses = rolledBack["analyses"] as? [[String: Any]] ?? []
        #expect(analyses.count == 1 && analyses.first?["verdict"] as? String == "fail", "\(rolledBack)")
        let store = try await SQLiteStateStore.open(path: fleet.statePath)
        let reasons = try await store.auditLog(afterSeq: 0, limit: 10_000).filter { $0.action == .rolloutTransition }.map(\.detail.text)
        #expect(reasons.contains { $0.contains("step 1 (10%) failed its analysis") }, "\(reasons.suffix(3))")
        #expect(try fleet.meridian(["audit", "verify"]).status == 0)
    }

    /// `meridian status` while a canary waits at its second step: the rollout in progress with its
    /// step, the canary's share and the first step's analysis, in text and JSON; then `rollout abort`
    /// sends all traffic back to the stable slot, and status shows the rollout ended.
    @Test func statusShowsACanaryInProgressWithItsStepAndLastAnalysisAndAbortEndsIt() async throws {
        let fleet = try TrafficRolloutFleet(addressPrefix: "127.0.193", portBase: 19785)
        defer { fleet.tearDown() }
        try fleet.addRelease("1.0.0")
        try fleet.addRelease("1.1.0")
        try fleet.setPlatform("1.0.0", strategy: "canary")
        let first = try fleet.meridian(["apply", "--auto-approve"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")

        let load = GatewayLoad(address: fleet.gateway.address, port: fleet.gatewayPort)
        #expect(await load.waitFor(50), "the gateway did not answer before the rollout")
        // Each step waits 8 s, so the second step's window leaves time to look.
        try fleet.setPlatform("1.1.0", strategy: "canary", pause: "8s")
        let log = fleet.directory.appendingPathComponent("apply-canary.log")
        let apply = try fleet.start(["apply", "--auto-approve"], output: log)
        let atSecondStep = await waitForPhase("analysing:1", fleet, while: apply, attempts: 1200)
        let during = atSecondStep ? Result { try checkStatusDuringTheSecondStep(fleet) } : .success(())
        // Queued for the running apply (exit 0), which carries it out: all traffic back to 1.0.0, exit 3.
        let abort = try fleet.meridian(["rollout", "abort", "north"])
        let ended = apply.endsWithin(attempts: 12_000)
        let (answers, _) = await load.stop()
        #expect(atSecondStep, "the rollout never reached its second step: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        try during.get()
        #expect(abort.status == 0, "\(abort.stdout)\n\(abort.stderr)")
        #expect(ended, "apply did not end within 120 s of the abort")
        #expect(apply.terminationStatus == 3, "\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        #expect(answers.suffix(20).allSatisfy { $0.version == "1.0.0" }, "traffic did not go back to the stable slot after the abort")
        let after = try fleet.meridian(["status"])
        #expect(after.stdout.contains("rollout inference 1.0.0 → 1.1.0 (canary): rolled-back at "), "\(after.stdout)")
        #expect(after.stdout.contains("    last analysis: step 1 (10%): pass — ") && after.stdout.contains("    reason: "), "\(after.stdout)")
        #expect(!after.stdout.contains("in progress"), "\(after.stdout)")
        #expect(after.stdout.contains("gateway weights: inference blue 100% / green 0%"), "\(after.stdout)")
    }

    func checkStatusDuringTheSecondStep(_ fleet: TrafficRolloutFleet) throws {
        let json = try fleet.meridian(["status", "--format", "json"])
        let text = try fleet.meridian(["status"])
        #expect(json.status == 0 && text.status == 0, "\(json.stderr)\(text.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        let region = try #require((document["regions"] as? [[String: Any]])?.first, "\(json.stdout)")
        let rollout = try #require((region["rollouts"] as? [[String: Any]])?.first, "\(json.stdout)")
        #expect(rollout["component"] as? String == "inference" && rollout["in_progress"] as? Bool == true, "\(rollout)")
        #expect(rollout["from_version"] as? String == "1.0.0" && rollout["to_version"] as? String == "1.1.0", "\(rollout)")
        #expect(rollout["phase"] as? String == "analysing:1", "\(rollout)")
        #expect(rollout["step"] as? Int == 2 && rollout["steps"] as? Int == 3 && rollout["canary_weight"] as? Int == 50, "\(rollout)")
        #expect((rollout["last_analysis"] as? String ?? "").hasPrefix("step 1 (10%): pass — "), "\(rollout)")
        #expect(text.stdout.contains("rollout inference 1.0.0 → 1.1.0 (canary): analysing:1 step 2 of 3, canary 50% — in progress"), "\(text.stdout)")
        #expect(text.stdout.contains("    last analysis: step 1 (10%): pass — "), "\(text.stdout)")
        let summary = text.stdout.split(separator: "\n").first { $0.hasPrefix("north ") }.map(String.init) ?? ""
        #expect(summary.contains("inference analysing:1"), "\(text.stdout)")
    }

    @Test func aBlueGreenSwitchAndARollbackThroughTheGatewayLoseNoRequest() async throws {
        let fleet = try TrafficRolloutFleet(addressPrefix: "127.0.191", portBase: 19740)
        defer { fleet.tearDown() }
        try fleet.addRelease("1.0.0")
        try fleet.addRelease("1.1.0")
        try fleet.setPlatform("1.0.0", strategy: "blue-green")
        #expect(try fleet.meridian(["apply", "--auto-approve"]).status == 0)

        var load = GatewayLoad(address: fleet.gateway.address, port: fleet.gatewayPort)
        #expect(await load.waitFor(50))
        try fleet.setPlatform("1.1.0", strategy: "blue-green")
        let upgrade = try fleet.meridian(["apply", "--auto-approve"])
        var (answers, errors) = await load.stop()
        #expect(upgrade.status == 0, "\(upgrade.stdout)\n\(upgrade.stderr)")
        print("blue-green switch: \(answers.count) requests, \(errors.count) without an answer, \(answers.filter { $0.status != 200 }.count) failed")
        #expect(errors.isEmpty && answers.allSatisfy { $0.status == 200 }, "\(errors.prefix(3))")
        #expect(answers.suffix(20).allSatisfy { $0.version == "1.1.0" })
        #expect(try fleet.meridian(["plan", "--detailed-exitcode"]).status == 0)

        load = GatewayLoad(address: fleet.gateway.address, port: fleet.gatewayPort)
        #expect(await load.waitFor(50))
        let back = try fleet.meridian(["rollout", "rollback", "north"])
        (answers, errors) = await load.stop()
        #expect(back.status == 0, "\(back.stdout)\n\(back.stderr)")
        print("rollback: \(answers.count) requests, \(errors.count) without an answer, \(answers.filter { $0.status != 200 }.count) failed")
        #expect(errors.isEmpty && answers.allSatisfy { $0.status == 200 }, "\(errors.prefix(3))")
        #expect(answers.suffix(20).allSatisfy { $0.version == "1.0.0" }, "the rollback did not bring back the previous release")
        let drift = try fleet.meridian(["drift"])
        #expect(drift.status == 0, "\(drift.stdout)\n\(drift.stderr)")
    }

    /// The transitions recorded so far of the region's newest rollout.
    func transitions(_ store: SQLiteStateStore) async throws -> [RolloutTransition] {
        guard let newest = try await store.latestRollouts(region: "north").max(by: { $0.id.rawValue < $1.id.rawValue }) else { return [] }
        return try await store.rolloutTransitions(newest.id)
    }

    @Test func aCanaryKilledAtEachStepOrCutOffFromAHostConvergesAndTheGatewayNeverServesADeadSlot() async throws {
        let fleet = try TrafficRolloutFleet(addressPrefix: "127.0.192", portBase: 19770)
        defer { fleet.tearDown() }
        let versions = (0..<20).map { "1.0.\($0)" }
        for version in versions { try fleet.addRelease(version) }
        try fleet.setPlatform(versions[0], strategy: "canary", steps: [50], pause: "1s", minRequests: 5)
        #expect(try fleet.meridian(["apply", "--auto-approve"]).status == 0)
        // Probes 5 ms apart on each of two connections (bounded: 60,000 each, several minutes).
        let probes = GatewayLoad(address: fleet.gateway.address, port: fleet.gatewayPort, workers: 2, limit: 60_000, pause: .milliseconds(5))
        #expect(await probes.waitFor(50))
        let store = try await SQLiteStateStore.open(path: fleet.statePath)

        // One rollout to the end, to see its phases: each is the first transition into it.
        try fleet.setPlatform(versions[1], strategy: "canary", steps: [50], pause: "1s", minRequests: 5)
        #expect(try fleet.meridian(["apply", "--auto-approve"]).status == 0)
        let whole = try await transitions(store)
        let firstOfPhase = whole.indices.filter { $0 == 0 || whole[$0].toPhase != whole[$0 - 1].toPhase }.map { $0 + 1 }
        #expect(whole.last?.toPhase == "promoted" && firstOfPhase.count >= 7, "\(whole.map(\.toPhase))")

        // Killed in each phase in turn (after its first transition): the next apply carries the rollout to an end.
        var next = 2
        var killedAt: [String] = []
        for kill in firstOfPhase.dropLast() where next < versions.count {
            try fleet.setPlatform(versions[next], strategy: "canary", steps: [50], pause: "1s", minRequests: 5)
            next += 1
            let before = try await store.latestRollouts(region: "north").map(\.id.rawValue).max() ?? 0
            let process = try fleet.start(["apply", "--auto-approve"], output: fleet.directory.appendingPathComponent("kill-\(kill).log"))
            var reached = false
            for _ in 0..<20_000 where process.isRunning && !reached {
                let newest = try await store.latestRollouts(region: "north").map(\.id.rawValue).max() ?? 0
                reached = newest > before ? try await transitions(store).count >= kill : false
                if !reached { try await Task.sleep(for: .milliseconds(3)) }
            }
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(reached, "the apply ended before its rollout's transition \(kill)")
            killedAt.append(try await transitions(store).last?.toPhase ?? "?")
            let resumed = try fleet.meridian(["apply", "--auto-approve"])
            #expect([0, 3].contains(resumed.status), "after a kill at \(killedAt.last ?? "?"):\n\(resumed.stdout)\n\(resumed.stderr)")
            let ended = try rolloutStatus(fleet)["phase"] as? String
            #expect(ended == "promoted" || ended == "rolled-back", "after a kill at \(killedAt.last ?? "?") the rollout is \(ended ?? "missing")")
            #expect(try await store.unfinishedRuns().isEmpty)
        }
        print("canary killed at: \(killedAt.joined(separator: ", "))")

        // A host's sshd killed mid-step: the rollout stops where it is, traffic keeps flowing, resume converges.
        try fleet.setPlatform(versions[next], strategy: "canary", steps: [50], pause: "2s", minRequests: 5)
        let before = try await store.latestRollouts(region: "north").map(\.id.rawValue).max() ?? 0
        let process = try fleet.start(["apply", "--auto-approve"], output: fleet.directory.appendingPathComponent("sshd-kill.log"))
        var analysing = false
        for _ in 0..<20_000 where process.isRunning && !analysing {
            let newest = try await store.latestRollouts(region: "north").map(\.id.rawValue).max() ?? 0
            analysing = newest > before ? try await transitions(store).last?.toPhase == "analysing:0" : false
            if !analysing { try await Task.sleep(for: .milliseconds(3)) }
        }
        #expect(analysing, "the rollout never reached its first analysis")
        fleet.cluster.kill(fleet.service)
        #expect(process.endsWithin(attempts: 6000), "apply did not end within 60 s of its host's sshd being killed")
        #expect(process.terminationStatus == 1)
        try fleet.cluster.restart(fleet.service)
        let resume = try fleet.meridian(["rollout", "resume", "north"])
        #expect(resume.status == 0 || resume.status == 3, "\(resume.stdout)\n\(resume.stderr)")
        let ended = try rolloutStatus(fleet)["phase"] as? String
        #expect(ended == "promoted" || ended == "rolled-back", "after resume the rollout is \(ended ?? "missing")")

        let (answers, errors) = await probes.stop()
        print("probes through the gateway during the crash test: \(answers.count) answered, \(answers.filter { $0.status != 200 }.count) failed, \(errors.count) without an answer")
        #expect(errors.isEmpty, "\(errors.prefix(3))")
        #expect(answers.allSatisfy { $0.status == 200 }, "the gateway sent requests to a slot that was not serving: \(answers.filter { $0.status != 200 }.count)")
    }
}
