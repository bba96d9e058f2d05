import Foundation
import MeridianModel
import MeridianBasics
import MeridianPlanning
import MeridianSSH
import MeridianState

/// What became of one remedy.
public struct DriftRemedyOutcome: Sendable {
    public var remedy: DriftRemedy
    /// A sentence: done, skipped and why, or the error.
    public var result: String
    public var succeeded: Bool

    public init(remedy: DriftRemedy, result: String, succeeded: Bool) {
        self.remedy = remedy
        self.result = result
        self.succeeded = succeeded
    }
}

/// Carries out the remedies `DriftRemediationPlanner` chose. Stale locks are
/// removed directly (a run of kind apply holding the regions' leases, a
/// journal step per lock, an audit entry): apply itself cannot, as the lock
/// blocks it. Everything else goes through `ApplyEngine` with a plan cut down
/// by `DriftApplyFilter`. Invariant: `execute` only acts on `.removeStaleLock`.
public struct DriftRemediator: Sendable {
    public let engine: DriftEngine
    public var leaseTTL: Duration = .seconds(300)

    public init(engine: DriftEngine) {
        self.engine = engine
    }

    public func execute(_ remedies: [DriftRemedy]) async throws -> [DriftRemedyOutcome] {
        let actionable = remedies.filter {
            switch $0 {
            case .removeStaleLock: return true
            case .throughApply, .notRemediated: return false
            }
        }
        var outcomes: [DriftRemedyOutcome] = remedies.compactMap {
            switch $0 {
            case .notRemediated(_, let reason): return DriftRemedyOutcome(remedy: $0, result: reason, succeeded: false)
            case .removeStaleLock, .throughApply: return nil
            }
        }
        guard !actionable.isEmpty else { return outcomes }
        let store = engine.store
        let owner = ProcessIdentity.current()
        let regions = Array(Set(actionable.map(\.finding.region))).sorted()
        let run = try await store.startRun(RunStart(kind: .apply, owner: owner, regions: regions))
        do {
            _ = try await store.acquireLeases(regions: regions, holder: owner, run: run.id, ttl: leaseTTL)
        } catch {
            _ = try? await store.finishRun(run.id, outcome: .failed, exitCode: 4, summary: "drift remediation could not take the leases: \(error)")
            throw error
        }
        let byHost = Dictionary(grouping: actionable) { $0.finding.hostID }
        let targets = engine.endpoints.endpoints(regions: regions).filter { byHost[HostID(region: $0.region.name, host: $0.host.name)] != nil }
        let results = await SSHFanOut.run(targets.map(\.endpoint), parallelism: engine.parallelism) { session in
            let key = session.endpoint.hostID
            return await Self.remedy(byHost[key] ?? [], on: session, run: run.id, store: store)
        }
        for (target, result) in zip(targets, results) {
            switch result.result {
            case .success(let hostOutcomes): outcomes.append(contentsOf: hostOutcomes)
            case .failure(let error):
                for remedy in byHost[HostID(region: target.region.name, host: target.host.name)] ?? [] {
                    outcomes.append(DriftRemedyOutcome(remedy: remedy, result: "\(error)", succeeded: false))
                }
            }
        }
        let failed = outcomes.filter { !$0.succeeded && !Self.isPlanOnly($0.remedy) }.count
        let done = actionable.count - failed
        _ = try? await store.appendAudit(AuditRecord(actor: owner.actor, action: "drift.remediate", subject: regions.joined(separator: " "),
                                                    detail: JSONDetail(["run": "\(run.id.rawValue)", "done": "\(done)", "failed": "\(failed)"])))
        _ = try? await store.releaseLeases(regions: regions, holder: owner)
        _ = try? await store.finishRun(run.id, outcome: failed == 0 ? .succeeded : .failed, exitCode: failed == 0 ? 0 : 1,
                                       summary: "drift remediation: \(done) fixed, \(failed) failed")
        return outcomes
    }

    static func isPlanOnly(_ remedy: DriftRemedy) -> Bool {
        switch remedy {
        case .notRemediated, .throughApply: return true
        case .removeStaleLock: return false
        }
    }

