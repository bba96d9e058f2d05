import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianState

/// Why apply would not start: nothing was changed on any host.
public enum ApplyRefusal: Error, Sendable, CustomStringConvertible {
    /// The fleet files differ from those the plan was made from.
    case fleetChanged(paths: [String], commit: (plan: String?, now: String?)?)
    /// The fleet renders to something other than what the plan shows.
    case planMismatch([String])
    /// The plan holds actions the planner could not have produced, or differs
    /// from what planning the same fleet against the hosts gives now.
    case notPlannerOutput([String])
    /// Hosts changed since the plan was made.
    case staleHosts([StaleHost])
    /// Another run holds the lease of a region.
    case leaseHeld(LeaseConflict)

    public var description: String {
        switch self {
        case .fleetChanged(let paths, let commit):
            var parts: [String] = []
            if !paths.isEmpty { parts.append("fleet files changed since the plan was made: \(paths.joined(separator: ", "))") }
            if let commit { parts.append("the fleet repository is at \(commit.now ?? "no commit"), the plan was made at \(commit.plan ?? "no commit")") }
            return "the saved plan is stale: " + parts.joined(separator: "; ") + "; run `meridian plan` again and apply the new plan"
        case .planMismatch(let problems):
            return "the saved plan does not match what the fleet renders to (\(problems.joined(separator: "; "))); run `meridian plan` again with this version of meridian"
        case .notPlannerOutput(let problems):
            return "the plan is not what planning this fleet gives (it was edited, or made by another version of meridian); nothing was changed:\n"
                + problems.map { "  \($0)" }.joined(separator: "\n") + "\nrun `meridian plan` again and apply the new plan"
        case .staleHosts(let hosts):
            return "the saved plan is stale; nothing was changed:\n" + hosts.map { "  \($0)" }.joined(separator: "\n")
        case .leaseHeld(let conflict):
            return "another run is changing the fleet: \(conflict)"
        }
    }
}

/// What the operator decided on seeing the plan that apply made under its locks.
public enum PlanReview: Sendable, Equatable {
    case apply
    /// Change nothing; the run ends with this exit code and reason.
    case stop(exitCode: Int32, reason: String)
}

/// How `planAndApply` ended, with the plan it made.
public enum PlanAndApplyOutcome: Sendable {
    case applied(ApplyReport, PlanningResult)
    case stopped(PlanningResult, exitCode: Int32)
}

/// How one region's apply ended.
public enum RegionApplyResult: Sendable, Equatable {
    case applied(hostsChanged: Int, hosts: Int)
    case failed([HostFailure])
    /// A host's lock is held by another run.
    case locked([HostFailure])
    /// A rollout failed its checks and the region is back on its stable slot; each reason names the component.
    case rolledBack([String])
    /// Not changed: an earlier wave failed, so later waves do not start.
    case notStarted(String)
}

/// One region's line of the apply summary.
public struct RegionApplyOutcome: Sendable, Equatable {
    public var region: String
    public var result: RegionApplyResult
}

/// What an apply did. Invariant: `exitCode` is 1 when any region failed,
/// else 3 when a rollout was rolled back (the fleet is consistent), else 4
/// when locks held by other runs stopped a region, else 0.
public struct ApplyReport: Sendable {
    public var run: RunID
    public var planHash: String
    public var regions: [RegionApplyOutcome]

    public var exitCode: Int32 {
        var locked = false
        var rolledBack = false
        for region in regions {
            switch region.result {
            case .applied, .notStarted: continue
            case .failed: return 1
            case .locked: locked = true
            case .rolledBack: rolledBack = true
            }
        }
        return rolledBack ? 3 : locked ? 4 : 0
    }
}

