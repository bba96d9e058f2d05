import MeridianBasics
import MeridianModel

/// Why a region's rollouts cannot start as planned.
public struct RolloutStartProblem: Error, Sendable, Equatable {
    public var reason: String
}

/// The rollouts a region's plan starts, decided from the plan and the
/// fleet: pure. All hosts of a component must move from the same version
/// and serving slot, so that one gateway split describes them.
public enum RolloutStart {
    public static func records(for region: RegionPlan, fleet: Fleet, wave: String?, now: Int64) -> Result<[RolloutRecord], RolloutStartProblem> {
        var byComponent: [String: [PlanAction]] = [:]
        for host in region.hosts {
            for action in host.actions where action.kind == .upgradeComponent {
                switch action.strategy ?? .recreate {
                case .recreate: continue
                case .blueGreen, .canary: byComponent[action.subject, default: []].append(action)
                }
            }
        }
        var records: [RolloutRecord] = []
        for name in byComponent.keys.sorted() {
            let actions = byComponent[name] ?? []
            guard let first = actions.first, let component = fleet.component(named: name), let from = first.fromVersion,
                  let to = first.toVersion, let canary = first.slot, let strategy = first.strategy else { continue }
            if actions.contains(where: { $0.fromVersion != from || $0.slot != canary || $0.toVersion != to }) {
                return .failure(RolloutStartProblem(reason: "the hosts of region \(region.name) do not all run \(name) \(from) on the \(canary.other.rawValue) slot; run `meridian rollout status \(region.name)` and bring them together (`meridian apply` of one version) first"))
            }
            let steps: [Int]
            switch strategy {
            case .canary: steps = component.canary.steps.last == 100 ? component.canary.steps : component.canary.steps + [100]
            case .blueGreen, .recreate: steps = [100]
            }
            let settings = RolloutPlanSettings(steps: steps, pauseMillis: DurationText.milliseconds(component.canary.pause),
                                               graceMillis: DurationText.milliseconds(fleet.settings.defaults.gracePeriod),
                                               inconclusiveWaitMillis: DurationText.milliseconds(component.canary.inconclusive.wait),
                                               thenInconclusive: component.canary.inconclusive.then,
                                               hasSmokeProbes: !component.smoke.isEmpty)
            // The apply's host steps install and start the canary slot; the rollout checks it from there.
            records.append(RolloutRecord(region: region.name, component: name, strategy: strategy, wave: wave, fromVersion: from, toVersion: to,
                                         stableSlot: canary.other, settings: settings, phase: .installing, startedAt: now))
        }
        return .success(records)
    }
}
