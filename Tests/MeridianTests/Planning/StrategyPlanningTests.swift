import Foundation
import Testing
import MeridianBasics
import MeridianModel
@testable import MeridianPlanning

/// The component's strategy carried from the fleet into plan, steps and
/// manifest: blue-green and canary install beside the serving slot.
@Suite struct StrategyPlanningTests {
    /// eu-west/h1 applied with inference 1.2.0 on blue, now wanting 1.3.0 under `strategy`.
    func upgrade(_ strategy: RolloutStrategy, smoke: [SmokeProbe] = []) -> (desired: DesiredHostState, observed: ObservedHostState, plan: HostPlan) {
        let applied = PlanFixtures.desiredHost(region: "eu-west", host: "h1", address: "10.0.1.11", inference: "1.2.0", maxTokens: 2048, chunk: 512, rules: ["r"])
        var desired = PlanFixtures.desiredHost(region: "eu-west", host: "h1", address: "10.0.1.11", inference: "1.3.0", maxTokens: 2048, chunk: 512, rules: ["r"])
        desired.components[0].strategy = strategy
        desired.components[0].smoke = smoke
        let observed = PlanFixtures.observedInSync(applied)
        let plan = Planner.plan(desired: [desired], observed: [desired.id: observed], basis: PlanFixtures.basis)
        return (desired, observed, plan.hosts[0])
    }

    func upgradeAction(_ plan: HostPlan) -> PlanAction? { plan.actions.first { $0.kind == .upgradeComponent } }

    @Test(arguments: [RolloutStrategy.blueGreen, .canary])
    func blueGreenAndCanaryGoIntoTheIdleSlot(strategy: RolloutStrategy) throws {
        let action = try #require(upgradeAction(upgrade(strategy).plan))
        #expect(action.strategy == strategy)
        #expect(action.slot == .green && action.port == 8082)
        #expect(action.fromVersion == "1.2.0" && action.toVersion == "1.3.0")
    }

    @Test func recreateReplacesTheServingSlot() throws {
        let action = try #require(upgradeAction(upgrade(.recreate).plan))
        #expect(action.strategy == .recreate && action.slot == .blue)
    }

    @Test func aRecreateUpgradeSmokeProbesTheSlotAfterItsHealthCheck() {
        let probe = SmokeProbe(name: "models", path: "/v1/models", expectBodyContains: "inference")
        let (desired, _, plan) = upgrade(.recreate, smoke: [probe])
        let steps = HostStep.steps(for: plan, desired: desired, rewriteSensitive: [], writeManifest: true)
        let health = steps.firstIndex { if case .healthCheck(let component, .blue, _, _, _) = $0 { return component == "inference" } else { return false } }
        let smoke = steps.firstIndex(of: .smokeTest(component: "inference", slot: .blue))
        #expect(health != nil && smoke == health.map { $0 + 1 }, "\(steps)")
        let (plain, _, plainPlan) = upgrade(.recreate)
        #expect(!HostStep.steps(for: plainPlan, desired: plain, rewriteSensitive: [], writeManifest: true).contains { if case .smokeTest = $0 { return true } else { return false } })
    }

    @Test func aFirstInstallHasNoTrafficToMoveAndIsARecreate() throws {
        var desired = PlanFixtures.desiredHost(region: "us-east", host: "h1", address: "10.0.2.11", inference: "1.3.0", maxTokens: 1, chunk: 1, rules: ["r"])
        desired.components[0].strategy = .canary
        let plan = Planner.plan(desired: [desired], observed: [desired.id: ObservedHostState()], basis: PlanFixtures.basis).hosts[0]
        let action = try #require(upgradeAction(plan))
        #expect(action.strategy == .recreate && action.slot == ComponentSlotLayout.firstSlot)
        #expect(action.reasons.contains("first install: no traffic to move, so no canary rollout"))
    }