    static func remedy(_ remedies: [DriftRemedy], on session: SSHSession, run: RunID, store: any StateStore) async -> [DriftRemedyOutcome] {
        var outcomes: [DriftRemedyOutcome] = []
        let region = session.endpoint.region
        let host = session.endpoint.hostName
        for remedy in remedies {
            let step = try? await store.beginStep(StepStart(run: run, region: region, host: host, step: "drift-remediate", detail: JSONDetail(["what": remedy.summary])))
            var outcome: DriftRemedyOutcome
            do {
                switch remedy {
                case .removeStaleLock(_, let root, let runID, let leaseFree):
                    let script = LockReleaseScript(root: root, runID: runID, condition: .stale(leaseFree: leaseFree))
                    let output = try await session.run(HostObserver.shell, stdin: Data(script.script.utf8))
                    switch try LockReleaseScript.parse(output.stdout, host: session.endpoint.hostID.description).get() {
                    case .released: outcome = DriftRemedyOutcome(remedy: remedy, result: "removed the stale lock of run \(runID)", succeeded: true)
                    case .notHeld: outcome = DriftRemedyOutcome(remedy: remedy, result: "the lock was already gone", succeeded: true)
                    case .kept(let lock):
                        outcome = DriftRemedyOutcome(remedy: remedy, result: "kept the lock: it is now held by \(lock.holder) for run \(lock.runID) and is not stale", succeeded: false)
                    }
                case .throughApply, .notRemediated:
                    outcome = DriftRemedyOutcome(remedy: remedy, result: "not carried out here", succeeded: false)
                }
            } catch {
                outcome = DriftRemedyOutcome(remedy: remedy, result: "\(error)", succeeded: false)
            }
            if let step {
                _ = try? await store.finishStep(step, outcome: outcome.succeeded ? .ok : .failed, detail: JSONDetail(["result": outcome.result]))
            }
            outcomes.append(outcome)
        }
        return outcomes
    }
}

/// Remediation through apply was not started: nothing was changed.
public struct RemediationRefused: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "drift remediation changed nothing: \(reason)" }
}

/// The plan drift remediation hands to apply, the fleet it was made from,
/// and what becomes of each named finding. Invariant: `plan` holds only
/// actions named by a `.throughApply` remedy in `remedies`.
public struct DriftApplyRemediation: Sendable {
    public var plan: Plan
    public var fleet: DesiredFleet
    public var remedies: [DriftRemedy]
    /// Hosts whose regions could not be planned.
    public var failures: [HostFailure]
}

