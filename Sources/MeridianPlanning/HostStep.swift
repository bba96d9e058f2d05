import Foundation
import MeridianBasics
import MeridianModel

/// One thing apply does on one host, decided before anything runs. The
/// executor (MeridianEngine's `HostApplier`) carries the steps out in order
/// and journals each before and after; the scripts they run are built by
/// `RemoteScripts`. Deciding them is pure, so it lives here with the plan.
public enum HostStep: Sendable, Equatable {
    /// Removes what interrupted runs left (upload temporaries), creates
    /// parent folders and keeps a copy of every file about to be replaced or deleted.
    case prepareHost(keeping: [String])
    case installRelease(ReleaseRequirement)
    /// Writes a managed file (its content comes from the desired state; sensitive ones are rendered here).
    case writeFile(path: String)
    case deleteFile(path: String)
    case stopComponent(component: String, slot: SlotName)
    case linkSlot(component: String, slot: SlotName, version: String)
    case startComponent(component: String, slot: SlotName)
    /// Asks the slot at the host's service address, through the SSH connection.
    case healthCheck(component: String, slot: SlotName, address: String, port: Int, path: String)
    /// Sends the component's smoke probes straight to the slot, through the
    /// SSH connection (a recreate upgrade's check after its health check).
    case smokeTest(component: String, slot: SlotName)
    /// Puts the gateway's new nginx configuration in place: written under
    /// router/, checked with `nginx -t`, swapped, nginx started or reloaded,
    /// and confirmed serving (`GatewayActivation`).
    case activateGateway
    case writeManifest
    /// Consecutive `prepareHost` (when first), `writeFile`s and `writeManifest`
    /// done as one remote command (`RemoteScripts.writeBatch`): one round
    /// trip and one journal entry, every file still written whole.
    case writeBatch(keeping: [String]?, paths: [String], manifest: Bool)

    /// The sentence the journal and progress lines show.
    public var summary: String {
        switch self {
        case .prepareHost(let paths): return "prepare: keep previous versions of \(paths.count) file\(paths.count == 1 ? "" : "s")"
        case .installRelease(let release): return "install release \(release.component) \(release.version)"
        case .writeFile(let path): return "write \(path)"
        case .deleteFile(let path): return "delete \(path)"
        case .stopComponent(let component, let slot): return "stop \(component) (\(slot.rawValue))"
        case .linkSlot(let component, let slot, let version): return "point slot \(component)/\(slot.rawValue) at \(version)"
        case .startComponent(let component, let slot): return "start \(component) (\(slot.rawValue))"
        case .healthCheck(let component, let slot, let address, let port, let path): return "health-check \(component) (\(slot.rawValue)) on \(HostPort(address, port)) \(path)"
        case .smokeTest(let component, let slot): return "smoke-probe \(component) (\(slot.rawValue))"
        case .activateGateway: return "check, put in place and reload the gateway configuration \(GatewayConfig.path)"
        case .writeManifest: return "write \(HostManifest.path)"
        case .writeBatch(let keeping, let paths, let manifest):
            var parts: [String] = []
            if let keeping { parts.append(HostStep.prepareHost(keeping: keeping).summary) }
            if !paths.isEmpty { parts.append("write " + paths.joined(separator: ", ")) }
            if manifest { parts.append(HostStep.writeManifest.summary) }
            return parts.joined(separator: "; ")
        }
    }

    /// Whether the step writes the host's manifest.
    public var writesManifest: Bool {
        switch self {
        case .writeManifest: return true
        case .writeBatch(_, _, let manifest): return manifest
        case .prepareHost, .installRelease, .writeFile, .deleteFile, .stopComponent, .linkSlot, .startComponent, .healthCheck, .smokeTest, .activateGateway: return false
        }
    }

    /// The same steps with every run of `prepareHost` (only at its start),
    /// `writeFile` and `writeManifest` folded into one `writeBatch`, in the
    /// same order. A lone `prepareHost` stays as it is.
    public static func batched(_ steps: [HostStep]) -> [HostStep] {
        var result: [HostStep] = []
        var keeping: [String]?
        var paths: [String] = []
        var manifest = false
        var open = false
        func flush() {
            guard open else { return }
            if paths.isEmpty && !manifest, let keeping {
                result.append(.prepareHost(keeping: keeping))
            } else {
                result.append(.writeBatch(keeping: keeping, paths: paths, manifest: manifest))
            }
            (keeping, paths, manifest, open) = (nil, [], false, false)
        }
        for step in steps {
            switch step {
            case .prepareHost(let kept):
                flush()
                (keeping, open) = (kept, true)
            case .writeFile(let path) where !manifest:
                paths.append(path)
                open = true
            case .writeManifest where !manifest:
                (manifest, open) = (true, true)
            case .writeBatch, .writeFile, .writeManifest, .installRelease, .deleteFile, .stopComponent, .linkSlot, .startComponent, .healthCheck, .smokeTest, .activateGateway:
                flush()
                result.append(step)
            }
        }
        flush()
        return result
    }

