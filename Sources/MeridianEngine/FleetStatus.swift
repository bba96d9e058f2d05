import Foundation
import MeridianModel
import MeridianPlanning
import MeridianState

/// The one view of a fleet that `meridian status` shows: per region and host,
/// what is installed and serving, how the gateway splits traffic, the rollout
/// in progress, open drift, the lock holders and the last apply. A value
/// built from the state store (and, refreshed, from the hosts' own
/// manifests); invariant: it holds no secret, only what plans and manifests hold.
public struct FleetStatus: Codable, Sendable, Equatable {
    public var formatVersion = 1
    /// `store`: the last applied manifests; `hosts`: observed now (`--refresh`).
    public var source: Source
    /// ISO 8601, UTC: when the view was made.
    public var generatedAt: String
    public var regions: [RegionView]

    public enum Source: String, Codable, Sendable {
        case store
        case hosts
    }

    public struct RegionView: Codable, Sendable, Equatable {
        public var name: String
        public var jurisdiction: String
        public var wave: String?
        public var hosts: [HostView]
        /// Per routed component: the share of each slot, as the last applied (or observed) manifests record it.
        public var gateway: [GatewaySplit]
        /// Each component's newest rollout; `in_progress` tells the ones still going.
        public var rollouts: [RolloutView]
        public var drift: DriftView
        public var lastApply: ApplyView?
        /// The holder of the region's lease in the store, when one is held.
        public var lease: String?
        /// The newest `meridian routes verify` that probed this region's gateways.
        public var routesVerify: RoutesVerifyView?
    }

    public struct HostView: Codable, Sendable, Equatable {
        public var name: String
        public var address: String
        /// Nil when not looked at (`status` without `--refresh`).
        public var reachable: Bool?
        public var error: String?
        /// Whether meridian has applied to the host (a manifest was found).
        public var applied: Bool
        public var components: [ComponentView]
        /// The holder of the host's remote run lock, when it has one (refreshed only).
        public var lock: String?
    }

    public struct ComponentView: Codable, Sendable, Equatable {
        public var name: String
        public var activeSlot: String
        public var activeVersion: String?
        public var blue: SlotView
        public var green: SlotView
    }

    public struct SlotView: Codable, Sendable, Equatable {
        public var version: String?
        public var weight: Int
    }

    public struct GatewaySplit: Codable, Sendable, Equatable {
        public var component: String
        public var blue: Int
        public var green: Int
    }

    public struct RolloutView: Codable, Sendable, Equatable {
        public var component: String
        public var strategy: String
        public var fromVersion: String
        public var toVersion: String
        public var phase: String
        public var inProgress: Bool
        /// 1-based step and its canary share, while the phase has a step.
        public var step: Int?
        public var steps: Int
        public var canaryWeight: Int
        /// The newest analysis: `pass`/`fail`/… and its one-sentence summary.
        public var lastAnalysis: String?
        public var reason: String?
        public var updatedAt: String
    }

    public struct DriftView: Codable, Sendable, Equatable {
        /// When the newest drift run that looked at this region finished.
        public var lastRun: String?
        public var open: [Finding]

        public struct Finding: Codable, Sendable, Equatable {
            public var host: String
            public var kind: String
            public var subject: String
            public var since: String
        }
    }

    public struct RoutesVerifyView: Codable, Sendable, Equatable {
        public var run: Int64
        public var at: String
        /// Every cell ✓ and every gateway host reached.
        public var ok: Bool
        /// Whether the region was healthy (its stack answered) when that run sampled health.
        public var healthy: Bool
        public var checks: Int
        /// `gateway-host EU: us-east (expected eu-west)`, and unreached hosts with why.
        public var violations: [String]
    }

    public struct ApplyView: Codable, Sendable, Equatable {
        public var run: Int64
        public var at: String
        public var by: String
        public var commit: String?
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", source, generatedAt = "generated_at", regions
    }
}

extension FleetStatus.RegionView {
    enum CodingKeys: String, CodingKey {
        case name, jurisdiction, wave, hosts, gateway, rollouts, drift, lease
        case lastApply = "last_apply", routesVerify = "routes_verify"
    }
}

extension FleetStatus.ComponentView {
    enum CodingKeys: String, CodingKey {
        case name, blue, green
        case activeSlot = "active_slot", activeVersion = "active_version"
    }
}

extension FleetStatus.RolloutView {
    enum CodingKeys: String, CodingKey {
        case component, strategy, phase, step, steps, reason
        case fromVersion = "from_version", toVersion = "to_version", inProgress = "in_progress"
        case canaryWeight = "canary_weight", lastAnalysis = "last_analysis", updatedAt = "updated_at"
    }
}

extension FleetStatus.RoutesVerifyView {
    /// The view of `region` in a finished routes-verify run and its journal; nil when the run did not probe it.
    static func make(region: String, run: RunRecord, journal: [JournalEntry]) -> FleetStatus.RoutesVerifyView? {
        guard run.regions.contains(region), let finished = run.finishedAt else { return nil }
        let steps = journal.filter { $0.region == region }.compactMap { entry in
            (try? JSONDecoder().decode(RouteVerificationStep.self, from: Data(entry.detail.text.utf8))).map { (entry.host, $0) }
        }
        guard let first = steps.first else { return nil }
        return FleetStatus.RoutesVerifyView(
            run: run.id.rawValue, at: finished.description, ok: steps.allSatisfy { $0.1.ok }, healthy: first.1.healthy,
            checks: steps.map(\.1.checks).reduce(0, +),
            violations: steps.flatMap { host, step in step.violations.map { "\(host) \($0)" } + (step.unreachable.map { ["\(host) not reached: \($0)"] } ?? []) })
    }
}

