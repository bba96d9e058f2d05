import Foundation
import MeridianModel
import MeridianBasics

/// Turns desired and observed host states into a `Plan`. Pure: no clock, no
/// network, no file system; equal inputs give equal plans.
///
/// Order of actions on a host (docs/plan-format.md, "Action order"):
/// 1. install releases — unpacking touches nothing that runs;
/// 2. create and update files, the governance bundle first so that the rules
///    are in force before any component restarts with new configuration,
///    then by path;
/// 3. delete files no longer desired;
/// 4. upgrade components (new release, then start on the new configuration);
/// 5. restart components whose configuration changed but whose version did not.
public enum Planner {
    /// - Parameters:
    ///   - observed: keyed by `DesiredHostState.id` (`region/host`); a host
    ///     with no entry is planned as an empty host.
    ///   - previousContents: earlier file contents by fingerprint
    ///     (`ManagedFileContent.fingerprint`, i.e. SHA-256 or masked
    ///     fingerprint), from the state store, used for diffs when the
    ///     observation did not return the content.
    ///   - keyedRewrites: by host id, sensitive files whose keyed hash on the
    ///     host differs from their rendering with real secrets (worked out by
    ///     the caller, which holds the secrets): they are rewritten even when
    ///     their template did not change.
    public static func plan(
        desired: [DesiredHostState],
        observed: [HostID: ObservedHostState],
        basis: PlanBasis,
        previousContents: [String: Data] = [:],
        keyedRewrites: [HostID: Set<String>] = [:]
    ) -> Plan {
        var regions: [String: [HostPlan]] = [:]
        for host in desired {
            var plan = hostPlan(host, observed: observed[host.id] ?? ObservedHostState(), previousContents: previousContents, keyedRewrites: keyedRewrites[host.id] ?? [])
            if observed[host.id] == nil {
                plan.warnings.insert("the host was not observed: planned as an empty host", at: 0)
            }
            regions[host.region, default: []].append(plan)
        }
        return Plan(
            basis: basis,
            regions: regions.keys.sorted().map { name in
                RegionPlan(name: name, hosts: regions[name, default: []].sorted { $0.host < $1.host })
            }
        )
    }