    /// Whether `path` is one the gateway step writes: the configuration or a residency script.
    public static func isGatewayFile(_ path: String) -> Bool {
        path == GatewayConfig.path || GatewayResidencyScript.isScriptPath(path)
    }

    /// Decides a host's steps from its plan. `rewriteSensitive` names sensitive
    /// files whose rendering with the real secrets differs from the host's
    /// copy though the plan had no action for them. `writeManifest` is false
    /// only when nothing changes and the host's manifest already says so.
    /// `activeSlots` names each component's serving slot as the host's manifest records it.
    public static func steps(for plan: HostPlan, desired: DesiredHostState, rewriteSensitive: [String], writeManifest: Bool, activeSlots: [String: SlotName] = [:]) -> [HostStep] {
        var steps: [HostStep] = []
        let planned = Set(plan.actions.filter { $0.kind == .createFile || $0.kind == .updateFile }.map(\.subject))
        let extraWrites = rewriteSensitive.filter { !planned.contains($0) }
        let deletes = plan.actions.filter { $0.kind == .deleteFile }.map(\.subject)
        let kept = plan.actions.filter { $0.kind == .createFile || $0.kind == .updateFile }.map(\.subject) + extraWrites + deletes
        // Sensitive files the plan could not compare are rewritten after the
        // planned file changes and before any component starts, so a restart
        // reads them too.
        var extrasPending = !extraWrites.isEmpty
        // The gateway configuration is never written as a plain file: it goes
        // live through the gateway step, after this host's files and components.
        var gatewayChanged = false
        func flushExtras() {
            guard extrasPending else { return }
            extrasPending = false
            steps += extraWrites.map { .writeFile(path: $0) }
        }
        for action in plan.actions {
            switch action.kind {
            case .installRelease:
                if let release = desired.releases.first(where: { $0.path == action.subject }) { steps.append(.installRelease(release)) }
            case .createFile, .updateFile:
                if Self.isGatewayFile(action.subject), desired.gateway != nil { gatewayChanged = true; continue }
                steps.append(.writeFile(path: action.subject))
            case .deleteFile:
                // A replaced residency script stays until the gateway step has swapped in the
                // configuration naming its successor; that step removes it then.
                if GatewayResidencyScript.isScriptPath(action.subject), desired.gateway != nil { gatewayChanged = true; continue }
                steps.append(.deleteFile(path: action.subject))
            case .upgradeComponent:
                flushExtras()
                guard let layout = desired.components.first(where: { $0.component == action.subject }) else { continue }
                // The planner names the slot: the active one for recreate, the idle one for blue-green and canary.
                let slot = action.slot ?? ComponentSlotLayout.firstSlot
                steps.append(.stopComponent(component: layout.component, slot: slot))
                steps.append(.linkSlot(component: layout.component, slot: slot, version: layout.version))
                steps.append(.startComponent(component: layout.component, slot: slot))
                switch action.strategy ?? .recreate {
                case .recreate:
                    steps.append(.healthCheck(component: layout.component, slot: slot, address: layout.address, port: layout.port(slot), path: layout.healthPath))
                    if !layout.smoke.isEmpty { steps.append(.smokeTest(component: layout.component, slot: slot)) }
                case .blueGreen, .canary:
                    // The rollout health-checks and smoke-probes the idle slot as its own phases, so a
                    // failure there returns the region to its stable slot instead of failing a host step.
                    break
                }
            case .restartComponent:
                flushExtras()
                guard let layout = desired.components.first(where: { $0.component == action.subject }) else { continue }
                let slot = action.slot ?? ComponentSlotLayout.firstSlot
                steps.append(.stopComponent(component: layout.component, slot: slot))
                steps.append(.startComponent(component: layout.component, slot: slot))
                steps.append(.healthCheck(component: layout.component, slot: slot, address: layout.address, port: layout.port(slot), path: layout.healthPath))
            case .noOp:
                break
            }
        }
        flushExtras()
        // A sensitive file rewritten outside the plan (a secret value changed,
        // or its copy was edited on the host) restarts the component reading
        // it, unless the plan already upgrades or restarts that component.
        let acted = Set(plan.actions.filter { $0.kind == .upgradeComponent || $0.kind == .restartComponent }.map(\.subject))
        var restarted = Set<String>()
        for path in extraWrites {
            guard let component = desired.files.first(where: { $0.path == path })?.component, !acted.contains(component),
                  restarted.insert(component).inserted,
                  let layout = desired.components.first(where: { $0.component == component }) else { continue }
            let recorded = plan.actions.first { $0.component == component && $0.slot != nil }?.slot
            let slot = recorded ?? activeSlots[component] ?? ComponentSlotLayout.firstSlot
            steps.append(.stopComponent(component: component, slot: slot))
            steps.append(.startComponent(component: component, slot: slot))
            steps.append(.healthCheck(component: component, slot: slot, address: layout.address, port: layout.port(slot), path: layout.healthPath))
        }
        if gatewayChanged { steps.append(.activateGateway) }
        if writeManifest || !steps.isEmpty {
            steps.insert(.prepareHost(keeping: kept), at: 0)
            steps.append(.writeManifest)
        }
        return steps
    }
}


