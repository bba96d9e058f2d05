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

/// How one region's apply ended.
public enum RegionApplyResult: Sendable, Equatable {
    case applied(hostsChanged: Int, hosts: Int)
    case failed([HostFailure])
    /// A host's lock is held by another run.
    case locked([HostFailure])
}

/// One region's line of the apply summary.
public struct RegionApplyOutcome: Sendable, Equatable {
    public var region: String
    public var result: RegionApplyResult
}

/// What an apply did. Invariant: `exitCode` is 0 when every region
/// applied, 4 when the only failures are locks held by other runs, else 1.
public struct ApplyReport: Sendable {
    public var run: RunID
    public var planHash: String
    public var regions: [RegionApplyOutcome]

    public var exitCode: Int32 {
        var locked = false
        for region in regions {
            switch region.result {
            case .applied: continue
            case .failed: return 1
            case .locked: locked = true
            }
        }
        return locked ? 4 : 0
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

    public init(planning: PlanEngine, store: any StateStore, identity: ProcessIdentity = .current(), secrets: any SecretResolver, parallelism: Int, leaseTTL: Duration = .seconds(1800), timings: ApplyTimings = ApplyTimings()) {
        self.planning = planning
        self.store = store
        self.identity = identity
        self.secrets = secrets
        self.parallelism = parallelism
        self.leaseTTL = leaseTTL
        self.timings = timings
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
            for action in host.actions where (action.kind == .createFile || action.kind == .updateFile) && !action.sensitive {
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
        try await recoverAbandonedRuns()
        let regions = plan.regions.map(\.name)
        let run = try await store.startRun(RunStart(kind: .apply, owner: identity, fleetCommit: plan.basis.gitCommit, planHash: plan.hash, regions: regions))
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
            let report = try await applyHoldingLeases(plan, fleet: fleet, run: run.id, verification: verification, events: events)
            let summary = report.regions.map { "\($0.region): \(Self.describe($0.result))" }.joined(separator: "; ")
            _ = try await store.finishRun(run.id, outcome: report.exitCode == 0 ? .succeeded : .failed, exitCode: report.exitCode, summary: summary)
            _ = try await store.appendAudit(AuditRecord(actor: identity.actor, action: "apply", subject: regions.joined(separator: " "),
                                                        detail: JSONDetail(["run": String(run.id.rawValue), "plan": plan.hash, "exit": String(report.exitCode), "summary": summary])))
            _ = try await store.releaseLeases(regions: regions, holder: identity)
            return report
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
        }
    }

    struct Prepared: Sendable {
        var steps: [HostStep]
        var contents: [String: Data]
        var manifest: HostManifest
    }

    /// What planning with keyed comparison needs from this engine's store and secrets.
    public func keyedComparison() async throws -> KeyedComparison {
        var sensitive: [String: Set<String>] = [:]
        for record in try await store.latestManifests(region: nil) {
            guard let manifest = try? JSONDecoder().decode(HostManifest.self, from: record.manifest) else { continue }
            sensitive["\(record.region)/\(record.host)"] = manifest.sensitivePaths
        }
        return KeyedComparison(fleetKey: try await store.fileHashKey(), recordedSensitive: sensitive, secrets: secrets)
    }

    /// What the state store knows of each host before observing it: the
    /// paths that were sensitive when last applied.
    func recordedSensitivity(_ hosts: [DesiredHostState]) async throws -> [String: Set<String>] {
        var sensitive: [String: Set<String>] = [:]
        for host in hosts {
            guard let record = try await store.latestManifest(region: host.region, host: host.host),
                  let manifest = try? JSONDecoder().decode(HostManifest.self, from: record.manifest) else { continue }
            sensitive[host.id] = manifest.sensitivePaths
        }
        return sensitive
    }

    func applyHoldingLeases(_ plan: Plan, fleet: DesiredFleet, run: RunID, verification: PlanVerification, events: @escaping @Sendable (ApplyEvent) -> Void) async throws -> ApplyReport {
        let desiredByID = Dictionary(fleet.desired.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let hostPlans = plan.hosts
        let hosts = hostPlans.compactMap { desiredByID[$0.id] }
        let request = LockRequest(holder: "\(identity) (meridian apply)", runID: lockRunID(run), pid: Int(identity.pid), ttlSeconds: Int(leaseTTL.components.seconds))
        let fleetKey = try await store.fileHashKey()
        let recorded = try await recordedSensitivity(hosts)

        // Phase 1: observe every host and take its lock, in one round trip each.
        let store = self.store
        let engine = self
        let observations = await planning.observe(hosts, parallelism: parallelism, recordedSensitive: recorded, fleetKey: fleetKey) { _ in request }
        var failures: [String: [HostFailure]] = [:]
        var locked: [String: [HostFailure]] = [:]
        var observed: [String: ObservedHostState] = [:]
        var lockedHosts: [DesiredHostState] = []
        for (host, outcome) in zip(hosts, observations) {
            switch outcome {
            case .failure(let failure):
                failures[host.region, default: []].append(failure)
            case .success(var observation):
                if case .heldByOther(let holder) = observation.lock, let previous = engine.runFromLock(holder),
                   let record = try await store.run(previous), !record.isRunning {
                    // Left by an interrupted run of this store, which this run's lease supersedes.
                    switch await engine.retakeLock(host, from: holder, request: request, recordedSensitive: recorded[host.id] ?? [], fleetKey: fleetKey) {
                    case .success(let again): observation = again
                    case .failure(let failure): failures[host.region, default: []].append(failure); continue
                    }
                }
                switch observation.lock {
                case .acquired, .tookOver, .notRequested:
                    observed[host.id] = observation.state
                    lockedHosts.append(host)
                    events(.observed(region: host.region, host: host.host))
                case .heldByOther(let holder):
                    let who = holder.map { "\($0.holder), run \($0.runID), since \($0.startedAt.map(String.init) ?? "?"), until \($0.expiresAt.map(String.init) ?? "?")" } ?? "another run"
                    locked[host.region, default: []].append(HostFailure(region: host.region, host: host.host, reason: "its lock \(RemoteScripts.join(host.root, "state/lock")) is held by \(who); wait for that run, or remove the lock once it is gone"))
                case .failed(let reason):
                    failures[host.region, default: []].append(HostFailure(region: host.region, host: host.host, reason: "cannot take its lock: \(reason)"))
                }
            }
        }
        let blocked = Set(failures.keys).union(locked.keys)
        let proceeding = lockedHosts.filter { !blocked.contains($0.region) }

        // Refuse the whole plan when any host it would change moved since.
        let stale = plan.staleHosts(observed: observed).filter { stale in proceeding.contains { $0.id == stale.host } }
        if !stale.isEmpty {
            await releaseLocks(lockedHosts, run: run)
            throw ApplyRefusal.staleHosts(stale)
        }

        // Carry out only what the planner could have produced: each action
        // passes the fleet's rules, and (for plans from the planner as they
        // are) planning the same regions against the locked hosts gives the same plan.
        let proceedingIDs = Set(proceeding.map(\.id))
        var violations: [String] = []
        for hostPlan in hostPlans {
            guard let state = desiredByID[hostPlan.id] else { violations.append("host \(hostPlan.id) is not in the fleet"); continue }
            guard proceedingIDs.contains(hostPlan.id) else { continue }
            violations += PlanChecks.ruleViolations(hostPlan, desired: state, manifest: observed[hostPlan.id]?.manifest.manifest)
        }
        if violations.isEmpty, verification == .replan {
            let proceedingRegions = Set(proceeding.map(\.region))
            let checked = plan.regions.filter { proceedingRegions.contains($0.name) }
            let regionNames = Set(checked.map(\.name))
            // Keyed rewrites depend on secrets the planning run held: take them as the plan
            // records them (each is checked to be a sensitive file of the host by the rules).
            var rewrites: [String: Set<String>] = [:]
            for host in checked.flatMap(\.hosts) { rewrites[host.id] = Set(host.keyedRewrites ?? []) }
            let fresh = Planner.plan(desired: fleet.desired.filter { regionNames.contains($0.region) }, observed: observed, basis: plan.basis, keyedRewrites: rewrites)
            violations += PlanChecks.differences(saved: checked, fresh: fresh.regions)
        }
        if !violations.isEmpty {
            await releaseLocks(lockedHosts, run: run)
            throw ApplyRefusal.notPlannerOutput(violations)
        }

        // Decide every host's steps and render its secrets before changing anything.
        let revision = "run \(run.rawValue)"
        let now = ISO8601DateFormatter().string(from: Date())
        var prepared: [String: Prepared] = [:]
        for host in proceeding {
            guard let hostPlan = hostPlans.first(where: { $0.id == host.id }), let state = observed[host.id] else { continue }
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
                let steps = HostStep.steps(for: hostPlan, desired: host, rewriteSensitive: rewrite,
                                           writeManifest: !ManifestBuilder.sameContent(state.manifest.manifest, manifest),
                                           activeSlots: (state.manifest.manifest?.components ?? [:]).mapValues(\.activeSlot))
                prepared[host.id] = Prepared(steps: steps, contents: contents, manifest: manifest)
            } catch {
                failures[host.region, default: []].append(HostFailure(region: host.region, host: host.host, reason: "\(error)"))
            }
        }
        let secretFailed = Set(failures.keys)
        let running = proceeding.filter { !secretFailed.contains($0.region) }
        await releaseLocks(lockedHosts.filter { host in !running.contains { $0.id == host.id } }, run: run)

        // Phase 2: change the hosts.
        let artifacts = fleet.artifacts
        let timings = self.timings
        let mapping = FleetEndpoints(fleet: planning.fleet, fleetRoot: planning.fleetRoot, environment: planning.environment)
        let endpoints = running.map { PlanEngine.endpoint(for: $0, fleet: planning.fleet, mapping: mapping) }
        let byID = Dictionary(running.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let preparedByID = prepared
        let lockRunID = self.lockRunID(run)
        let outcomes = await SSHFanOut.run(endpoints, parallelism: parallelism) { session -> Bool in
            let id = "\(session.endpoint.region)/\(session.endpoint.hostName)"
            guard let host = byID[id], let work = preparedByID[id] else { return false }
            let applier = HostApplier(session: session, desired: host, steps: work.steps, contents: work.contents, manifest: work.manifest,
                                      artifacts: artifacts, store: store, run: run, timings: timings, events: events)
            do {
                try await applier.apply()
            } catch {
                _ = try? await session.exec(RemoteCommand(["sh", "-c", ReleaseLockScript(root: host.root, runID: lockRunID).script]))
                events(.hostFinished(region: host.region, host: host.host, error: "\(error)"))
                throw error
            }
            if work.steps.contains(.writeManifest) {
                _ = try await store.recordManifest(run: run, region: host.region, host: host.host, manifest: work.manifest.encoded())
            }
            _ = try? await session.exec(RemoteCommand(["sh", "-c", ReleaseLockScript(root: host.root, runID: lockRunID).script]))
            events(.hostFinished(region: host.region, host: host.host, error: nil))
            return work.steps.contains { step in
                switch step {
                case .writeManifest, .prepareHost: return false
                case .installRelease, .writeFile, .deleteFile, .stopComponent, .linkSlot, .startComponent, .healthCheck, .activateGateway: return true
                }
            }
        }
        var changed: [String: Int] = [:]
        for (host, outcome) in zip(running, outcomes) {
            switch outcome.result {
            case .success(let didChange): if didChange { changed[host.region, default: 0] += 1 }
            case .failure(let error):
                failures[host.region, default: []].append(HostFailure(region: host.region, host: host.host, reason: "\(error)"))
            }
        }
        let regions = plan.regions.map { region -> RegionApplyOutcome in
            if let failed = failures[region.name] { return RegionApplyOutcome(region: region.name, result: .failed(failed + (locked[region.name] ?? []))) }
            if let held = locked[region.name] { return RegionApplyOutcome(region: region.name, result: .locked(held)) }
            return RegionApplyOutcome(region: region.name, result: .applied(hostsChanged: changed[region.name] ?? 0, hosts: region.hosts.count))
        }
        return ApplyReport(run: run, planHash: plan.hash, regions: regions)
    }

    /// Removes a lock an interrupted run of this store left, then observes and locks again.
    func retakeLock(_ host: DesiredHostState, from holder: RemoteLock?, request: LockRequest, recordedSensitive: Set<String>, fleetKey: Data) async -> Result<Observation, HostFailure> {
        guard let holder else { return .failure(HostFailure(region: host.region, host: host.host, reason: "its lock vanished while being read; try again")) }
        let mapping = FleetEndpoints(fleet: planning.fleet, fleetRoot: planning.fleetRoot, environment: planning.environment)
        let endpoint = PlanEngine.endpoint(for: host, fleet: planning.fleet, mapping: mapping)
        let outcome = await SSHFanOut.run([endpoint], parallelism: 1) { session in
            _ = try await session.run(RemoteCommand(["sh", "-c", ReleaseLockScript(root: host.root, runID: holder.runID).script]))
            return try await HostObserver.observe(PlanEngine.observeScript(for: host, lock: request, recordedSensitive: recordedSensitive, fleetKey: fleetKey), on: session)
        }
        return outcome[0].result.mapError { HostFailure(region: host.region, host: host.host, reason: "\($0)") }
    }

    /// Gives back the locks this run took on hosts it will not change.
    func releaseLocks(_ hosts: [DesiredHostState], run: RunID) async {
        guard !hosts.isEmpty else { return }
        let mapping = FleetEndpoints(fleet: planning.fleet, fleetRoot: planning.fleetRoot, environment: planning.environment)
        let endpoints = hosts.map { PlanEngine.endpoint(for: $0, fleet: planning.fleet, mapping: mapping) }
        let roots = Dictionary(hosts.map { ("\($0.region)/\($0.host)", $0.root) }, uniquingKeysWith: { a, _ in a })
        let runID = lockRunID(run)
        _ = await SSHFanOut.run(endpoints, parallelism: parallelism) { session in
            let root = roots["\(session.endpoint.region)/\(session.endpoint.hostName)"] ?? "/"
            _ = try await session.exec(RemoteCommand(["sh", "-c", ReleaseLockScript(root: root, runID: runID).script]))
        }
    }
}