    static func hostPlan(_ desired: DesiredHostState, observed: ObservedHostState, previousContents: [String: Data], keyedRewrites: Set<String> = []) -> HostPlan {
        let hostID = desired.id
        func actionID(_ kind: PlanActionKind, _ subject: String) -> String { "\(hostID):\(kind.rawValue):\(subject)" }
        let manifest = observed.manifest.manifest

        var installs: [PlanAction] = []
        let present = Set(observed.releases)
        for release in desired.releases.sorted(by: { ($0.component, $0.version) < ($1.component, $1.version) })
        where !present.contains(ObservedRelease(component: release.component, version: release.version)) {
            installs.append(PlanAction(
                id: actionID(.installRelease, release.path), kind: .installRelease, subject: release.path,
                component: release.component, afterSHA256: release.sha256, toVersion: release.version,
                artifact: release.artifact
            ))
        }

        var writes: [PlanAction] = []
        let orderedFiles = desired.files.sorted { lhs, rhs in
            let lhsBundle = lhs.path == DesiredHostState.governanceBundlePath
            let rhsBundle = rhs.path == DesiredHostState.governanceBundlePath
            if lhsBundle != rhsBundle { return lhsBundle }
            return lhs.path < rhs.path
        }
        var rewritten: [String] = []
        for file in orderedFiles {
            if let action = fileAction(file, observed: observed, manifest: manifest, previousContents: previousContents, id: actionID) {
                writes.append(action)
            } else if file.content.isSensitive, keyedRewrites.contains(file.path) {
                rewritten.append(file.path)
                writes.append(PlanAction(
                    id: actionID(.updateFile, file.path), kind: .updateFile, subject: file.path, component: file.component,
                    modeBefore: FileMode(file.mode), modeAfter: FileMode(file.mode), sensitive: true,
                    reasons: ["the host's copy differs by keyed hash from the rendering with the current secrets (a secret value changed, or the copy was edited): rewritten, content not shown"],
                    source: file.source
                ))
            }
        }

        // A gateway whose nginx is not running is started by the gateway step,
        // which puts the (unchanged) configuration in place first.
        if let gateway = desired.gateway, observed.gatewayRunning == false, !writes.contains(where: { $0.subject == GatewayConfig.path }) {
            let fingerprint = SHA256.hex(gateway.text)
            writes.append(PlanAction(
                id: actionID(.updateFile, GatewayConfig.path), kind: .updateFile, subject: GatewayConfig.path,
                beforeSHA256: fingerprint, afterSHA256: fingerprint, modeBefore: FileMode(0o644), modeAfter: FileMode(0o644),
                reasons: ["nginx is not running: the gateway step starts it with this configuration"], source: "gateway of \(desired.region)"
            ))
        }

        var deletes: [PlanAction] = []
        let desiredPaths = Set(desired.files.map(\.path))
        for (path, entry) in (manifest?.files ?? [:]).sorted(by: { $0.key < $1.key }) where !desiredPaths.contains(path) {
            var reasons = ["no longer in the configuration"]
            if observed.files[path] == .missing { reasons.append("already gone from the host") }
            deletes.append(PlanAction(
                id: actionID(.deleteFile, path), kind: .deleteFile, subject: path, component: entry.component,
                beforeSHA256: entry.isSensitive ? nil : entry.sha256, modeBefore: FileMode(entry.mode),
                sensitive: entry.isSensitive, reasons: reasons
            ))
        }

        var upgrades: [PlanAction] = []
        var restarts: [PlanAction] = []
        var rolloutNotes: [String] = []
        let changedPaths = (writes + deletes).reduce(into: [String: [String]]()) { changed, action in
            if let component = action.component { changed[component, default: []].append(action.subject) }
        }
        for layout in desired.components.sorted(by: { $0.component < $1.component }) {
            let recorded = manifest?.components[layout.component]
            let slot = recorded?.activeSlot ?? ComponentSlotLayout.firstSlot
            let current = recorded?.activeVersion
                ?? versionFromLink(observed.slotTarget(component: layout.component, slot: slot), component: layout.component)
            if current != layout.version, let recorded, recorded.slot(slot.other).version == layout.version, recorded.slot(slot.other).weight > 0 {
                // A rollout to this version is moving traffic: its weights are desired state, and the
                // rollout (not a new upgrade) carries it on, so the plan leaves the slots alone.
                rolloutNotes.append("a rollout of \(layout.component) to \(layout.version) is in progress (\(recorded.slot(slot.other).weight)% on \(slot.other.rawValue)); `meridian apply` or `meridian rollout resume \(desired.region)` carries it on")
                continue
            }
            if current != layout.version {
                var reasons: [String] = []
                if current == nil {
                    reasons.append("not deployed on this host yet")
                } else if let paths = changedPaths[layout.component] {
                    reasons.append("configuration changed: \(paths.joined(separator: ", "))")
                }
                let (strategy, target) = upgradeTarget(layout, active: slot, current: current, reasons: &reasons)
                upgrades.append(PlanAction(
                    id: actionID(.upgradeComponent, layout.component), kind: .upgradeComponent, subject: layout.component,
                    component: layout.component, fromVersion: current, toVersion: layout.version,
                    strategy: strategy, slot: target, port: layout.port(target), reasons: reasons
                ))
                continue
            }
            // The manifest says this version is active, but the slot's link was
            // changed by hand: relinking needs the stop, link, start of an upgrade.
            let target = observed.slotTarget(component: layout.component, slot: slot)
            if recorded != nil, versionFromLink(target, component: layout.component) != layout.version {
                upgrades.append(PlanAction(
                    id: actionID(.upgradeComponent, layout.component), kind: .upgradeComponent, subject: layout.component,
                    component: layout.component, fromVersion: current, toVersion: layout.version,
                    strategy: .recreate, slot: slot, port: layout.port(slot),
                    reasons: [target.map { "slot link points at \($0)" } ?? "slot link is missing"]
                ))
                continue
            }
            var reasons: [String] = []
            if let paths = changedPaths[layout.component] { reasons.append("configuration changed: \(paths.joined(separator: ", "))") }
            if let recorded, recorded.slot(slot).port != layout.port(slot) {
                reasons.append("port \(recorded.slot(slot).port) → \(layout.port(slot))")
            }
            if let recorded, let address = recorded.slot(slot).address, address != layout.address {
                reasons.append("address \(address) → \(layout.address)")
            }
            switch observed.process(component: layout.component, slot: slot) {
            case .none: reasons.append("not running (no pid file)")
            case .some(let process) where !process.alive: reasons.append("not running (pid \(process.pid.map(String.init) ?? "unreadable"))")
            case .some: break
            }
            if !reasons.isEmpty {
                restarts.append(PlanAction(
                    id: actionID(.restartComponent, layout.component), kind: .restartComponent, subject: layout.component,
                    component: layout.component, fromVersion: current, toVersion: layout.version,
                    slot: slot, port: layout.port(slot), reasons: reasons
                ))
            }
        }

        var actions = installs + writes + deletes + upgrades + restarts
        if actions.isEmpty {
            actions = [PlanAction(id: actionID(.noOp, hostID.description), kind: .noOp, subject: hostID.description)]
        }
        // Sensitive now, or when last applied: either way their observed state never enters a digest.
        let recordedSensitive = (manifest?.sensitivePaths ?? []).union(observed.files.compactMap { path, state in
            if case .sensitive = state { return path } else { return nil }
        })
        let sensitive = Set(desired.files.filter(\.content.isSensitive).map(\.path)).union(recordedSensitive).sorted()
        var warnings: [String] = rolloutNotes
        switch observed.manifest {
        case .absent, .present: break
        case .unreadable(_, let reason):
            warnings.append("\(HostManifest.path) cannot be used (\(reason)): planned as if meridian had not applied anything here")
        }
        return HostPlan(
            region: desired.region, host: desired.host, address: desired.address, root: desired.root,
            observedManifestSHA256: observed.manifest.sha256,
            observedStateSHA256: observed.planDigest(excluding: Set(sensitive)),
            sensitiveFiles: sensitive,
            keyedRewrites: rewritten.isEmpty ? nil : rewritten,
            warnings: warnings,
            actions: actions
        )
    }