/// Whether a sensitive file on a host needs rewriting, judged by keyed hash only.
public enum SensitiveRewrite {
    public static func hostCopyMatches(_ observed: ObservedFile?, keyedHash: String, mode: Int) -> Bool {
        switch observed ?? .missing {
        case .sensitive(let hash?, let observedMode, _): return hash == keyedHash && observedMode == mode
        case .sensitive(nil, _, _), .regular, .missing, .notRegular: return false
        }
    }
}

/// Builds the manifest apply writes to a host: hashes, releases and slots,
/// never content. For a blue-green or canary upgrade the new version goes
/// into the idle slot with no traffic: the slot that served stays active
/// until the rollout moves traffic (and writes the manifest again).
public enum ManifestBuilder {
    public static func manifest(desired: DesiredHostState, plan: HostPlan, contents: [String: Data], keyed: [String: String], previous: HostManifest?, revision: String, appliedAt: String, appliedBy: String) -> HostManifest {
        var files: [String: ManifestFile] = [:]
        for file in desired.files {
            switch file.content {
            case .bytes(let data):
                files[file.path] = ManifestFile(sha256: SHA256.hex(data), maskedSHA256: nil, mode: file.mode, component: file.component)
            case .sensitive:
                files[file.path] = ManifestFile(sha256: nil, maskedSHA256: file.content.fingerprint, keyedSHA256: keyed[file.path], mode: file.mode, component: file.component)
            }
        }
        var components: [String: ManifestComponent] = [:]
        for layout in desired.components {
            let acted = plan.actions.first { ($0.kind == .upgradeComponent || $0.kind == .restartComponent) && $0.subject == layout.component }
            let old = previous?.components[layout.component]
            let slot = acted?.slot ?? old?.activeSlot ?? ComponentSlotLayout.firstSlot
            let beside: Bool
            switch acted?.strategy ?? .recreate {
            case .recreate: beside = false
            case .blueGreen, .canary: beside = acted?.kind == .upgradeComponent && old.map { $0.activeSlot != slot && $0.activeVersion != nil } == true
            }
            if beside, let old {
                // Installed beside the serving slot, which keeps its version and traffic.
                func entry(_ name: SlotName) -> ManifestSlot {
                    name == slot
                        ? ManifestSlot(version: layout.version, address: layout.address, port: layout.port(name), weight: 0)
                        : ManifestSlot(version: old.slot(name).version, address: layout.address, port: layout.port(name), weight: old.slot(name).weight)
                }
                components[layout.component] = ManifestComponent(activeSlot: old.activeSlot, blue: entry(.blue), green: entry(.green))
                continue
            }
            func entry(_ name: SlotName) -> ManifestSlot {
                name == slot
                    ? ManifestSlot(version: layout.version, address: layout.address, port: layout.port(name), weight: 100)
                    : ManifestSlot(version: old?.slot(name).version, address: layout.address, port: layout.port(name), weight: 0)
            }
            components[layout.component] = ManifestComponent(activeSlot: slot, blue: entry(.blue), green: entry(.green))
        }
        let releases = desired.releases.map { ManifestRelease(component: $0.component, version: $0.version, sha256: $0.sha256) }
            .sorted { ($0.component, $0.version) < ($1.component, $1.version) }
        return HostManifest(revision: revision, appliedAt: appliedAt, appliedBy: appliedBy, files: files, releases: releases, components: components)
    }

    /// Whether two manifests say the same about the host, whoever wrote them
    /// and when (and, with `ignoringKeyedHashes`, whatever the secret values).
    public static func sameContent(_ a: HostManifest?, _ b: HostManifest, ignoringKeyedHashes: Bool = false) -> Bool {
        guard let a else { return false }
        func files(_ m: HostManifest) -> [String: ManifestFile] {
            ignoringKeyedHashes ? m.files.mapValues { var f = $0; f.keyedSHA256 = nil; return f } : m.files
        }
        return files(a) == files(b) && a.releases == b.releases && a.components == b.components && a.schemaVersion == b.schemaVersion
    }
}