extension DriftRemediator {
    /// Plans the regions of the `.throughApply` remedies with `planning` and
    /// keeps only the actions that fix them. A host is left out when apply
    /// would change more there than the kept actions: when the manifest it
    /// would write differs (a change is pending in the fleet, and the manifest
    /// would record what was not applied), or when a sensitive file it does
    /// not write renders, with `secrets`, to other bytes than the host's copy
    /// (apply rewrites those on its own).
    public static func planThroughApply(_ remedies: [DriftRemedy], evidence: [HostID: HostDriftEvidence], planning: PlanEngine, secrets: any SecretResolver, fleetKey: Data, parallelism: Int) async throws -> DriftApplyRemediation {
        let wanted = remedies.compactMap { remedy -> String? in
            if case .throughApply(let finding, _) = remedy { return finding.region }
            return nil
        }
        let regions = Array(Set(wanted)).sorted()
        guard !regions.isEmpty else { throw RemediationRefused(reason: "no named finding is fixed through apply") }
        let result = try await planning.plan(regions: regions, parallelism: parallelism)
        let applied = evidence.compactMapValues(\.applied)
        let desired = Dictionary(result.fleet.desired.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var (plan, decided) = DriftApplyFilter.filter(result.plan, remedies: remedies, applied: applied, desired: desired)
        var pendingHosts: [HostID: String] = [:]
        for host in plan.hosts {
            guard let state = desired[host.id], let previous = applied[host.id] else { continue }
            let next = ManifestBuilder.manifest(desired: state, plan: host, contents: [:], keyed: [:], previous: previous, revision: "", appliedAt: "", appliedBy: "")
            if !ManifestBuilder.sameContent(previous, next, ignoringKeyedHashes: true) { pendingHosts[host.id] = Self.pending; continue }
            let written = Set(host.actions.filter { $0.kind == .createFile || $0.kind == .updateFile }.map(\.subject))
            for file in state.files where file.content.isSensitive && !written.contains(file.path) {
                guard let data = try? SensitiveRendering.render(file, secrets: secrets) else {
                    pendingHosts[host.id] = "\(file.path) cannot be rendered with the current secrets; run `meridian plan` and `meridian apply`"
                    break
                }
                let key = HostFileKey.derive(fleetKey: fleetKey, region: state.region, host: state.host)
                if SensitiveRewrite.hostCopyMatches(evidence[host.id]?.observed.files[file.path], keyedHash: key.keyedHash(data), mode: file.mode) { continue }
                pendingHosts[host.id] = "apply would also rewrite the sensitive file \(file.path), which was not named (its secrets changed, or it drifted); name it or run `meridian apply`"
                break
            }
        }
        if !pendingHosts.isEmpty {
            plan.regions = plan.regions.compactMap { region in
                var region = region
                region.hosts.removeAll { pendingHosts[$0.id] != nil }
                return region.hosts.isEmpty ? nil : region
            }
            decided = decided.map { remedy in
                guard case .throughApply(let finding, _) = remedy, let reason = pendingHosts[finding.hostID] else { return remedy }
                return .notRemediated(finding: finding, reason: reason)
            }
        }
        return DriftApplyRemediation(plan: plan, fleet: result.fleet, remedies: decided, failures: result.failures)
    }

    static let pending = "the fleet repository no longer renders what was applied to this host (a change is pending); run `meridian plan` and `meridian apply`"

    /// Applies the cut-down plan through the normal apply path, or refuses
    /// when it holds nothing, and says what became of each finding.
    public static func applyThroughApply(_ remediation: DriftApplyRemediation, apply: ApplyEngine) async throws -> [DriftRemedyOutcome] {
        let named = remediation.remedies.filter { if case .throughApply = $0 { return true } else { return false } }
        guard !remediation.plan.hosts.isEmpty, !named.isEmpty else {
            throw RemediationRefused(reason: "no planned action fixes the named findings without applying something else")
        }
        let report = try await apply.apply(remediation.plan, fleet: remediation.fleet, verification: .rulesOnly)
        var failed: [HostID: String] = [:]
        var regionFailed: [String: String] = [:]
        for region in report.regions {
            switch region.result {
            case .applied: continue
            case .failed(let hosts), .locked(let hosts):
                for host in hosts { failed[HostID(region: host.region, host: host.host)] = host.reason }
            case .rolledBack(let reasons): regionFailed[region.region] = "rolled back: " + reasons.joined(separator: "; ")
            case .notStarted(let reason): regionFailed[region.region] = "not started: " + reason
            }
        }
        let outcomes = named.map { remedy in
            let finding = remedy.finding
            if let reason = failed[finding.hostID] ?? regionFailed[finding.region] {
                return DriftRemedyOutcome(remedy: remedy, result: "apply \(report.run) failed: \(reason)", succeeded: false)
            }
            return DriftRemedyOutcome(remedy: remedy, result: "fixed by apply \(report.run)", succeeded: true)
        }
        // Apply audits its plan; this entry says which findings that plan was cut for.
        let fixed = outcomes.filter(\.succeeded).map { "\($0.remedy.finding.region)/\($0.remedy.finding.host) \($0.remedy.finding.kind.rawValue) \($0.remedy.finding.subject)" }
        _ = try? await apply.store.appendAudit(AuditRecord(actor: apply.identity.actor, action: "drift.remediate",
                                                           subject: remediation.plan.regions.map(\.name).joined(separator: " "),
                                                           detail: JSONDetail(["run": "\(report.run.rawValue)", "plan": report.planHash,
                                                                               "fixed": fixed.joined(separator: "; "), "failed": "\(outcomes.count - fixed.count)"])))
        return outcomes
    }
}
