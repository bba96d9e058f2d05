import Foundation
import MeridianBasics
import MeridianPlanning
import MeridianSSH

/// One thing apply does on one host, decided before anything runs. The
/// executor (`HostApplier`) carries the steps out in order and journals each
/// before and after; the scripts they run are built by `RemoteScripts`.
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
    /// Puts the gateway's new nginx configuration in place: written under
    /// router/, checked with `nginx -t`, swapped, nginx started or reloaded,
    /// and confirmed serving (`GatewayActivation`).
    case activateGateway
    case writeManifest

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
        case .activateGateway: return "check, put in place and reload the gateway configuration \(GatewayConfig.path)"
        case .writeManifest: return "write \(HostManifest.path)"
        }
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
                if action.subject == GatewayConfig.path, desired.gateway != nil { gatewayChanged = true; continue }
                steps.append(.writeFile(path: action.subject))
            case .deleteFile:
                steps.append(.deleteFile(path: action.subject))
            case .upgradeComponent:
                flushExtras()
                guard let layout = desired.components.first(where: { $0.component == action.subject }) else { continue }
                let slot = action.slot ?? layout.activeSlot
                steps.append(.stopComponent(component: layout.component, slot: slot))
                steps.append(.linkSlot(component: layout.component, slot: slot, version: layout.version))
                steps.append(.startComponent(component: layout.component, slot: slot))
                steps.append(.healthCheck(component: layout.component, slot: slot, address: layout.address, port: layout.port(slot), path: layout.healthPath))
            case .restartComponent:
                flushExtras()
                guard let layout = desired.components.first(where: { $0.component == action.subject }) else { continue }
                let slot = action.slot ?? layout.activeSlot
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
            let slot = recorded ?? activeSlots[component] ?? layout.activeSlot
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

/// The remote command lines apply runs, built from values with every word
/// quoted by `RemoteCommand`: nothing is interpolated into a shell by hand.
/// Each script is one `sh -c` invocation and needs only POSIX sh, coreutils and tar.
public enum RemoteScripts {
    static func q(_ word: String) -> String { RemoteCommand.quote(word) }

    static func join(_ root: String, _ path: String) -> String {
        root.hasSuffix("/") ? root + path : root + "/" + path
    }

    static func parent(_ path: String) -> String { (path as NSString).deletingLastPathComponent }

    /// Where the previous version of a managed file is kept.
    public static func previousPath(root: String, path: String) -> String { join(root, "state/previous/" + path) }
    /// Where a release archive is uploaded, named by its SHA-256.
    public static func incomingPath(root: String, sha256: String) -> String { join(root, "releases/.incoming/\(sha256).tar") }
    public static func pidFile(root: String, component: String, slot: SlotName) -> String { join(root, "run/\(component)-\(slot.rawValue).pid") }
    public static func logFile(root: String, component: String, slot: SlotName) -> String { join(root, "run/\(component)-\(slot.rawValue).log") }

    /// Removes upload temporaries left by interrupted runs, creates each file's folder, and copies every existing file to
    /// `state/previous/<path>` (through a temporary name, so the kept copy is whole).
    public static func prepareHost(root: String, keeping paths: [String]) -> RemoteCommand {
        var lines = ["set -e"]
        // Upload temporaries carry SSHSession.temporaryMarker; one left by a killed run is garbage (this run holds the lock).
        lines.append("find \(["config", "governance", "state", "releases/.incoming"].map { q(join(root, $0)) }.joined(separator: " ")) -name \(q("*" + SSHSession.temporaryMarker + "*")) -type f -exec rm -f -- {} + 2>/dev/null || true")
        var folders: Set<String> = [join(root, "state")]
        for path in paths {
            folders.insert(parent(join(root, path)))
            folders.insert(parent(previousPath(root: root, path: path)))
        }
        lines.append("mkdir -p -- " + folders.sorted().map(q).joined(separator: " "))
        for path in paths {
            let file = q(join(root, path))
            let kept = previousPath(root: root, path: path)
            lines.append("if [ -f \(file) ] && [ ! -L \(file) ]; then cp -p -- \(file) \(q(kept + ".tmp")) && mv -f -- \(q(kept + ".tmp")) \(q(kept)); fi")
        }
        return RemoteCommand(["sh", "-c", lines.joined(separator: "\n")])
    }

    /// Makes the incoming folder for release archives.
    public static func makeIncoming(root: String) -> RemoteCommand {
        RemoteCommand(["mkdir", "-p", "--", join(root, "releases/.incoming")])
    }

    /// Unpacks an uploaded archive into `releases/<component>/<version>`
    /// through a dot-named temporary folder renamed into place, so a release
    /// folder is either absent or complete. Left-over temporaries of an
    /// interrupted run are removed first (the run holds the host's lock).
    public static func unpackRelease(root: String, release: ReleaseRequirement) -> RemoteCommand {
        let folder = join(root, "releases/\(release.component)")
        let target = join(root, release.path)
        let temporary = join(folder, ".unpack-\(release.version)")
        let script = """
        set -e
        if [ -d \(q(target)) ]; then exit 0; fi
        mkdir -p -- \(q(folder))
        rm -rf -- \(q(temporary))
        mkdir -- \(q(temporary))
        tar -xf \(q(incomingPath(root: root, sha256: release.sha256))) -C \(q(temporary))
        mv -- \(q(temporary)) \(q(target))
        """
        return RemoteCommand(["sh", "-c", script])
    }

