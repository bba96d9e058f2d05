import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianState

/// How apply runs rollouts: whether approval gates are passed without
/// waiting, and how often a wait looks for commands.
public struct RolloutOptions: Sendable {
    /// `apply --auto-approve`: a wave with `approval: true` does not wait for `rollout promote`.
    public var autoApprove: Bool
    public var commandPoll: Duration

    public init(autoApprove: Bool = false, commandPoll: Duration = .milliseconds(200)) {
        self.autoApprove = autoApprove
        self.commandPoll = commandPoll
    }
}

/// A wave that waited for approval and was refused, or the fleet's
/// governance rules forbid the change now (a freeze window).
public struct GovernanceRefusal: Error, Sendable, CustomStringConvertible {
    public var diagnostics: Diagnostics
    public var description: String {
        "the change is refused by the fleet's governance rules; nothing was changed:\n" + diagnostics.sorted.map { "  \($0)" }.joined(separator: "\n")
    }
}

extension ApplyEngine {
    /// Governance rules about strategy, freeze windows and version skew, as
    /// they stand at the moment the first wave would start.
    public func checkGovernance(_ plan: Plan, now: Date = Date()) throws {
        let changing = Set(plan.regions.filter(\.hasChanges).map(\.name))
        let diagnostics = GovernanceEvaluator.evaluate(fleet: planning.fleet, now: now, changingRegions: changing)
        if diagnostics.hasErrors { throw GovernanceRefusal(diagnostics: diagnostics) }
    }

    /// Changes the hosts wave by wave in the fleet's order, regions of a wave
    /// in parallel up to its parallelism, each region's rollouts after its
    /// host steps. A failed or rolled-back region stops the waves after it.
    func changeInWaves(_ plan: Plan, hosts: [DesiredHostState], prepared: [HostID: Prepared], artifacts: [String: LocalArtifact], run: RunID,
                       events: @escaping @Sendable (ApplyEvent) -> Void) async throws -> (outcomes: [HostID: Result<Bool, HostFailure>], regions: [String: RegionApplyResult]) {
        var outcomes: [HostID: Result<Bool, HostFailure>] = [:]
        var regions: [String: RegionApplyResult] = [:]
        var stoppedBy: String?
        let changing = Set(plan.regions.filter(\.hasChanges).map(\.name))
        for wave in WaveOrder.waves(planning.fleet.settings.waves, regions: plan.regions.map(\.name)) {
            if let stoppedBy {
                for region in wave.regions where changing.contains(region) { regions[region] = .notStarted("wave \(stoppedBy) did not complete") }
                continue
            }
            if wave.approval, !rollouts.autoApprove, wave.regions.contains(where: changing.contains) {
                events(.waitingForApproval(wave: wave.name))
                try await awaitApproval(wave.name)
            }
            let starting = wave.regions.filter(changing.contains)
            if !starting.isEmpty { events(.waveStarted(wave: wave.name, regions: starting)) }
            let engine = self
            let results = await withTaskGroup(of: (String, [HostID: Result<Bool, HostFailure>], RegionApplyResult?).self) { group in
                var pending = wave.regions[...]
                var collected: [(String, [HostID: Result<Bool, HostFailure>], RegionApplyResult?)] = []
                func launch() {
                    guard let region = pending.popFirst() else { return }
                    let regionHosts = hosts.filter { $0.region == region }
                    group.addTask {
                        let outcomes = await engine.changeHosts(regionHosts, prepared: prepared, artifacts: artifacts, run: run, events: events)
                        let failed = outcomes.values.contains { if case .failure = $0 { return true } else { return false } }
                        guard !failed, let regionPlan = plan.regions.first(where: { $0.name == region }) else { return (region, outcomes, nil) }
                        let result = await engine.runRollouts(regionPlan, hosts: regionHosts, wave: wave.name, run: run, events: events)
                        return (region, outcomes, result)
                    }
                }
                for _ in 0..<wave.parallelism { launch() }
                while let next = await group.next() {
                    collected.append(next)
                    launch()
                }
                return collected
            }
            for (region, hostOutcomes, result) in results {
                outcomes.merge(hostOutcomes) { a, _ in a }
                let hostFailed = hostOutcomes.values.contains { if case .failure = $0 { return true } else { return false } }
                if let result { regions[region] = result }
                switch result {
                case .failed?, .rolledBack?: stoppedBy = stoppedBy ?? wave.name
                case .applied?, .locked?, .notStarted?, nil: if hostFailed { stoppedBy = stoppedBy ?? wave.name }
                }
            }
        }
        return (outcomes, regions)
    }

    /// Waits for `meridian rollout promote` naming the wave (or any region of it).
    func awaitApproval(_ wave: String) async throws {
        while true {
            let commands = try await store.takeRolloutCommands(subject: "wave:" + wave)
            if commands.contains(where: { $0.command == RolloutCommand.promote.rawValue }) { return }
            try await Task.sleep(for: rollouts.commandPoll)
        }
    }