    @Test func theIdleSlotIsInstalledAndStartedAndTheRolloutChecksIt() {
        let probe = SmokeProbe(name: "models", path: "/v1/models", expectBodyContains: "inference")
        let (desired, _, plan) = upgrade(.blueGreen, smoke: [probe])
        let steps = HostStep.steps(for: plan, desired: desired, rewriteSensitive: [], writeManifest: true)
        #expect(Array(steps.suffix(4)) == [
            .stopComponent(component: "inference", slot: .green),
            .linkSlot(component: "inference", slot: .green, version: "1.3.0"),
            .startComponent(component: "inference", slot: .green),
            .writeManifest,
        ])
        #expect(!steps.contains { if case .healthCheck = $0 { return true } else { return false } })
    }

    @Test func aBlueGreenManifestKeepsTheServingSlotActiveWithItsTraffic() throws {
        let (desired, observed, plan) = upgrade(.blueGreen)
        let manifest = ManifestBuilder.manifest(desired: desired, plan: plan, contents: [:], keyed: [:], previous: observed.manifest.manifest,
                                                revision: "run 2", appliedAt: "t", appliedBy: "me")
        let inference = try #require(manifest.components["inference"])
        #expect(inference.activeSlot == .blue)
        #expect(inference.blue == ManifestSlot(version: "1.2.0", address: "10.0.1.5", port: 8081, weight: 100))
        #expect(inference.green == ManifestSlot(version: "1.3.0", address: "10.0.1.5", port: 8082, weight: 0))
        // A recreate moves the version and the traffic onto the slot it replaced.
        let (rDesired, rObserved, rPlan) = upgrade(.recreate)
        let recreated = ManifestBuilder.manifest(desired: rDesired, plan: rPlan, contents: [:], keyed: [:], previous: rObserved.manifest.manifest,
                                                 revision: "run 2", appliedAt: "t", appliedBy: "me").components["inference"]
        #expect(recreated?.activeSlot == .blue && recreated?.blue == ManifestSlot(version: "1.3.0", address: "10.0.1.5", port: 8081, weight: 100))
    }

    @Test func aSensitiveFileIsRewrittenUnlessItsKeyedHashAndModeMatch() {
        #expect(SensitiveRewrite.hostCopyMatches(.sensitive(keyedSHA256: "k1", mode: 0o600, size: 9), keyedHash: "k1", mode: 0o600))
        #expect(!SensitiveRewrite.hostCopyMatches(.sensitive(keyedSHA256: "k2", mode: 0o600, size: 9), keyedHash: "k1", mode: 0o600))
        #expect(!SensitiveRewrite.hostCopyMatches(.sensitive(keyedSHA256: "k1", mode: 0o644, size: 9), keyedHash: "k1", mode: 0o600))
        #expect(!SensitiveRewrite.hostCopyMatches(.sensitive(keyedSHA256: nil, mode: 0o600, size: 9), keyedHash: "k1", mode: 0o600))
        #expect(!SensitiveRewrite.hostCopyMatches(.regular(sha256: "k1", mode: 0o600, size: 9), keyedHash: "k1", mode: 0o600))
        #expect(!SensitiveRewrite.hostCopyMatches(nil, keyedHash: "k1", mode: 0o600))
    }
}

/// The one liveness check remote scripts share: a zombie is not alive.
@Suite struct ProcessLivenessTests {
    @Test func aZombieIsDeadAndARunningProcessIsAlive() throws {
        // A holder forks a child that exits at once and then becomes `sleep`, which never reaps it: a zombie.
        let script = """
        \(ProcessLiveness.shellFunction)
        f=$(mktemp)
        sh -c 'sleep 0 & echo $! > "$1"; exec sleep 5' sh "$f" >/dev/null 2>&1 &
        holder=$!
        i=0
        while [ ! -s "$f" ] && [ "$i" -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
        z=$(cat "$f")
        i=0
        while [ "$(sed 's/^.*) //' /proc/$z/stat 2>/dev/null | cut -c1)" != Z ] && [ "$i" -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
        if kill -0 "$z" 2>/dev/null; then echo "kill0 yes"; fi
        if alive "$z"; then echo "zombie alive"; else echo "zombie dead"; fi
        if alive "$holder"; then echo "holder alive"; else echo "holder dead"; fi
        kill -s KILL "$holder"; rm -f "$f"
        """
        let output = String(decoding: try runShell(script), as: UTF8.self)
        #expect(output.contains("holder alive"))
        if output.contains("kill0 yes") {
            #expect(output.contains("zombie dead"))
        } else {
            Issue.record("the test could not make a zombie: \(output)")
        }
    }
}
