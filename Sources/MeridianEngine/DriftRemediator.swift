import Foundation
import MeridianPlanning
import MeridianSSH
import MeridianState

/// What became of one remedy.
public struct DriftRemedyOutcome: Sendable {
    public var remedy: DriftRemedy
    /// A sentence: done, skipped and why, or the error.
    public var result: String
    public var succeeded: Bool
}

/// Carries out the remedies `DriftRemediationPlanner` chose, the way apply
/// changes hosts: a run of kind apply holding the regions' leases, a journal
/// step per remedy, the host's lock around file writes, and an audit entry.
/// Invariant: it only acts on `.removeStaleLock` and `.restoreFile`.
public struct DriftRemediator: Sendable {
    public let engine: DriftEngine
    public var leaseTTL: Duration = .seconds(300)

    public init(engine: DriftEngine) {
        self.engine = engine
    }

    public func execute(_ remedies: [DriftRemedy]) async throws -> [DriftRemedyOutcome] {
        let actionable = remedies.filter {
            switch $0 {
            case .removeStaleLock, .restoreFile: return true
            case .notRemediated: return false
            }
        }
        var outcomes: [DriftRemedyOutcome] = remedies.compactMap {
            if case .notRemediated(_, let reason) = $0 { return DriftRemedyOutcome(remedy: $0, result: reason, succeeded: false) }
            return nil
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
        let byHost = Dictionary(grouping: actionable) { "\($0.finding.region)/\($0.finding.host)" }
        let targets = engine.endpoints.endpoints(regions: regions).filter { byHost["\($0.region.name)/\($0.host.name)"] != nil }
        let results = await SSHFanOut.run(targets.map(\.endpoint), parallelism: engine.parallelism) { session in
            let key = "\(session.endpoint.region)/\(session.endpoint.hostName)"
            return await Self.remedy(byHost[key] ?? [], on: session, run: run.id, store: store)
        }
        for (target, result) in zip(targets, results) {
            switch result.result {
            case .success(let hostOutcomes): outcomes.append(contentsOf: hostOutcomes)
            case .failure(let error):
                for remedy in byHost["\(target.region.name)/\(target.host.name)"] ?? [] {
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
        if case .notRemediated = remedy { return true }
        return false
    }

    static func remedy(_ remedies: [DriftRemedy], on session: SSHSession, run: RunID, store: any StateStore) async -> [DriftRemedyOutcome] {
        var outcomes: [DriftRemedyOutcome] = []
        let region = session.endpoint.region
        let host = session.endpoint.hostName
        // Stale locks go first: file writes need the host's lock, which a stale one blocks.
        let ordered = remedies.filter { if case .removeStaleLock = $0 { return true } else { return false } }
            + remedies.filter { if case .removeStaleLock = $0 { return false } else { return true } }
        var heldLock: (root: String, runID: String)?
        for remedy in ordered {
            let step = try? await store.beginStep(StepStart(run: run, region: region, host: host, step: "drift-remediate", detail: JSONDetail(["what": remedy.summary])))
            var outcome: DriftRemedyOutcome
            do {
                switch remedy {
                case .removeStaleLock(_, let root, let runID, let leaseFree):
                    let script = StaleLockRemovalScript(root: root, runID: runID, leaseFree: leaseFree)
                    let output = try await session.run(HostObserver.shell, stdin: Data(script.script.utf8))
                    switch try StaleLockRemovalScript.parse(output.stdout, host: "\(region)/\(host)").get() {
                    case .removed: outcome = DriftRemedyOutcome(remedy: remedy, result: "removed the stale lock of run \(runID)", succeeded: true)
                    case .gone: outcome = DriftRemedyOutcome(remedy: remedy, result: "the lock was already gone", succeeded: true)
                    case .kept(let lock):
                        outcome = DriftRemedyOutcome(remedy: remedy, result: "kept the lock: it is now held by \(lock.holder) for run \(lock.runID) and is not stale", succeeded: false)
                    }
                case .restoreFile(_, let root, let path, let content, let mode):
                    if heldLock == nil {
                        let runID = "drift-remediate-\(run.rawValue)"
                        let request = LockRequest(holder: "\(ProcessIdentity.current().actor) (meridian drift --remediate)", runID: runID, pid: Int(getpid()), ttlSeconds: 300)
                        let observation = try await HostObserver.observe(ObserveScript(root: root, files: [], listedFolders: [], lock: request), on: session)
                        switch observation.lock {
                        case .acquired, .tookOver: heldLock = (root, runID)
                        case .heldByOther(let lock):
                            throw RemediationRefused(reason: "another run holds the host's lock (\(lock.map { "\($0.holder), run \($0.runID)" } ?? "unknown holder"))")
                        case .failed(let reason): throw RemediationRefused(reason: "could not take the host's lock: \(reason)")
                        case .notRequested: throw RemediationRefused(reason: "the host's lock was not taken")
                        }
                    }
                    let destination = root.hasSuffix("/") ? root + path : root + "/" + path
                    _ = try await session.upload(content, to: destination, mode: UInt32(mode))
                    outcome = DriftRemedyOutcome(remedy: remedy, result: "restored \(path) as applied", succeeded: true)
                case .notRemediated(_, let reason):
                    outcome = DriftRemedyOutcome(remedy: remedy, result: reason, succeeded: false)
                }
            } catch {
                outcome = DriftRemedyOutcome(remedy: remedy, result: "\(error)", succeeded: false)
            }
            if let step {
                _ = try? await store.finishStep(step, outcome: outcome.succeeded ? .ok : .failed, detail: JSONDetail(["result": outcome.result]))
            }
            outcomes.append(outcome)
        }
        if let heldLock {
            _ = try? await session.run(HostObserver.shell, stdin: Data(ReleaseLockScript(root: heldLock.root, runID: heldLock.runID).script.utf8))
        }
        return outcomes
    }
}

/// A remedy was not carried out because the host was not safe to change.
struct RemediationRefused: Error, CustomStringConvertible {
    var reason: String
    var description: String { "not changed: \(reason)" }
}