    public static func deleteFile(root: String, path: String) -> RemoteCommand {
        RemoteCommand(["rm", "-f", "--", join(root, path)])
    }

    /// Points a slot link at a release: a new link under a temporary name renamed over the old one.
    public static func linkSlot(root: String, component: String, slot: SlotName, version: String) -> RemoteCommand {
        let link = join(root, "slots/\(component)/\(slot.rawValue)")
        let target = join(root, "releases/\(component)/\(version)")
        let script = """
        set -e
        mkdir -p -- \(q(parent(link)))
        ln -sfn -- \(q(target)) \(q(link + ".new"))
        mv -fT -- \(q(link + ".new")) \(q(link))
        """
        return RemoteCommand(["sh", "-c", script])
    }

    /// Stops a slot's process: TERM to its process group (or the process),
    /// then KILL after `graceSeconds`; a zombie counts as stopped. Removes the pid file.
    public static func stop(root: String, component: String, slot: SlotName, graceSeconds: Int) -> RemoteCommand {
        let script = """
        p=\(q(pidFile(root: root, component: component, slot: slot)))
        [ -f "$p" ] || exit 0
        pid=$(head -c 32 "$p" | tr -dc 0-9)
        alive() {
          kill -0 "$1" 2>/dev/null || return 1
          if [ -r "/proc/$1/stat" ]; then
            case $(sed 's/^.*) //' "/proc/$1/stat" | cut -c1) in Z) return 1 ;; esac
          fi
          return 0
        }
        if [ -n "$pid" ] && alive "$pid"; then
          kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid" 2>/dev/null || true
          i=0
          while alive "$pid" && [ "$i" -lt \(max(1, graceSeconds) * 10) ]; do sleep 0.1; i=$((i + 1)); done
          if alive "$pid"; then
            kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null || true
            # KILL is delivered asynchronously: wait until the process is gone, so
            # its port is free before anything starts in its place.
            i=0
            while alive "$pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
            if alive "$pid"; then echo "process $pid did not stop after KILL" >&2; exit 1; fi
          fi
        fi
        rm -f -- "$p"
        """
        return RemoteCommand(["sh", "-c", script])
    }

    /// The start argv with `{address}`, `{port}`, `{slot}`, `{version}` and `{root}` replaced.
    public static func startArguments(_ layout: ComponentSlotLayout, slot: SlotName, root: String) -> [String] {
        layout.startCommand.map { word in
            word.replacingOccurrences(of: "{address}", with: layout.address)
                .replacingOccurrences(of: "{port}", with: String(layout.port(slot)))
                .replacingOccurrences(of: "{slot}", with: slot.rawValue)
                .replacingOccurrences(of: "{version}", with: layout.version)
                .replacingOccurrences(of: "{root}", with: root)
        }
    }

    /// Starts a slot's process detached from the SSH session (its own
    /// session when `setsid` exists, else `nohup`), from the slot folder,
    /// with output appended to `run/<component>-<slot>.log`; writes its pid
    /// file through a temporary name.
    public static func start(root: String, layout: ComponentSlotLayout, slot: SlotName) -> RemoteCommand {
        let argv = RemoteCommand(startArguments(layout, slot: slot, root: root)).line
        let pid = pidFile(root: root, component: layout.component, slot: slot)
        let script = """
        set -e
        mkdir -p -- \(q(join(root, "run")))
        cd -- \(q(join(root, layout.slotPath(slot))))
        l=\(q(logFile(root: root, component: layout.component, slot: slot)))
        if command -v setsid >/dev/null 2>&1; then
          setsid \(argv) >>"$l" 2>&1 </dev/null &
        else
          nohup \(argv) >>"$l" 2>&1 </dev/null &
        fi
        echo "$!" > \(q(pid + ".tmp"))
        mv -f -- \(q(pid + ".tmp")) \(q(pid))
        """
        return RemoteCommand(["sh", "-c", script])
    }

    /// Whether the slot's process named by its pid file is still running: prints `alive` or `dead`.
    public static func isRunning(root: String, component: String, slot: SlotName) -> RemoteCommand {
        let script = """
        pid=$(head -c 32 \(q(pidFile(root: root, component: component, slot: slot))) 2>/dev/null | tr -dc 0-9)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ! { [ -r "/proc/$pid/stat" ] && [ "$(sed 's/^.*) //' "/proc/$pid/stat" | cut -c1)" = Z ]; }; then echo alive; else echo dead; fi
        """
        return RemoteCommand(["sh", "-c", script])
    }

    /// The last lines of a slot's log, for a failed start's message.
    public static func logTail(root: String, component: String, slot: SlotName) -> RemoteCommand {
        RemoteCommand(["tail", "-n", "5", "--", logFile(root: root, component: component, slot: slot)])
    }
}
