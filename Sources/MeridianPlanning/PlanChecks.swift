import Foundation

/// The checks apply makes on a plan it did not just make itself: that every
/// action is one the fleet's rules allow on its host, and that planning the
/// same desired state against the host as observed under its lock gives the
/// same plan. Pure: apply refuses the plan when either returns a problem.
public enum PlanChecks {
    /// Actions a planner could never have produced for `desired` on a host
    /// whose manifest is `manifest`, as sentences naming the host and action.
    public static func ruleViolations(_ plan: HostPlan, desired: DesiredHostState, manifest: HostManifest?) -> [String] {
        var problems: [String] = []
        func problem(_ text: String) { problems.append("host \(plan.id): \(text)") }
        if plan.root != desired.root { problem("the plan's root \(plan.root) is not the host's root \(desired.root)") }
        if plan.address != desired.address { problem("the plan's address \(plan.address) is not the host's address \(desired.address)") }
        let files = Set(desired.files.map(\.path))
        let sensitive = Set(desired.files.filter(\.content.isSensitive).map(\.path))
        for path in plan.keyedRewrites ?? [] where !sensitive.contains(path) {
            problem("keyed rewrite of \(path): the fleet renders no sensitive file of that name for the host")
        }
        let components = Set(desired.components.map(\.component))
        for action in plan.actions {
            let name = "\(action.kind.rawValue) \(action.subject)"
            if action.id != "\(plan.id):\(action.kind.rawValue):\(action.subject)" { problem("\(name) has the id \(action.id), not its own") }
            switch action.kind {
            case .createFile, .updateFile:
                if let reason = ManagedFile.pathProblem(action.subject) { problem("\(name): \(reason)") }
                else if !files.contains(action.subject) { problem("\(name): the fleet does not render this file for the host") }
            case .deleteFile:
                if let reason = ManagedFile.pathProblem(action.subject) { problem("\(name): \(reason)") }
                else if manifest?.files[action.subject] == nil { problem("\(name): the host's manifest does not list it, so meridian does not manage it") }
                else if files.contains(action.subject) { problem("\(name): the fleet still renders this file") }
            case .installRelease:
                if !desired.releases.contains(where: { $0.path == action.subject && $0.component == action.component }) {
                    problem("\(name): no declared component of the host has this release")
                }
            case .upgradeComponent, .restartComponent:
                if !components.contains(action.subject) { problem("\(name): the host runs no declared component of this name") }
            case .noOp:
                if plan.actions.count != 1 { problem("a no_op action stands beside other actions") }
            }
        }
        return problems
    }

    /// Where `saved` and `fresh` (the plan of the same regions made now)
    /// differ in anything apply acts on; diffs, reasons and warnings are
    /// shown to people but never acted on, and are left out.
    public static func differences(saved: [RegionPlan], fresh: [RegionPlan]) -> [String] {
        var problems: [String] = []
        let freshRegions = Dictionary(fresh.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for region in saved {
            guard let now = freshRegions[region.name] else { problems.append("region \(region.name) is not planned now"); continue }
            let savedHosts = region.hosts.map(\.id)
            let freshHosts = now.hosts.map(\.id)
            if savedHosts != freshHosts {
                problems.append("region \(region.name) has hosts \(savedHosts.map(\.description).joined(separator: ", ")) in the plan, \(freshHosts.map(\.description).joined(separator: ", ")) now")
                continue
            }
            for (a, b) in zip(region.hosts, now.hosts) {
                let (x, y) = (normalized(a), normalized(b))
                guard x != y else { continue }
                var details: [String] = []
                if (x.root, x.address) != (y.root, y.address) { details.append("root or address") }
                if x.observedStateSHA256 != y.observedStateSHA256 || x.observedManifestSHA256 != y.observedManifestSHA256 { details.append("what was observed") }
                if x.sensitiveFiles != y.sensitiveFiles { details.append("the list of sensitive files") }
                let savedIDs = x.actions.map(\.id), freshIDs = y.actions.map(\.id)
                for id in savedIDs where !freshIDs.contains(id) { details.append("\(id) would not be planned") }
                for id in freshIDs where !savedIDs.contains(id) { details.append("\(id) is missing from the plan") }
                if savedIDs == freshIDs {
                    for (p, q) in zip(x.actions, y.actions) where p != q { details.append("\(p.id) differs") }
                    if details.isEmpty { details.append("the order of actions") }
                }
                problems.append("host \(a.id): \(details.joined(separator: "; "))")
            }
        }
        return problems
    }

    static func normalized(_ host: HostPlan) -> HostPlan {
        var host = host
        host.warnings = []
        host.actions = host.actions.map { action in
            var action = action
            action.diff = nil
            action.reasons = []
            return action
        }
        return host
    }
}
