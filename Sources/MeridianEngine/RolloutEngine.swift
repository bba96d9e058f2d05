import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianState

/// What a rollout needs from a region's gateway: the split it serves now,
/// one checked reload to a new split, and the access log for analysis.
/// The region's nginx gateway implements it; a region without a gateway
/// has none, and its weights live only in the hosts' manifests.
public protocol RegionGateway: Sendable {
    /// The canary slot's share of `component`'s traffic the gateway serves now, 0…100.
    func canaryWeight(component: String, canary: Slot) async throws -> Int
    /// Serves `weight` percent of `component`'s traffic from `canary` (the rest from its other slot), in one reload.
    func setWeight(component: String, canary: Slot, weight: Int) async throws
    /// Analyses step traffic of `component` in the window (milliseconds since 1970), canary against stable.
    func analyse(component: String, canary: Slot, weight: Int, step: Int, from: Int64, to: Int64) async throws -> StepAnalysis
}

/// A rollout that could not be carried on: the record stays as it is in the
/// store, and `meridian rollout resume` carries on from it.
public struct RolloutInterrupted: Error, Sendable, CustomStringConvertible {
    public var region: String
    public var component: String
    public var reason: String
    public var description: String {
        "the rollout of \(component) in region \(region) stopped: \(reason); run `meridian rollout resume \(region)` once that is fixed"
    }
}

/// What the rollout engine reports while it runs, for progress lines.
public enum RolloutEvent: Sendable {
    case transition(region: String, component: String, from: RolloutPhase, to: RolloutPhase, effect: String)
}

/// Carries out one rollout's decisions: observes the region's hosts (one
/// round trip each, over sessions kept open for the whole rollout), asks
/// `RolloutMachine` what to do, writes the record (journaled and audited)
/// before doing it, and does it. It decides nothing itself.
public struct RolloutDriver: Sendable {
    public let planning: PlanEngine
    public let store: any StateStore
    public let identity: ProcessIdentity
    public let run: RunID?
    public let timings: ApplyTimings
    public let gateway: (any RegionGateway)?
    /// Hosts of the region that run the component.
    public let hosts: [DesiredHostState]
    /// How often a wait looks for an operator's command.
    public let commandPoll: Duration
    /// Every decision made, at most; a bound, never reached by a rollout that ends.
    public let maximumDecisions: Int
    /// Sessions shared with the region's gateway (and the rollouts after this
    /// one), closed by whoever made them; nil: this driver opens and closes its own.
    let shared: Sessions?

    public init(planning: PlanEngine, store: any StateStore, identity: ProcessIdentity, run: RunID?, timings: ApplyTimings, gateway: (any RegionGateway)?, hosts: [DesiredHostState], commandPoll: Duration = .milliseconds(200), maximumDecisions: Int = 100_000, sessions: Sessions? = nil) {
        self.shared = sessions
        self.planning = planning
        self.store = store
        self.identity = identity
        self.run = run
        self.timings = timings
        self.gateway = gateway
        self.hosts = hosts
        self.commandPoll = commandPoll
        self.maximumDecisions = maximumDecisions
    }

    /// The sessions a region's rollouts use (an `SSHSessionPool`: one per host,
    /// reopened when one drops), and the manifest each host showed when last
    /// observed (what a weight change starts from).
    public final class Sessions: @unchecked Sendable {
        let pool: SSHSessionPool
        private let lock = NSLock()
        private var manifests: [HostID: HostManifest] = [:]

        public init(pool: SSHSessionPool = SSHSessionPool()) { self.pool = pool }

        func remember(_ manifest: HostManifest?, of id: HostID) { lock.withLock { manifests[id] = manifest } }
        func manifest(of id: HostID) -> HostManifest? { lock.withLock { manifests[id] } }

        /// Runs `body` on the host's session; a transport error drops the
        /// session, so the next use opens a new one.
        func using<T: Sendable>(_ host: DesiredHostState, planning: PlanEngine, _ body: (SSHSession) async throws -> T) async throws -> T {
            let session = try await pool.session(for: planning.endpoint(for: host))
            do {
                return try await body(session)
            } catch let error as SSHError {
                await pool.drop(session)
                throw error
            }
        }

