import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianState

/// A region's rollouts as `rollout status` shows them.
public struct RolloutStatusEntry: Sendable {
    public var stored: StoredRollout
    public var record: RolloutRecord

    public init(stored: StoredRollout, record: RolloutRecord) {
        self.stored = stored
        self.record = record
    }
}

/// The operator's side of rollouts: status, commands, resume. A command is
/// queued in the store for the run that drives the rollout; when no run
/// holds the region's lease, this process takes it and drives the rollout
/// itself, so a command works whether or not an apply is still running.
public struct RolloutControl: Sendable {
    public let planning: PlanEngine
    public let store: any StateStore
    public let identity: ProcessIdentity
    public let timings: ApplyTimings
    public let options: RolloutOptions
    public let leaseTTL: Duration

    public init(planning: PlanEngine, store: any StateStore, identity: ProcessIdentity = .current(), timings: ApplyTimings = ApplyTimings(), options: RolloutOptions = RolloutOptions(), leaseTTL: Duration = .seconds(1800)) {
        self.planning = planning
        self.store = store
        self.identity = identity
        self.timings = timings
        self.options = options
        self.leaseTTL = leaseTTL
    }

    /// The newest rollout of each component (of `region` when given), and every unfinished one.
    public func status(region: String?) async throws -> [RolloutStatusEntry] {
        try await store.latestRollouts(region: region).map { RolloutStatusEntry(stored: $0, record: try RolloutRecords.decode($0)) }
    }

    /// What became of a command.
    public enum CommandOutcome: Sendable {
        /// Queued for the run that drives the region (it holds the lease).
        case queued(holder: String)
        /// Driven here to the end: the records as they ended.
        case driven([RolloutRecord])
        /// The region has no unfinished rollout to give the command to.
        case nothingToDo(String)
    }

    /// Queues `command` for the region's rollouts, then drives them here when no run holds the region.
    public func send(_ command: RolloutCommand?, region: String, events: @escaping @Sendable (RolloutEvent) -> Void = { _ in }) async throws -> CommandOutcome {
        if command == .rollback, try await store.latestRollouts(region: region).allSatisfy(\.terminal) {
            return try await rollBackFinished(region: region, events: events)
        }
        let open = try await store.latestRollouts(region: region).filter { !$0.terminal }
        guard !open.isEmpty else { return .nothingToDo("region \(region) has no unfinished rollout") }
        if let command { _ = try await store.requestRolloutCommand(subject: region, command: command.rawValue, actor: identity.actor) }
        return try await driveHere(region: region, rollouts: open, events: events)
    }

    /// Approves a wave that waits (`approval: true`) in a running apply.
    public func approve(wave: String) async throws {
        _ = try await store.requestRolloutCommand(subject: "wave:" + wave, command: RolloutCommand.promote.rawValue, actor: identity.actor)
    }

    /// After a finished rollout: back to the previous release while it is
    /// still installed in the other slot, as a blue-green rollout of its own.
    func rollBackFinished(region: String, events: @escaping @Sendable (RolloutEvent) -> Void) async throws -> CommandOutcome {
        let finished = try await store.latestRollouts(region: region).filter { $0.phase == RolloutPhase.promoted.description }
        guard let last = finished.max(by: { $0.updatedAt < $1.updatedAt }) else {
            return .nothingToDo("region \(region) has no promoted rollout to roll back")
        }
        let done = try RolloutRecords.decode(last)
        let settings = RolloutPlanSettings(steps: [100], pauseMillis: 0, graceMillis: DurationText.milliseconds(planning.fleet.settings.defaults.gracePeriod), hasSmokeProbes: false)
        let back = RolloutRecord(region: region, component: done.component, strategy: .blueGreen, wave: done.wave, fromVersion: done.toVersion, toVersion: done.fromVersion,
                                 stableSlot: done.canarySlot, settings: settings, phase: .startingIdle, startedAt: RolloutDriver.now(),
                                 reason: "rollback of \(last.id) requested by \(identity.actor)")
        let stored = try await store.startRollout(region: region, component: done.component, RolloutUpdate(
            run: nil, phase: back.phase.description, terminal: false, record: try RolloutRecords.encode(back), effect: "rollback",
            detail: JSONDetail(["of": String(last.id.rawValue), "to": back.toVersion]), actor: identity.actor))
        return try await driveHere(region: region, rollouts: [stored], events: events)
    }