    static func fileAction(
        _ file: ManagedFile,
        observed: ObservedHostState,
        manifest: HostManifest?,
        previousContents: [String: Data],
        id: (PlanActionKind, String) -> String
    ) -> PlanAction? {
        let after = file.content.displayBytes
        let label = file.path
        func diff(_ before: Data?) -> ContentDiff {
            UnifiedDiff.diff(old: before, new: after, oldLabel: "a/\(label)", newLabel: "b/\(label)")
        }
        func create() -> PlanAction {
            PlanAction(
                id: id(.createFile, file.path), kind: .createFile, subject: file.path, component: file.component,
                afterSHA256: file.content.isSensitive ? nil : file.content.fingerprint, modeAfter: FileMode(file.mode),
                sensitive: file.content.isSensitive, diff: diff(nil), source: file.source
            )
        }
        let state = observed.files[file.path] ?? .missing
        let remoteMode: Int
        switch state {
        case .missing:
            return create()
        case .notRegular:
            var action = create()
            action.kind = .updateFile
            action.id = id(.updateFile, file.path)
            action.reasons = ["something other than a regular file is at this path"]
            return action
        case .regular(_, let mode, _), .sensitive(_, let mode, _):
            remoteMode = mode
        }
        var reasons: [String] = []
        let modeChanged = remoteMode != file.mode
        if modeChanged { reasons.append("mode \(FileMode(remoteMode)) → \(FileMode(file.mode))") }
        let entry = manifest?.files[file.path]
        switch file.content {
        case .sensitive:
            let contentChanged = entry?.maskedSHA256 != file.content.fingerprint
            guard contentChanged || modeChanged else { return nil }
            var contentDiff: ContentDiff?
            if contentChanged {
                if let previous = entry?.maskedSHA256, let before = previousContents[previous] {
                    contentDiff = diff(before)
                } else if let entry, !entry.isSensitive {
                    reasons.append("becomes sensitive: it will be written with the current secrets")
                } else {
                    reasons.append(entry == nil
                        ? "not recorded as applied: it will be rewritten with the current secrets"
                        : "template or secret references changed; previous rendering not available")
                }
            }
            return PlanAction(
                id: id(.updateFile, file.path), kind: .updateFile, subject: file.path, component: file.component,
                modeBefore: FileMode(remoteMode), modeAfter: FileMode(file.mode), sensitive: true, diff: contentDiff,
                reasons: reasons, source: file.source
            )
        case .bytes:
            guard case .regular(let remoteHash, _, _) = state, entry?.isSensitive != true else {
                // Sensitive when applied: its old content is never compared,
                // hashed into the plan or shown, so it is always rewritten.
                reasons.append("was sensitive when applied: its previous content is not shown")
                return PlanAction(
                    id: id(.updateFile, file.path), kind: .updateFile, subject: file.path, component: file.component,
                    afterSHA256: file.content.fingerprint, modeBefore: FileMode(remoteMode), modeAfter: FileMode(file.mode),
                    sensitive: true, diff: diff(nil), reasons: reasons, source: file.source
                )
            }
            let contentChanged = remoteHash != file.content.fingerprint
            guard contentChanged || modeChanged else { return nil }
            var contentDiff: ContentDiff?
            if contentChanged {
                if let before = observed.fileContents[file.path] ?? previousContents[remoteHash] {
                    contentDiff = diff(before)
                } else {
                    reasons.append("previous content not available (remote hash \(remoteHash.prefix(12)))")
                }
            }
            return PlanAction(
                id: id(.updateFile, file.path), kind: .updateFile, subject: file.path, component: file.component,
                beforeSHA256: remoteHash, afterSHA256: file.content.fingerprint,
                modeBefore: FileMode(remoteMode), modeAfter: FileMode(file.mode), diff: contentDiff,
                reasons: reasons, source: file.source
            )
        }
    }

    /// How and into which slot a component moves to its new version: recreate
    /// replaces the serving slot; blue-green and canary install beside it, in
    /// the idle slot. A first install has no traffic to move and is a recreate.
    static func upgradeTarget(_ layout: ComponentSlotLayout, active: SlotName, current: String?, reasons: inout [String]) -> (RolloutStrategy, SlotName) {
        switch layout.strategy {
        case .recreate:
            return (.recreate, active)
        case .blueGreen, .canary:
            guard current != nil else {
                reasons.append("first install: no traffic to move, so no \(layout.strategy.rawValue) rollout")
                return (.recreate, active)
            }
            return (layout.strategy, active.other)
        }
    }

    /// The version a slot link points at: the last component of a target
    /// ending in `releases/<component>/<version>`, absolute or relative.
    public static func versionFromLink(_ target: String?, component: String) -> String? {
        guard let target else { return nil }
        let parts = target.split(separator: "/").map(String.init)
        guard parts.count >= 3, parts[parts.count - 3] == "releases", parts[parts.count - 2] == component else { return nil }
        return parts[parts.count - 1]
    }
}