extension FleetStatus.DriftView {
    enum CodingKeys: String, CodingKey {
        case open
        case lastRun = "last_run"
    }
}

/// What one host looked like, from the store or from the host itself.
public enum HostStatusSource: Sendable {
    /// The manifest the store last recorded for the host (nil: never applied).
    case stored(HostManifest?)
    /// Observed now: the host's own manifest and remote lock, or why it could not be reached.
    case observed(Result<ObservedHostState, HostFailure>)
}

extension FleetStatus {
    /// Builds the view; pure. `hosts` is keyed by host; `rollouts` are each
    /// component's newest rollouts with their decoded records; `driftRuns` are
    /// finished drift runs, newest first; `routesVerify` finished routes-verify
    /// runs with their journals, newest first (each region shows the newest that probed it).
    public static func make(
        fleet: Fleet, regions: [Region], source: Source, now: StateTime, statuses: [RegionStatus],
        hosts: [HostID: HostStatusSource], rollouts: [(stored: StoredRollout, record: RolloutRecord)],
        openDrift: [DriftFindingRecord], driftRuns: [RunRecord],
        routesVerify: [(run: RunRecord, journal: [JournalEntry])] = []
    ) -> FleetStatus {
        let byRegion = Dictionary(statuses.map { ($0.region, $0) }, uniquingKeysWith: { a, _ in a })
        let views = regions.map { region -> RegionView in
            var hostViews: [HostView] = []
            var manifests: [HostManifest] = []
            for host in region.hosts {
                let port = host.effectivePort(fleet.settings.defaults)
                var view = HostView(name: host.name, address: "\(host.address):\(port)", reachable: nil, error: nil, applied: false, components: [], lock: nil)
                var manifest: HostManifest?
                switch hosts[HostID(region: region.name, host: host.name)] ?? .stored(nil) {
                case .stored(let stored):
                    manifest = stored
                case .observed(.success(let state)):
                    view.reachable = true
                    manifest = state.manifest.manifest
                    view.lock = state.lock?.holder
                case .observed(.failure(let failure)):
                    view.reachable = false
                    view.error = failure.reason
                }
                if let manifest {
                    view.applied = true
                    manifests.append(manifest)
                    view.components = manifest.components.keys.sorted().compactMap { name in
                        manifest.components[name].map { component in
                            ComponentView(name: name, activeSlot: component.activeSlot.rawValue, activeVersion: component.activeVersion,
                                          blue: SlotView(version: component.blue.version, weight: component.blue.weight),
                                          green: SlotView(version: component.green.version, weight: component.green.weight))
                        }
                    }
                }
                hostViews.append(view)
            }
            var split: [GatewaySplit] = []
            if !region.gateways.isEmpty {
                for component in fleet.settings.components where component.route != nil {
                    guard let recorded = manifests.lazy.compactMap({ $0.components[component.name] }).first else { continue }
                    split.append(GatewaySplit(component: component.name, blue: recorded.blue.weight, green: recorded.green.weight))
                }
            }
            let regionRollouts = rollouts.filter { $0.record.region == region.name }
                .sorted { ($0.record.component, $0.stored.id.rawValue) < ($1.record.component, $1.stored.id.rawValue) }
            var newest: [String: (stored: StoredRollout, record: RolloutRecord)] = [:]
            for entry in regionRollouts { newest[entry.record.component] = entry }
            let rolloutViews = newest.keys.sorted().compactMap { newest[$0] }.map { entry in
                let record = entry.record
                let last = record.analyses.last.map { "step \($0.step + 1) (\($0.weight)%): \($0.verdict.rawValue) — \($0.summary)" }
                return RolloutView(
                    component: record.component, strategy: record.strategy.rawValue, fromVersion: record.fromVersion, toVersion: record.toVersion,
                    phase: record.phase.description, inProgress: !record.phase.isTerminal, step: record.phase.step.map { $0 + 1 },
                    steps: record.settings.steps.count, canaryWeight: record.canaryWeight, lastAnalysis: last, reason: record.reason,
                    updatedAt: entry.stored.updatedAt.description)
            }
            let findings = openDrift.filter { $0.region == region.name }.sorted { ($0.host, $0.kind, $0.subject) < ($1.host, $1.kind, $1.subject) }
            let lastDrift = driftRuns.first { $0.regions.isEmpty || $0.regions.contains(region.name) }
            let status = byRegion[region.name]
            let apply = status?.lastApply.map { run in
                ApplyView(run: run.id.rawValue, at: (run.finishedAt ?? run.startedAt).description, by: run.actor, commit: run.fleetCommit.map { String($0.prefix(12)) })
            }
            return RegionView(
                name: region.name, jurisdiction: region.jurisdiction.code,
                wave: fleet.settings.waves.first { $0.regions.contains(region.name) }?.name,
                hosts: hostViews, gateway: split, rollouts: rolloutViews,
                drift: DriftView(lastRun: lastDrift.map { ($0.finishedAt ?? $0.startedAt).description },
                                 open: findings.map { DriftView.Finding(host: $0.host, kind: $0.kind, subject: $0.subject, since: $0.firstSeenAt.description) }),
                lastApply: apply, lease: status?.lease.map { "\($0.holder.actor) (run \($0.run.map { "\($0.rawValue)" } ?? "-"), until \($0.expiresAt))" },
                routesVerify: routesVerify.lazy.compactMap { RoutesVerifyView.make(region: region.name, run: $0.run, journal: $0.journal) }.first)
        }
        return FleetStatus(source: source, generatedAt: now.description, regions: views)
    }

    /// Hosts that could not be reached (refreshed only).
    public var unreachable: [(region: String, host: String, error: String)] {
        regions.flatMap { region in
            region.hosts.filter { $0.reachable == false }.map { (region.name, $0.name, $0.error ?? "unreachable") }
        }
    }
}