        public func closeAll() async { await pool.closeAll() }
    }

    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    /// Drives the stored rollout until it ends, or throws `RolloutInterrupted`
    /// when a host or the gateway cannot be reached (the record then stays).
    public func drive(_ stored: StoredRollout, events: @escaping @Sendable (RolloutEvent) -> Void = { _ in }) async throws -> RolloutRecord {
        let sessions = shared ?? Sessions()
        do {
            let record = try await loop(stored, sessions: sessions, events: events)
            if shared == nil { await sessions.closeAll() }
            return record
        } catch {
            if shared == nil { await sessions.closeAll() }
            throw error
        }
    }

    func loop(_ stored: StoredRollout, sessions: Sessions, events: @escaping @Sendable (RolloutEvent) -> Void) async throws -> RolloutRecord {
        var record = try RolloutRecords.decode(stored)
        var results = EffectResults()
        var command: RolloutCommand?
        // After a decision that carried nothing out (`.none`: only the record moved), the hosts are as just
        // observed, so the next decision reuses that observation instead of asking every host again.
        var unchanged: RolloutObservation?
        for _ in 0..<maximumDecisions {
            var seen: RolloutObservation
            if var previous = unchanged {
                previous.now = Self.now()
                seen = previous
            } else {
                do {
                    seen = try await observe(record, sessions: sessions)
                } catch {
                    throw RolloutInterrupted(region: record.region, component: record.component, reason: "\(error)")
                }
            }
            unchanged = nil
            seen.health = results.health
            seen.smoke = results.smoke
            seen.analysis = results.analysis
            if command == nil { command = try await takeCommand(record.region) }
            seen.command = command
            command = nil
            results = EffectResults()
            let decision = RolloutMachine.next(record, seen)
            if decision.record != record {
                try await write(stored.id, from: record, to: decision.record, effect: decision.effect, events: events)
            }
            record = decision.record
            switch decision.effect {
            case .finish:
                return record
            case .none:
                unchanged = seen
                unchanged?.health = nil
                unchanged?.smoke = nil
                unchanged?.analysis = nil
                unchanged?.command = nil
                continue
            case .wait(let until):
                command = try await waitFor(until: until, region: record.region)
            case .awaitCommand:
                command = try await waitFor(until: nil, region: record.region)
            case .install, .startSlot, .checkHealth, .runSmoke, .setWeight, .analyse, .stopSlot:
                do {
                    results = try await carry(decision.effect, record: record, sessions: sessions)
                } catch {
                    let next = RolloutMachine.failed(record, effect: decision.effect, reason: "\(error)", now: Self.now())
                    try await write(stored.id, from: record, to: next, effect: .none, events: events)
                    record = next
                    switch decision.effect {
                    case .stopSlot, .install:
                        throw RolloutInterrupted(region: record.region, component: record.component, reason: "\(error)")
                    case .none, .startSlot, .checkHealth, .runSmoke, .setWeight, .analyse, .wait, .awaitCommand, .finish:
                        break
                    }
                }
            }
        }
        throw RolloutInterrupted(region: record.region, component: record.component, reason: "it made \(maximumDecisions) decisions without ending (phase \(record.phase))")
    }

    struct EffectResults {
        var health: ProbeResult?
        var smoke: ProbeResult?
        var analysis: StepAnalysis?
    }

    func write(_ id: RolloutID, from old: RolloutRecord, to new: RolloutRecord, effect: RolloutEffect, events: @Sendable (RolloutEvent) -> Void) async throws {
        var fields = ["phase": new.phase.description, "weight": String(new.canaryWeight)]
        if let reason = new.reason { fields["reason"] = reason }
        if new.analyses.count > old.analyses.count, let analysis = new.analyses.last {
            fields["verdict"] = analysis.verdict.rawValue
            fields["analysis"] = analysis.summary
            for (name, value) in analysis.values { fields["analysis." + name] = value }
        }
        let data = try RolloutRecords.encode(new)
        _ = try await store.recordRolloutTransition(id, RolloutUpdate(run: run, phase: new.phase.description, terminal: new.phase.isTerminal, record: data,
                                                                      effect: RolloutRecords.describe(effect), detail: JSONDetail(fields), actor: identity.actor))
        events(.transition(region: new.region, component: new.component, from: old.phase, to: new.phase, effect: RolloutRecords.describe(effect)))
    }

    func takeCommand(_ region: String) async throws -> RolloutCommand? {
        let commands = try await store.takeRolloutCommands(subject: region)
        // The newest word wins; abort outranks the others given together.
        let known = commands.compactMap { RolloutCommand(rawValue: $0.command) }
        if known.contains(.abort) { return .abort }
        return known.last
    }

