import Foundation
import MeridianModel
import MeridianBasics

/// One fix `drift --remediate` decided on, before anything runs. Invariant:
/// only `.removeStaleLock` is carried out by drift itself; `.throughApply`
/// findings are fixed by actions of a plan handed to the apply engine, and
/// `actions` names them (empty until `DriftApplyFilter` chose them).
public enum DriftRemedy: Sendable, Equatable {
    /// Remove `<root>/state/lock` if it still names `runID` and is still
    /// stale when the host looks again.
    case removeStaleLock(finding: DriftFinding, root: String, runID: String, leaseFree: Bool)
    /// Fixed by these plan actions (ids), run by the normal apply path.
    case throughApply(finding: DriftFinding, actions: [String])
    /// Named, but not fixed by this meridian: the reason says why and what to do.
    case notRemediated(finding: DriftFinding, reason: String)

    public var finding: DriftFinding {
        switch self {
        case .removeStaleLock(let finding, _, _, _), .throughApply(let finding, _), .notRemediated(let finding, _):
            return finding
        }
    }

    /// One line for people: what will be (or would be) done.
    public var summary: String {
        switch self {
        case .removeStaleLock(let finding, _, let runID, _):
            return "\(finding.region)/\(finding.host): remove the stale lock of run \(runID)"
        case .throughApply(let finding, let actions):
            let how = actions.isEmpty ? "a plan action" : actions.joined(separator: ", ")
            return "\(finding.region)/\(finding.host): \(finding.kind.rawValue) \(finding.subject): apply \(how)"
        case .notRemediated(let finding, let reason):
            return "\(finding.region)/\(finding.host): \(finding.kind.rawValue) \(finding.subject): not remediated: \(reason)"
        }
    }
}

/// Decides the fixes for the findings of the named kinds, and only those.
public enum DriftRemediationPlanner {
    public static func plan(findings: [DriftFinding], kinds: Set<DriftKind>, evidence: [HostID: HostDriftEvidence], desired: [HostID: DesiredHostState]) -> [DriftRemedy] {
        var remedies: [DriftRemedy] = []
        for finding in findings.sorted() where kinds.contains(finding.kind) {
            let key = finding.hostID
            switch finding.kind {
            case .lockLeftBehind:
                guard let lock = evidence[key]?.observed.lock, let root = desired[key]?.root else {
                    remedies.append(.notRemediated(finding: finding, reason: "the lock was not observed on this run"))
                    continue
                }
                remedies.append(.removeStaleLock(finding: finding, root: root, runID: lock.runID, leaseFree: !(evidence[key]?.regionLeaseHeld ?? true)))
            case .managedFileModified, .managedFileMissing, .bundleMismatch, .gatewayConfigModified, .releaseMismatch, .slotMismatch, .componentNotRunning, .componentUnhealthy:
                remedies.append(.throughApply(finding: finding, actions: []))
            case .unmanagedFile, .manifestMismatch, .residencyViolation, .hostKeyChanged, .hostUnreachable:
                remedies.append(.notRemediated(finding: finding, reason: "this kind is never fixed automatically: \(finding.kind.fix)"))
            }
        }
        return remedies
    }
}