/// Applies a plan exactly: refuses it when the fleet or a host changed
/// since, takes the regions' leases and each host's lock (in the same round
/// trip as the observation), then runs each host's steps with every step
/// journaled before and after, writes the host's manifest and records it.
/// A failed host fails its region; the other regions carry on.
///
/// How much of a plan apply re-derives before acting on it.
public enum PlanVerification: Sendable, Equatable {
    /// The plan must equal what the planner gives for the same regions under
    /// the locks (saved plans, and plans made by the same command).
    case replan
    /// Every action must pass the fleet's rules; for plans that drift
    /// remediation cut down from the planner's own output.
    case rulesOnly
}

public struct ApplyEngine: Sendable {
    public let planning: PlanEngine
    public let store: any StateStore
    public let identity: ProcessIdentity
    public let secrets: any SecretResolver
    public let parallelism: Int
    public let leaseTTL: Duration
    public let timings: ApplyTimings
    public let rollouts: RolloutOptions

    public init(planning: PlanEngine, store: any StateStore, identity: ProcessIdentity = .current(), secrets: any SecretResolver, parallelism: Int, leaseTTL: Duration = .seconds(1800), timings: ApplyTimings = ApplyTimings(), rollouts: RolloutOptions = RolloutOptions()) {
        self.planning = planning
        self.store = store
        self.identity = identity
        self.secrets = secrets
        self.parallelism = parallelism
        self.leaseTTL = leaseTTL
        self.timings = timings
        self.rollouts = rollouts
    }

    /// The remote lock's run id: names this store, so a later run of the
    /// same store can recognise a lock its interrupted predecessor left.
    func lockRunID(_ run: RunID) -> String { "\(storeTag)-\(run.rawValue)" }
    var storeTag: String { "meridian-" + SHA256.hex(store.location).prefix(12) }

    func runFromLock(_ lock: RemoteLock?) -> RunID? {
        guard let lock, lock.runID.hasPrefix(storeTag + "-"), let raw = Int64(lock.runID.dropFirst(storeTag.count + 1)) else { return nil }
        return RunID(rawValue: raw)
    }