    /// Sleeps until `until` (forever when nil), in slices, returning early
    /// with an operator's command when one arrives.
    func waitFor(until: Int64?, region: String) async throws -> RolloutCommand? {
        while true {
            let now = Self.now()
            if let until, now >= until { return nil }
            if let command = try await takeCommand(region) { return command }
            let slice = min(DurationText.milliseconds(commandPoll), until.map { $0 - now } ?? Int64.max)
            try await Task.sleep(for: .milliseconds(max(1, slice)))
        }
    }

    /// One round trip per host: slot links and processes; the gateway's split
    /// (or, with no gateway, the weight the hosts' manifests record).
    func observe(_ record: RolloutRecord, sessions: Sessions) async throws -> RolloutObservation {
        var hostsSeen: [RolloutHostObservation] = []
        var recordedWeights: [Int] = []
        for host in hosts {
            let state = try await withSession(host, sessions) { session in
                try await HostObserver.observe(ObserveScript(root: host.root, files: [], listedFolders: []), on: session).state
            }
            sessions.remember(state.manifest.manifest, of: host.id)
            let linked = Planner.versionFromLink(state.slotTarget(component: record.component, slot: record.canarySlot), component: record.component) == record.toVersion
            hostsSeen.append(RolloutHostObservation(
                host: host.host, canaryLinked: linked,
                canaryRunning: state.process(component: record.component, slot: record.canarySlot)?.alive == true,
                stableRunning: state.process(component: record.component, slot: record.stableSlot)?.alive == true))
            if let component = state.manifest.manifest?.components[record.component] {
                recordedWeights.append(component.slot(record.canarySlot).weight)
            } else {
                recordedWeights.append(0)
            }
        }
        let weight: Int
        if let gateway {
            weight = try await gateway.canaryWeight(component: record.component, canary: record.canarySlot)
        } else {
            // Hosts that disagree (a crash between two manifest writes) show the one that differs from the record, so it is set again.
            weight = recordedWeights.first { $0 != record.canaryWeight } ?? record.canaryWeight
        }
        return RolloutObservation(now: Self.now(), hosts: hostsSeen, gatewayCanaryWeight: weight)
    }

    func withSession<T: Sendable>(_ host: DesiredHostState, _ sessions: Sessions, _ body: (SSHSession) async throws -> T) async throws -> T {
        try await sessions.using(host, planning: planning, body)
    }

    func layout(_ host: DesiredHostState, _ component: String) throws -> ComponentSlotLayout {
        guard let layout = host.components.first(where: { $0.component == component }) else {
            throw HostFailure(region: host.region, host: host.host, reason: "component \(component) is not in its desired state")
        }
        return layout
    }

    /// Carries out one effect on every host (or the gateway), returning what probes found.
    func carry(_ effect: RolloutEffect, record: RolloutRecord, sessions: Sessions) async throws -> EffectResults {
        var results = EffectResults()
        let component = record.component
        switch effect {
        case .none, .wait, .awaitCommand, .finish:
            break
        case .install:
            // Apply's host steps install the canary slot; a resumed rollout gets here only when they did not finish.
            throw RolloutInterrupted(region: record.region, component: component, reason: "the new release is not installed in the \(record.canarySlot.rawValue) slot on every host; run `meridian apply` to install it")
        case .startSlot(let slot):
            for host in hosts {
                let layout = try layout(host, component)
                try await withSession(host, sessions) { session in
                    let running = try await session.exec(RemoteScripts.isRunning(root: host.root, component: component, slot: slot))
                    if !running.stdoutText.hasPrefix("alive") {
                        _ = try await session.run(RemoteScripts.start(root: host.root, layout: layout, slot: slot))
                    }
                    try await HostApplier.healthCheck(component: component, slot: slot, address: layout.address, port: layout.port(slot), path: layout.healthPath,
                                                      root: host.root, timings: timings, on: session)
                }
            }
        case .checkHealth(let slot):
            results.health = .passed
            for host in hosts {
                let layout = try layout(host, component)
                do {
                    try await withSession(host, sessions) { session in
                        try await HostApplier.healthCheck(component: component, slot: slot, address: layout.address, port: layout.port(slot), path: layout.healthPath,
                                                          root: host.root, timings: timings, on: session)
                    }
                } catch let error as HostStepError {
                    results.health = .failed("host \(host.id): \(error)")
                    break
                }
            }
        case .runSmoke(let slot):
            results.smoke = .passed
            hostLoop: for host in hosts {
                let layout = try layout(host, component)
                for probe in layout.smoke {
                    do {
                        try await withSession(host, sessions) { session in
                            try await HostApplier.smokeProbe(probe, component: component, slot: slot, address: layout.address, port: layout.port(slot), on: session)
                        }
                    } catch let error as HostStepError {
                        results.smoke = .failed("host \(host.id): \(error)")
                        break hostLoop
                    }
                }
            }
        case .setWeight(let weight):
            try await setWeight(weight, record: record, sessions: sessions)
        case .analyse(let step, let from, let to):
            if let gateway {
                results.analysis = try await gateway.analyse(component: component, canary: record.canarySlot, weight: record.canaryWeight, step: step, from: from, to: to)
            } else {
                results.analysis = StepAnalysis(step: step, weight: record.canaryWeight, verdict: .inconclusive,
                                                summary: "region \(record.region) has no gateway whose access log could be analysed",
                                                windowStart: from, windowEnd: to)
            }
        case .stopSlot(let slot):
            for host in hosts {
                try await withSession(host, sessions) { session in
                    _ = try await session.run(RemoteScripts.stop(root: host.root, component: component, slot: slot, graceSeconds: timings.stopGraceSeconds))
                }
            }
        }
        return results
    }