/// Cuts a full plan down to the actions that fix the named findings, on the
/// hosts where they were found. Pure. Invariant: every action it keeps puts
/// back what the host's manifest records as applied (a write of the applied
/// bytes, an applied release, the applied version relinked or restarted), so
/// a pending change and a kind not named are never applied.
public enum DriftApplyFilter {
    public static func filter(_ plan: Plan, remedies: [DriftRemedy], applied: [HostID: HostManifest], desired: [HostID: DesiredHostState]) -> (plan: Plan, remedies: [DriftRemedy]) {
        var kept: [HostID: [PlanAction]] = [:]
        var decided: [DriftRemedy] = []
        let hostPlans = Dictionary(plan.hosts.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for remedy in remedies {
            guard case .throughApply(let finding, _) = remedy else { decided.append(remedy); continue }
            let key = finding.hostID
            guard let hostPlan = hostPlans[key], let manifest = applied[key], let state = desired[key] else {
                decided.append(.notRemediated(finding: finding, reason: "the host was not planned (it could not be observed, or meridian never applied to it)"))
                continue
            }
            switch action(for: finding, in: hostPlan, manifest: manifest, desired: state) {
            case .success(let action):
                if !(kept[key]?.contains { $0.id == action.id } ?? false) { kept[key, default: []].append(action) }
                decided.append(.throughApply(finding: finding, actions: [action.id]))
            case .failure(let refusal):
                decided.append(.notRemediated(finding: finding, reason: refusal.reason))
            }
        }
        let regions = plan.regions.compactMap { region -> RegionPlan? in
            let hosts = region.hosts.compactMap { host -> HostPlan? in
                guard let actions = kept[host.id] else { return nil }
                // Keep the planner's order (releases, files, components); a constructed restart goes last.
                let order = Dictionary(host.actions.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
                var filtered = host
                filtered.actions = actions.sorted { (order[$0.id] ?? Int.max) < (order[$1.id] ?? Int.max) }
                return filtered
            }
            return hosts.isEmpty ? nil : RegionPlan(name: region.name, hosts: hosts)
        }
        return (Plan(basis: plan.basis, regions: regions), decided)
    }

    struct Refusal: Error {
        var reason: String
    }

    static let pending = "the fleet repository no longer renders what was applied (a change is pending); run `meridian plan` and `meridian apply`"

    static func action(for finding: DriftFinding, in host: HostPlan, manifest: HostManifest, desired: DesiredHostState) -> Result<PlanAction, Refusal> {
        switch finding.kind {
        case .managedFileModified, .managedFileMissing, .bundleMismatch, .gatewayConfigModified:
            guard let write = host.actions.first(where: { ($0.kind == .createFile || $0.kind == .updateFile) && $0.subject == finding.subject }),
                  let entry = manifest.files[finding.subject] else {
                return .failure(Refusal(reason: "the plan has no write of \(finding.subject)"))
            }
            let renders = desired.files.first { $0.path == finding.subject }?.content.fingerprint
            let same = entry.sha256.map { $0 == write.afterSHA256 } ?? (entry.maskedSHA256 == renders)
            return same ? .success(write) : .failure(Refusal(reason: pending))
        case .releaseMismatch:
            guard let install = host.actions.first(where: { $0.kind == .installRelease && "releases/\($0.component ?? "")/\($0.toVersion ?? "")" == finding.subject }) else {
                return .failure(Refusal(reason: "the fleet repository no longer asks for this release; run `meridian plan` and `meridian apply`"))
            }
            return .success(install)
        case .slotMismatch, .componentNotRunning, .componentUnhealthy:
            let name = componentName(finding)
            guard let component = manifest.components[name], let version = component.activeVersion,
                  let layout = desired.components.first(where: { $0.component == name }), layout.version == version else {
                return .failure(Refusal(reason: pending))
            }
            if finding.kind == .slotMismatch, finding.subject != "slots/\(name)/\(component.activeSlot.rawValue)" {
                return .failure(Refusal(reason: "only the active slot's link is repaired; the inactive slot is set again by the next upgrade"))
            }
            let planned = host.actions.first { ($0.kind == .upgradeComponent || $0.kind == .restartComponent) && $0.subject == name }
            if let planned {
                guard planned.toVersion == version, planned.slot == component.activeSlot else { return .failure(Refusal(reason: pending)) }
                return .success(planned)
            }
            guard finding.kind == .componentUnhealthy else {
                return .failure(Refusal(reason: "the host no longer shows it; nothing to do"))
            }
            // The planner has no health input: a restart is constructed for it.
            let slot = component.activeSlot
            return .success(PlanAction(
                id: "\(host.id):\(PlanActionKind.restartComponent.rawValue):\(name)", kind: .restartComponent, subject: name,
                component: name, fromVersion: version, toVersion: version, slot: slot, port: layout.port(slot),
                reasons: ["unhealthy: \(finding.detail)"]
            ))
        case .lockLeftBehind, .unmanagedFile, .manifestMismatch, .residencyViolation, .hostKeyChanged, .hostUnreachable:
            return .failure(Refusal(reason: "not fixed through apply"))
        }
    }

    /// `slots/<component>/<slot>` or `<component> (<slot>)`.
    static func componentName(_ finding: DriftFinding) -> String {
        if finding.subject.hasPrefix("slots/") {
            let parts = finding.subject.split(separator: "/")
            return parts.count == 3 ? String(parts[1]) : finding.subject
        }
        return String(finding.subject.split(separator: " ").first ?? "")
    }
}