    /// Checks that `plan` was made from the fleet as it is now.
    public func checkBasis(_ plan: Plan, against fleet: DesiredFleet) throws {
        let now = fleet.basis
        var paths = Set(now.fleetFiles.keys).union(plan.basis.fleetFiles.keys).filter { now.fleetFiles[$0] != plan.basis.fleetFiles[$0] }.sorted()
        if paths.count > 10 { paths = Array(paths.prefix(10)) + ["…"] }
        let commitChanged = now.gitCommit != plan.basis.gitCommit
        if !paths.isEmpty || commitChanged {
            throw ApplyRefusal.fleetChanged(paths: paths, commit: commitChanged ? (plan.basis.gitCommit, now.gitCommit) : nil)
        }
        var problems: [String] = []
        let desired = Dictionary(fleet.desired.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for host in plan.hosts {
            guard let state = desired[host.id] else { problems.append("host \(host.id) is not in the fleet"); continue }
            // The gateway's configuration also depends on the traffic split the hosts record,
            // so it is checked against the hosts under the locks (`refuseUnplanned`), not here.
            for action in host.actions where (action.kind == .createFile || action.kind == .updateFile) && !action.sensitive
                && !(action.subject == GatewayConfig.path && state.gateway != nil) {
                guard let file = state.files.first(where: { $0.path == action.subject }) else {
                    problems.append("host \(host.id): \(action.subject) is not rendered"); continue
                }
                if file.content.fingerprint != action.afterSHA256 { problems.append("host \(host.id): \(action.subject) renders differently") }
            }
        }
        if !problems.isEmpty { throw ApplyRefusal.planMismatch(problems) }
    }

    /// Finishes runs whose process died on this machine and gives back the
    /// leases they held, on the record, so an apply after a SIGKILL converges.
    func recoverAbandonedRuns() async throws {
        try await Self.recoverAbandonedRuns(store: store, identity: identity)
    }

    /// The same, for any command that takes leases (apply, the rollout commands).
    static func recoverAbandonedRuns(store: any StateStore, identity: ProcessIdentity) async throws {
        let leases = try await store.leases()
        for run in try await store.abandonedRuns() {
            _ = try await store.markInterrupted(run.id, by: identity.actor, note: "its process (\(run.owner)) is gone; found by a later apply")
            for lease in leases where lease.holder == run.owner {
                _ = try await store.forceReleaseLease(region: lease.region, by: identity.actor, reason: "held by interrupted \(run.id)")
            }
        }
    }

    public func apply(_ plan: Plan, fleet: DesiredFleet, verification: PlanVerification = .replan, events: @escaping @Sendable (ApplyEvent) -> Void = { _ in }) async throws -> ApplyReport {
        try checkBasis(plan, against: fleet)
        try checkGovernance(plan)
        let ended = try await withRun(regions: plan.regions.map(\.name), fleetCommit: plan.basis.gitCommit, planHash: plan.hash) { run in
            RunEnd.applied(try await applyHoldingLeases(plan, fleet: fleet, run: run, verification: verification, seen: nil, events: events))
        }
        switch ended {
        case .applied(let report): return report
        case .stopped: preconditionFailure("only planAndApply's review stops a run before it changes anything")
        }
    }

    /// Plans and applies in one pass, for apply without a saved plan: the
    /// run and its leases come first, so the observation the plan is made
    /// from also takes every host's lock (one command per host fewer than
    /// observing, then locking and observing again), and no host can change
    /// between the plan shown and the plan carried out. `review` sees the
    /// plan (shows it, asks for confirmation) and decides; when it stops,
    /// every lock and lease is given back and nothing was changed.
    public func planAndApply(_ fleet: DesiredFleet, events: @escaping @Sendable (ApplyEvent) -> Void = { _ in },
                             review: (PlanningResult) async throws -> PlanReview) async throws -> PlanAndApplyOutcome {
        let regions = Array(Set(fleet.desired.map(\.region))).sorted()
        var planned: PlanningResult?
        let ended = try await withRun(regions: regions, fleetCommit: fleet.basis.gitCommit, planHash: nil) { run in
            var seen = try await lockAndObserve(fleet.desired, run: run, events: { _ in })
            let failures = seen.failures.keys.sorted().flatMap { seen.failures[$0] ?? [] }
            let result = PlanEngine.plan(fleet, observed: seen.observed, failures: failures, secrets: try await keyedComparison())
            planned = result
            // Regions left out of the plan (a host could not be observed or locked) keep no lock.
            let leftOut = Set(seen.failures.keys)
            await releaseLocks(seen.lockedHosts.filter { leftOut.contains($0.region) }, run: run)
            seen.lockedHosts = seen.lockedHosts.filter { !leftOut.contains($0.region) }
            seen.failures = [:]
            let decision: PlanReview
            do {
                _ = try await store.recordPlan(run, planHash: result.plan.hash)
                decision = try await review(result)
                if case .apply = decision { try checkGovernance(result.plan) }
            } catch {
                await releaseLocks(seen.lockedHosts, run: run)
                throw error
            }
            switch decision {
            case .stop(let exitCode, let reason):
                await releaseLocks(seen.lockedHosts, run: run)
                return .stopped(exitCode: exitCode, reason: reason)
            case .apply:
                return .applied(try await applyHoldingLeases(result.plan, fleet: fleet, run: run, verification: .replan, seen: seen, events: events))
            }
        }
        guard let planned else { preconditionFailure("withRun returns only after its body planned") }
        switch ended {
        case .applied(let report): return .applied(report, planned)
        case .stopped(let exitCode, _): return .stopped(planned, exitCode: exitCode)
        }
    }

    /// How a run's work ended, for `withRun` to record.
    enum RunEnd: Sendable {
        case applied(ApplyReport)
        /// Stopped before any change (nothing to change, or not confirmed).
        case stopped(exitCode: Int32, reason: String)
    }

    /// Starts a run, takes the regions' leases and keeps them renewed while
    /// `body` works, then records how it ended and gives the leases back
    /// (also when `body` throws).
    func withRun(regions: [String], fleetCommit: String?, planHash: String?, _ body: (RunID) async throws -> RunEnd) async throws -> RunEnd {
        try await recoverAbandonedRuns()
        let run = try await store.startRun(RunStart(kind: .apply, owner: identity, fleetCommit: fleetCommit, planHash: planHash, regions: regions))
        do {
            _ = try await store.acquireLeases(regions: regions, holder: identity, run: run.id, ttl: leaseTTL)
        } catch StateStoreError.leaseHeld(let conflict) {
            _ = try await store.finishRun(run.id, outcome: .failed, exitCode: 4, summary: "refused: \(conflict)")
            throw ApplyRefusal.leaseHeld(conflict)
        }
        // Renew the leases while the run works, so a long apply keeps them; a lost lease only stops renewal
        // (the run is already past its checks and finishes what it started, as the journal records).
        let store = self.store
        let holder = identity
        let ttl = leaseTTL
        let renewal = Task {
            while !Task.isCancelled {
                do { try await Task.sleep(for: ttl / 3) } catch { return }
                do { _ = try await store.renewLeases(regions: regions, holder: holder, ttl: ttl) } catch { return }
            }
        }
        defer { renewal.cancel() }
        do {
            let ended = try await body(run.id)
            switch ended {
            case .applied(let report):
                let summary = report.regions.map { "\($0.region): \(Self.describe($0.result))" }.joined(separator: "; ")
                let outcome: RunOutcome = report.exitCode == 0 ? .succeeded : report.exitCode == 3 ? .rolledBack : .failed
                _ = try await store.finishRun(run.id, outcome: outcome, exitCode: report.exitCode, summary: summary)
                _ = try await store.appendAudit(AuditRecord(actor: identity.actor, action: "apply", subject: regions.joined(separator: " "),
                                                            detail: JSONDetail(["run": String(run.id.rawValue), "plan": report.planHash, "exit": String(report.exitCode), "summary": summary])))
            case .stopped(let exitCode, let reason):
                _ = try await store.finishRun(run.id, outcome: exitCode == 0 ? .succeeded : .failed, exitCode: exitCode, summary: reason)
            }
            _ = try await store.releaseLeases(regions: regions, holder: identity)
            return ended
        } catch {
            _ = try? await store.finishRun(run.id, outcome: .failed, exitCode: 1, summary: "\(error)")
            _ = try? await store.releaseLeases(regions: regions, holder: identity)
            throw error
        }
    }

    static func describe(_ result: RegionApplyResult) -> String {
        switch result {
        case .applied(let changed, let hosts): return "applied (\(changed) of \(hosts) hosts changed)"
        case .failed(let failures): return "failed: " + failures.map(\.description).joined(separator: "; ")
        case .locked(let failures): return "locked: " + failures.map(\.description).joined(separator: "; ")
        case .rolledBack(let reasons): return "rolled back: " + reasons.joined(separator: "; ")
        case .notStarted(let reason): return "not started: " + reason
        }
    }

    /// A host's work, decided before anything on it changes.
    struct Prepared: Sendable {
        var steps: [HostStep]
        var contents: [String: Data]
        var manifest: HostManifest
    }

    /// What planning with keyed comparison needs from this engine's store and secrets.
    public func keyedComparison() async throws -> KeyedComparison {
        var sensitive: [HostID: Set<String>] = [:]
        for record in try await store.latestManifests(region: nil) {
            guard let manifest = try? JSONDecoder().decode(HostManifest.self, from: record.manifest) else { continue }
            sensitive[HostID(region: record.region, host: record.host)] = manifest.sensitivePaths
        }
        return KeyedComparison(fleetKey: try await store.fileHashKey(), recordedSensitive: sensitive, secrets: secrets)
    }

    /// What the state store knows of each host before observing it: the
    /// paths that were sensitive when last applied.
    func recordedSensitivity(_ hosts: [DesiredHostState]) async throws -> [HostID: Set<String>] {
        var sensitive: [HostID: Set<String>] = [:]
        for host in hosts {
            guard let record = try await store.latestManifest(region: host.region, host: host.host),
                  let manifest = try? JSONDecoder().decode(HostManifest.self, from: record.manifest) else { continue }
            sensitive[host.id] = manifest.sensitivePaths
        }
        return sensitive
    }

    /// What the first phase found: each host observed under this run's
    /// lock, or the reason it could not be. Failures are kept by region,
    /// because a failed host fails its whole region.
    struct LockedObservation: Sendable {
        var observed: [HostID: ObservedHostState] = [:]
        /// Hosts whose lock this run holds, in the order given.
        var lockedHosts: [DesiredHostState] = []
        var failures: [String: [HostFailure]] = [:]
        /// Hosts whose lock another run holds.
        var heldElsewhere: [String: [HostFailure]] = [:]
        /// The store's file hash key, under which hosts hashed their sensitive files.
        var fleetKey = Data()

        /// Locked hosts of regions where every host was observed and locked.
        var proceeding: [DesiredHostState] {
            let blocked = Set(failures.keys).union(heldElsewhere.keys)
            return lockedHosts.filter { !blocked.contains($0.region) }
        }
    }

    /// The phases in order; a rollout runs them separately, region by region
    /// and across pauses: lock and observe, check the plan against what was
    /// seen, prepare every host's work, change the hosts, summarise.
    /// `seen` is the locked observation when the plan was made from it (`planAndApply`).
    func applyHoldingLeases(_ plan: Plan, fleet: DesiredFleet, run: RunID, verification: PlanVerification, seen observedBefore: LockedObservation?, events: @escaping @Sendable (ApplyEvent) -> Void) async throws -> ApplyReport {
        let desiredByID = Dictionary(fleet.desired.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var seen: LockedObservation
        if let observedBefore {
            seen = observedBefore
            for host in seen.lockedHosts { events(.observed(region: host.region, host: host.host)) }
        } else {
            seen = try await lockAndObserve(plan.hosts.compactMap { desiredByID[$0.id] }, run: run, events: events)
        }
        // Gateways are rendered at the traffic splits the locked hosts record.
        var fleet = fleet
        fleet.desired = RecordedSplits.rendered(fleet.desired, observed: seen.observed)
        let rendered = Dictionary(fleet.desired.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        seen.lockedHosts = seen.lockedHosts.map { rendered[$0.id] ?? $0 }
        try await refuseStale(plan, seen, run: run)
        try await refuseUnplanned(plan, fleet: fleet, seen, run: run, verification: verification)
        let (prepared, prepareFailures) = prepare(plan, hosts: seen.proceeding, observed: seen.observed, fleetKey: seen.fleetKey, run: run)
        seen.failures.merge(prepareFailures) { $0 + $1 }
        let running = seen.proceeding
        await releaseLocks(seen.lockedHosts.filter { host in !running.contains { $0.id == host.id } }, run: run)
        let waves = try await changeInWaves(plan, hosts: running, prepared: prepared, artifacts: fleet.artifacts, run: run, events: events)
        return summarise(plan, run: run, seen: seen, outcomes: waves.outcomes, regions: waves.regions)
    }

    /// Observes every host and takes its lock, in one round trip each. A
    /// lock left by an interrupted run of this store is removed and the host
    /// observed again; a lock of any other run blocks the host's region.
    func lockAndObserve(_ hosts: [DesiredHostState], run: RunID, events: @escaping @Sendable (ApplyEvent) -> Void) async throws -> LockedObservation {
        let request = lockRequest(run)
        let fleetKey = try await store.fileHashKey()
        let recorded = try await recordedSensitivity(hosts)
        let observations = await planning.observe(hosts, parallelism: parallelism, recordedSensitive: recorded, fleetKey: fleetKey) { _ in request }
        var seen = LockedObservation()
        seen.fleetKey = fleetKey
        for (host, outcome) in zip(hosts, observations) {
            switch outcome {
            case .failure(let failure):
                seen.failures[host.region, default: []].append(failure)
            case .success(var observation):
                if case .heldByOther(let holder) = observation.lock, let previous = runFromLock(holder),
                   let record = try await store.run(previous), !record.isRunning {
                    // Left by an interrupted run of this store, which this run's lease supersedes.
                    switch await retakeLock(host, from: holder, request: request, recordedSensitive: recorded[host.id] ?? [], fleetKey: fleetKey) {
                    case .success(let again): observation = again
                    case .failure(let failure): seen.failures[host.region, default: []].append(failure); continue
                    }
                }
                switch observation.lock {
                case .acquired, .tookOver, .notRequested:
                    seen.observed[host.id] = observation.state
                    seen.lockedHosts.append(host)
                    events(.observed(region: host.region, host: host.host))
                case .heldByOther(let holder):
                    // Observed all the same: a plan made from this observation shows what the region would get.
                    seen.observed[host.id] = observation.state
                    let who = holder.map { "\($0.holder), run \($0.runID), since \($0.startedAt.map(String.init) ?? "?"), until \($0.expiresAt.map(String.init) ?? "?")" } ?? "another run"
                    seen.heldElsewhere[host.region, default: []].append(HostFailure(region: host.region, host: host.host, reason: "its lock \(RemoteScripts.join(host.root, "state/lock")) is held by \(who); wait for that run, or remove the lock once it is gone"))
                case .failed(let reason):
                    seen.failures[host.region, default: []].append(HostFailure(region: host.region, host: host.host, reason: "cannot take its lock: \(reason)"))
                }
            }
        }
        return seen
    }

    /// Refuses the whole plan when any host it would change moved since it
    /// was made: every lock is given back and nothing is changed.
    func refuseStale(_ plan: Plan, _ seen: LockedObservation, run: RunID) async throws {
        let proceeding = Set(seen.proceeding.map(\.id))
        let stale = plan.staleHosts(observed: seen.observed).filter { proceeding.contains($0.host) }
        guard stale.isEmpty else {
            await releaseLocks(seen.lockedHosts, run: run)
            throw ApplyRefusal.staleHosts(stale)
        }
    }

    /// Carries out only what the planner could have produced: each action
    /// passes the fleet's rules, and (for plans from the planner as they are)
    /// planning the same regions against the locked hosts gives the same plan.
    /// Otherwise every lock is given back and nothing is changed.
    func refuseUnplanned(_ plan: Plan, fleet: DesiredFleet, _ seen: LockedObservation, run: RunID, verification: PlanVerification) async throws {
        let desiredByID = Dictionary(fleet.desired.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let proceeding = seen.proceeding
        let proceedingIDs = Set(proceeding.map(\.id))
        var violations: [String] = []
        for hostPlan in plan.hosts {
            guard let state = desiredByID[hostPlan.id] else { violations.append("host \(hostPlan.id) is not in the fleet"); continue }
            guard proceedingIDs.contains(hostPlan.id) else { continue }
            violations += PlanChecks.ruleViolations(hostPlan, desired: state, manifest: seen.observed[hostPlan.id]?.manifest.manifest)
        }
        if violations.isEmpty, verification == .replan {
            let proceedingRegions = Set(proceeding.map(\.region))
            let checked = plan.regions.filter { proceedingRegions.contains($0.name) }
            let regionNames = Set(checked.map(\.name))
            // Keyed rewrites depend on secrets the planning run held: take them as the plan
            // records them (each is checked to be a sensitive file of the host by the rules).
            var rewrites: [HostID: Set<String>] = [:]
            for host in checked.flatMap(\.hosts) { rewrites[host.id] = Set(host.keyedRewrites ?? []) }
            let fresh = Planner.plan(desired: fleet.desired.filter { regionNames.contains($0.region) }, observed: seen.observed, basis: plan.basis, keyedRewrites: rewrites)
            violations += PlanChecks.differences(saved: checked, fresh: fresh.regions)
        }
        if !violations.isEmpty {
            await releaseLocks(seen.lockedHosts, run: run)
            throw ApplyRefusal.notPlannerOutput(violations)
        }
    }

    /// Decides every host's steps and renders its secrets before anything
    /// changes. A host whose secrets cannot be rendered fails its region.
    func prepare(_ plan: Plan, hosts: [DesiredHostState], observed: [HostID: ObservedHostState], fleetKey: Data, run: RunID) -> (prepared: [HostID: Prepared], failures: [String: [HostFailure]]) {
        let hostPlans = Dictionary(plan.hosts.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let revision = "run \(run.rawValue)"
        let now = ISO8601DateFormatter().string(from: Date())
        var prepared: [HostID: Prepared] = [:]
        var failures: [String: [HostFailure]] = [:]
        for host in hosts {
            guard let hostPlan = hostPlans[host.id], let state = observed[host.id] else { continue }
            do {
                let key = HostFileKey.derive(fleetKey: fleetKey, region: host.region, host: host.host)
                var contents: [String: Data] = [:]
                var keyed: [String: String] = [:]
                var rewrite: [String] = []
                for file in host.files {
                    let data = try SensitiveRendering.render(file, secrets: secrets)
                    contents[file.path] = data
                    guard file.content.isSensitive else { continue }
                    // The host hashed its copy under its key: a changed secret value
                    // or an edit on the host shows as a different keyed hash.
                    let hash = key.keyedHash(data)
                    keyed[file.path] = hash
                    if !SensitiveRewrite.hostCopyMatches(state.files[file.path], keyedHash: hash, mode: file.mode) { rewrite.append(file.path) }
                }
                let manifest = ManifestBuilder.manifest(desired: host, plan: hostPlan, contents: contents, keyed: keyed, previous: state.manifest.manifest,
                                                        revision: revision, appliedAt: now, appliedBy: identity.actor)
                let steps = HostStep.batched(HostStep.steps(for: hostPlan, desired: host, rewriteSensitive: rewrite,
                                                            writeManifest: !ManifestBuilder.sameContent(state.manifest.manifest, manifest),
                                                            activeSlots: (state.manifest.manifest?.components ?? [:]).mapValues(\.activeSlot)))
                prepared[host.id] = Prepared(steps: steps, contents: contents, manifest: manifest)
            } catch {
                failures[host.region, default: []].append(HostFailure(region: host.region, host: host.host, reason: "\(error)"))
            }
        }
        return (prepared, failures)
    }

    /// Runs each host's prepared steps, hosts in parallel, then records its
    /// manifest and gives its lock back. Returns whether each host changed.
    func changeHosts(_ hosts: [DesiredHostState], prepared: [HostID: Prepared], artifacts: [String: LocalArtifact], run: RunID, events: @escaping @Sendable (ApplyEvent) -> Void) async -> [HostID: Result<Bool, HostFailure>] {
        let store = self.store
        let timings = self.timings
        let endpoints = hosts.map { planning.endpoint(for: $0) }
        let byID = Dictionary(hosts.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let release = LockReleaseScript(root: "", runID: lockRunID(run))
        let outcomes = await SSHFanOut.run(endpoints, parallelism: parallelism, pool: planning.sessions) { session -> Bool in
            guard let host = byID[session.endpoint.hostID], let work = prepared[host.id] else { return false }
            var unlock = release
            unlock.root = host.root
            // When the host's last step is a write batch, the lock is given back at its end, in the same command.
            let unlockFolded: Bool
            if case .writeBatch = work.steps.last { unlockFolded = true } else { unlockFolded = false }
            let applier = HostApplier(session: session, desired: host, steps: work.steps, contents: work.contents, manifest: work.manifest,
                                      artifacts: artifacts, store: store, run: run, timings: timings, events: events,
                                      afterLastStep: unlockFolded ? unlock.command : nil)
            do {
                try await applier.apply()
            } catch {
                _ = try? await session.exec(unlock.command)
                events(.hostFinished(region: host.region, host: host.host, error: "\(error)"))
                throw error
            }
            if work.steps.contains(where: \.writesManifest) {
                _ = try await store.recordManifest(run: run, region: host.region, host: host.host, manifest: work.manifest.encoded())
            }
            if !unlockFolded { _ = try? await session.exec(unlock.command) }
            events(.hostFinished(region: host.region, host: host.host, error: nil))
            return work.steps.contains { step in
                switch step {
                case .writeManifest, .prepareHost: return false
                case .writeBatch(_, let paths, _): return !paths.isEmpty
                case .installRelease, .writeFile, .deleteFile, .stopComponent, .linkSlot, .startComponent, .healthCheck, .smokeTest, .activateGateway: return true
                }
            }
        }
        var results: [HostID: Result<Bool, HostFailure>] = [:]
        for (host, outcome) in zip(hosts, outcomes) {
            results[host.id] = outcome.result.mapError { HostFailure(region: host.region, host: host.host, reason: "\($0)") }
        }
        return results
    }

    /// One line per region of the plan: applied, failed (with every failed
    /// host, and those locked by others) or locked.
    func summarise(_ plan: Plan, run: RunID, seen: LockedObservation, outcomes: [HostID: Result<Bool, HostFailure>], regions waves: [String: RegionApplyResult] = [:]) -> ApplyReport {
        var failures = seen.failures
        var changed: [String: Int] = [:]
        for (id, outcome) in outcomes.sorted(by: { $0.key < $1.key }) {
            switch outcome {
            case .success(let didChange): if didChange { changed[id.region, default: 0] += 1 }
            case .failure(let failure): failures[id.region, default: []].append(failure)
            }
        }
        let regions = plan.regions.map { region -> RegionApplyOutcome in
            if let failed = failures[region.name] { return RegionApplyOutcome(region: region.name, result: .failed(failed + (seen.heldElsewhere[region.name] ?? []))) }
            if let held = seen.heldElsewhere[region.name] { return RegionApplyOutcome(region: region.name, result: .locked(held)) }
            if let decided = waves[region.name] { return RegionApplyOutcome(region: region.name, result: decided) }
            return RegionApplyOutcome(region: region.name, result: .applied(hostsChanged: changed[region.name] ?? 0, hosts: region.hosts.count))
        }
        return ApplyReport(run: run, planHash: plan.hash, regions: regions)
    }

    func lockRequest(_ run: RunID) -> LockRequest {
        LockRequest(holder: "\(identity) (meridian apply)", runID: lockRunID(run), pid: Int(identity.pid), ttlSeconds: Int(leaseTTL.components.seconds))
    }

    /// Removes a lock an interrupted run of this store left, then observes and locks again.
    func retakeLock(_ host: DesiredHostState, from holder: RemoteLock?, request: LockRequest, recordedSensitive: Set<String>, fleetKey: Data) async -> Result<Observation, HostFailure> {
        guard let holder else { return .failure(HostFailure(region: host.region, host: host.host, reason: "its lock vanished while being read; try again")) }
        let outcome = await SSHFanOut.run([planning.endpoint(for: host)], parallelism: 1, pool: planning.sessions) { session in
            _ = try await session.run(LockReleaseScript(root: host.root, runID: holder.runID).command)
            return try await HostObserver.observe(PlanEngine.observeScript(for: host, lock: request, recordedSensitive: recordedSensitive, fleetKey: fleetKey), on: session)
        }
        return outcome[0].result.mapError { HostFailure(region: host.region, host: host.host, reason: "\($0)") }
    }

    /// Gives back the locks this run took on hosts it will not change.
    func releaseLocks(_ hosts: [DesiredHostState], run: RunID) async {
        guard !hosts.isEmpty else { return }
        let roots = Dictionary(hosts.map { ($0.id, $0.root) }, uniquingKeysWith: { a, _ in a })
        let runID = lockRunID(run)
        _ = await SSHFanOut.run(hosts.map { planning.endpoint(for: $0) }, parallelism: parallelism, pool: planning.sessions) { session in
            _ = try await session.exec(LockReleaseScript(root: roots[session.endpoint.hostID] ?? "/", runID: runID).command)
        }
    }
}