    /// Writes a host's manifest whole, in one command.
    static func writeManifest(_ data: Data, root: String, on session: SSHSession) async throws {
        _ = try await session.run(RemoteScripts.writeSmallFile(root: root, path: HostManifest.path, sha256: SHA256.hex(data), mode: 0o644), stdin: data)
    }

    /// The weights are desired state: every host's manifest records them
    /// first (so plan and drift keep them), then the gateway serves them.
    func setWeight(_ weight: Int, record: RolloutRecord, sessions: Sessions) async throws {
        for host in hosts {
            // The manifest as this decision's observation saw it; nothing else changes it while the region's lease is held.
            guard var manifest = sessions.manifest(of: host.id), let current = manifest.components[record.component] else {
                throw HostFailure(region: host.region, host: host.host, reason: "its manifest has no entry for \(record.component); run `meridian apply`")
            }
            manifest.components[record.component] = RolloutRecords.split(current, canary: record.canarySlot, weight: weight)
            manifest.revision = run.map { "run \($0.rawValue)" } ?? manifest.revision
            let data = manifest.encoded()
            try await withSession(host, sessions) { session in try await Self.writeManifest(data, root: host.root, on: session) }
            sessions.remember(manifest, of: host.id)
            if let run { _ = try await store.recordManifest(run: run, region: host.region, host: host.host, manifest: data) }
        }
        try await gateway?.setWeight(component: record.component, canary: record.canarySlot, weight: weight)
    }
}

/// The pure helpers the rollout engine shares with the CLI: JSON of records,
/// effects in words, and a component's manifest entry at a traffic split.
public enum RolloutRecords {
    public static func encode(_ record: RolloutRecord) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(record)
    }

    public static func decode(_ stored: StoredRollout) throws -> RolloutRecord {
        try JSONDecoder().decode(RolloutRecord.self, from: stored.record)
    }

    public static func describe(_ effect: RolloutEffect) -> String {
        switch effect {
        case .none: return "none"
        case .install: return "install the new release"
        case .startSlot(let slot): return "start \(slot.rawValue)"
        case .checkHealth(let slot): return "health-check \(slot.rawValue)"
        case .runSmoke(let slot): return "smoke-probe \(slot.rawValue)"
        case .setWeight(let weight): return "set the canary's weight to \(weight)%"
        case .wait(let until): return "wait until \(until)"
        case .analyse(let step, let from, let to): return "analyse step \(step + 1) (\(from)…\(to))"
        case .stopSlot(let slot): return "stop \(slot.rawValue)"
        case .awaitCommand: return "wait for `rollout promote` or `rollout abort`"
        case .finish: return "finish"
        }
    }

    /// The entry with `weight` percent on `canary` and the rest on the other
    /// slot; the canary becomes the active slot once it has all the traffic.
    public static func split(_ component: ManifestComponent, canary: Slot, weight: Int) -> ManifestComponent {
        var next = component
        let stable = canary.other
        func set(_ slot: Slot, _ value: Int) {
            switch slot {
            case .blue: next.blue.weight = value
            case .green: next.green.weight = value
            }
        }
        set(canary, weight)
        set(stable, 100 - weight)
        next.activeSlot = weight >= 100 ? canary : stable
        return next
    }
}