    /// The rollouts a region's plan starts: one per component upgraded with
    /// blue-green or canary. Nil when there are none; else the region's
    /// result once every rollout ended (or could not go on).
    func runRollouts(_ regionPlan: RegionPlan, hosts: [DesiredHostState], wave: String, run: RunID, events: @escaping @Sendable (ApplyEvent) -> Void) async -> RegionApplyResult? {
        let starts: [RolloutRecord]
        switch RolloutStart.records(for: regionPlan, fleet: planning.fleet, wave: planning.fleet.settings.waves.isEmpty ? nil : wave, now: RolloutDriver.now()) {
        case .success(let records): starts = records
        case .failure(let problem): return .failed([HostFailure(region: regionPlan.name, host: "-", reason: problem.reason)])
        }
        // Unfinished rollouts the plan does not start again (one moving traffic is left alone by the planner) are carried on too.
        let unfinished: [StoredRollout]
        do {
            unfinished = try await store.latestRollouts(region: regionPlan.name).filter { stored in !stored.terminal && !starts.contains { $0.component == stored.component } }
        } catch {
            return .failed([HostFailure(region: regionPlan.name, host: "-", reason: "\(error)")])
        }
        guard !starts.isEmpty || !unfinished.isEmpty, let region = planning.fleet.region(named: regionPlan.name) else { return nil }
        var rolledBack: [String] = []
        var failures: [HostFailure] = []
        // The region's gateways move the traffic of components they route; the others' weights live in the manifests only.
        // The rollouts use the sessions apply already holds (the command closes them at its end), or their own.
        let sessions = RolloutDriver.Sessions(pool: planning.sessions ?? SSHSessionPool())
        let gateway = NginxRegionGateway(planning: planning, store: store, run: run, hosts: hosts, sessions: sessions)
        let work = starts.map(RolloutWork.start) + unfinished.map(RolloutWork.resume)
        for item in work {
            do {
                let stored: StoredRollout
                switch item {
                case .start(let record): stored = try await startOrResume(record, run: run)
                case .resume(let existing): stored = existing
                }
                let start = try RolloutRecords.decode(stored)
                let driver = RolloutDriver(planning: planning, store: store, identity: identity, run: run, timings: timings,
                                           gateway: gateway.routes(start.component) ? gateway : nil,
                                           hosts: hosts.filter { $0.components.contains { $0.component == start.component } }, commandPoll: rollouts.commandPoll,
                                           sessions: sessions)
                let end = try await driver.drive(stored) { event in events(.rollout(event)) }
                switch end.phase {
                case .promoted: continue
                case .rolledBack: rolledBack.append("\(start.component) \(start.fromVersion) → \(start.toVersion): \(end.reason ?? "rolled back")")
                case .failed: failures.append(HostFailure(region: region.name, host: "-", reason: "the rollout of \(start.component) failed: \(end.reason ?? "")"))
                case .installing, .startingIdle, .healthChecking, .smokeTesting, .shifting, .analysing, .holding, .switched, .aborting:
                    failures.append(HostFailure(region: region.name, host: "-", reason: "the rollout of \(start.component) stopped at \(end.phase)"))
                }
            } catch {
                failures.append(HostFailure(region: region.name, host: "-", reason: "\(error)"))
            }
            // A failed component stops the region's other rollouts: the wave is stopped anyway.
            if !failures.isEmpty || !rolledBack.isEmpty { break }
        }
        if planning.sessions == nil { await sessions.closeAll() }
        if !failures.isEmpty { return .failed(failures) }
        if !rolledBack.isEmpty { return .rolledBack(rolledBack) }
        return .applied(hostsChanged: regionPlan.hosts.filter(\.hasChanges).count, hosts: regionPlan.hosts.count)
    }

    enum RolloutWork {
        case start(RolloutRecord)
        case resume(StoredRollout)
    }

    /// Starts the rollout, or resumes the unfinished one of the same change.
    func startOrResume(_ record: RolloutRecord, run: RunID) async throws -> StoredRollout {
        let update = RolloutUpdate(run: run, phase: record.phase.description, terminal: false, record: try RolloutRecords.encode(record),
                                   effect: "start", detail: JSONDetail(["from": record.fromVersion, "to": record.toVersion, "strategy": record.strategy.rawValue]),
                                   actor: identity.actor)
        do {
            return try await store.startRollout(region: record.region, component: record.component, update)
        } catch StateStoreError.rolloutInProgress(let open) {
            let existing = try RolloutRecords.decode(open)
            guard existing.toVersion == record.toVersion, existing.stableSlot == record.stableSlot else { throw StateStoreError.rolloutInProgress(open) }
            return open
        }
    }
}