    /// The region's desired hosts, gateways rendered at the splits the hosts'
    /// manifests record (one round trip each; hosts out of reach add nothing,
    /// and the rollout stops on them when it needs them).
    func renderedAtRecordedSplits(region: String) async throws -> [DesiredHostState] {
        let hosts = try planning.desiredFleet(regions: [region]).desired.filter { $0.region == region }
        let observations = await planning.observe(hosts, parallelism: max(1, hosts.count), lock: { _ in nil })
        var observed: [HostID: ObservedHostState] = [:]
        for (host, outcome) in zip(hosts, observations) {
            if case .success(let observation) = outcome { observed[host.id] = observation.state }
        }
        return RecordedSplits.rendered(hosts, observed: observed)
    }

    /// Takes the region's lease (or leaves the command queued for its holder) and drives each rollout to its end.
    func driveHere(region: String, rollouts: [StoredRollout], events: @escaping @Sendable (RolloutEvent) -> Void) async throws -> CommandOutcome {
        try await ApplyEngine.recoverAbandonedRuns(store: store, identity: identity)
        let run = try await store.startRun(RunStart(kind: .rollout, owner: identity, fleetCommit: PlanEngine.gitCommit(planning.fleetRoot), regions: [region]))
        do {
            _ = try await store.acquireLeases(regions: [region], holder: identity, run: run.id, ttl: leaseTTL)
        } catch StateStoreError.leaseHeld(let conflict) {
            _ = try await store.finishRun(run.id, outcome: .succeeded, exitCode: 0, summary: "command queued for the run holding \(region)")
            return .queued(holder: conflict.description)
        }
        var ended: [RolloutRecord] = []
        do {
            let regionHosts = try await renderedAtRecordedSplits(region: region)
            let sessions = RolloutDriver.Sessions(pool: planning.sessions ?? SSHSessionPool())
            let gateway = NginxRegionGateway(planning: planning, store: store, run: run.id, hosts: regionHosts, sessions: sessions)
            // Closed before returning, never in a detached task: the process may exit
            // right after, and libssh2 must not be closing sessions while it does.
            do {
                for stored in rollouts {
                    let record = try RolloutRecords.decode(stored)
                    let hosts = regionHosts.filter { $0.components.contains { $0.component == record.component } }
                    let driver = RolloutDriver(planning: planning, store: store, identity: identity, run: run.id, timings: timings,
                                               gateway: gateway.routes(record.component) ? gateway : nil, hosts: hosts, commandPoll: options.commandPoll,
                                               sessions: sessions)
                    ended.append(try await driver.drive(stored, events: events))
                }
            } catch {
                if planning.sessions == nil { await sessions.closeAll() }
                throw error
            }
            if planning.sessions == nil { await sessions.closeAll() }
        } catch {
            _ = try? await store.finishRun(run.id, outcome: .failed, exitCode: 1, summary: "\(error)")
            _ = try? await store.releaseLeases(regions: [region], holder: identity)
            throw error
        }
        let rolledBack = ended.contains { $0.phase == .rolledBack || $0.phase == .failed }
        _ = try await store.finishRun(run.id, outcome: rolledBack ? .rolledBack : .succeeded, exitCode: rolledBack ? 3 : 0,
                                      summary: ended.map { "\($0.component): \($0.phase)" }.joined(separator: "; "))
        _ = try await store.releaseLeases(regions: [region], holder: identity)
        return .driven(ended)
    }
}
