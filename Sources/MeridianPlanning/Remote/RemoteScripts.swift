import Foundation
import MeridianModel
import MeridianBasics

/// The remote command lines apply and rollouts run, built from values with
/// every word quoted by `RemoteCommand`: nothing is interpolated into a shell
/// by hand. Each script is one `sh -c` invocation and needs only POSIX sh,
/// coreutils and tar. This folder (`Remote/`) is the one home of remote shell
/// text: the observation, the lock scripts and these; tests compare them as
/// exact strings and run them under sh.
public enum RemoteScripts {
    static func q(_ word: String) -> String { RemoteCommand.quote(word) }

    public static func join(_ root: String, _ path: String) -> String {
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
        RemoteCommand(["sh", "-c", (["set -e"] + prepareLines(root: root, keeping: paths)).joined(separator: "\n")])
    }

    static func prepareLines(root: String, keeping paths: [String]) -> [String] {
        var lines: [String] = []
        // Upload temporaries carry UploadNaming.temporaryMarker; one left by a killed run is garbage (this run holds the lock).
        lines.append("find \(["config", "governance", "state", "releases/.incoming"].map { q(join(root, $0)) }.joined(separator: " ")) -name \(q("*" + UploadNaming.temporaryMarker + "*")) -type f -exec rm -f -- {} + 2>/dev/null || true")
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
        return lines
    }

    /// One file of a write batch: where it goes (under the root) and its mode.
    public struct BatchedFile: Sendable, Equatable {
        public var path: String
        public var mode: Int
        public init(path: String, mode: Int) {
            self.path = path
            self.mode = mode
        }
    }

    /// The standard input `writeBatch` reads: for each file, in order, a line
    /// `<sha256> <size>` and then exactly that many bytes. Hashes travel here,
    /// not in the command line, so nothing about a sensitive file's content
    /// reaches a process list or a log.
    public static func batchInput(_ contents: [Data]) -> Data {
        var input = Data()
        for data in contents {
            input.append(Data("\(SHA256.hex(data)) \(data.count)\n".utf8))
            input.append(data)
        }
        return input
    }

    /// Writes several files whole in one command (one round trip): with
    /// `keeping`, first does `prepareHost`'s work; then reads each file from
    /// standard input (`batchInput`) into a temporary name beside it, checks
    /// its size and SHA-256, sets its mode; once every file arrived whole,
    /// flushes them to disk and renames them into place in the order given
    /// (so a manifest listed last is never ahead of the files it records).
    /// Input that ends early renames nothing and removes every temporary; a
    /// kill mid-way leaves temporaries that the next prepare removes.
    /// `then` runs last, once everything is in place (the lock release when
    /// nothing follows on the host).
    public static func writeBatch(root: String, keeping: [String]?, files: [BatchedFile], then next: RemoteCommand? = nil) -> RemoteCommand {
        var lines = ["set -e"]
        if let keeping { lines += prepareLines(root: root, keeping: keeping) }
        let folders = Set(files.map { parent(join(root, $0.path)) }).sorted()
        if !folders.isEmpty { lines.append("mkdir -p -- " + folders.map(q).joined(separator: " ")) }
        let temporaries = files.indices.map { "\"$t\($0)\"" }
        for (index, file) in files.enumerated() {
            lines.append("t\(index)=\(q(join(root, file.path) + UploadNaming.temporaryMarker))$$")
        }
        if !files.isEmpty { lines.append("trap 'rm -f -- \(temporaries.joined(separator: " "))' EXIT") }
        for (index, file) in files.enumerated() {
            let t = temporaries[index]
            lines.append("IFS=' ' read -r h n || { echo \(q("the content of " + file.path + " did not arrive")) >&2; exit 1; }")
            lines.append("head -c \"$n\" > \(t)")
            lines.append("[ \"$(wc -c < \(t) | tr -d ' ')\" = \"$n\" ] && [ \"$(sha256sum < \(t) | cut -c1-64)\" = \"$h\" ] || { echo \(q("the content of " + file.path + " arrived incomplete")) >&2; exit 1; }")
            lines.append("chmod \(String(file.mode, radix: 8)) \(t)")
        }
        if !files.isEmpty {
            lines.append("sync \(temporaries.joined(separator: " ")) 2>/dev/null || sync")
            for (index, file) in files.enumerated() {
                lines.append("mv -f -- \(temporaries[index]) \(q(join(root, file.path)))")
            }
            lines.append("trap - EXIT")
        }
        if let next { lines.append(next.line) }
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

    /// Writes a small file whole in one command: standard input goes to a
    /// temporary name beside it, is checked against `sha256` (nothing is
    /// renamed when it arrived incomplete), flushed to disk, given `mode` and
    /// renamed over the file. One round trip where an SFTP upload takes several;
    /// rollouts write the manifest this way at every traffic change.
    public static func writeSmallFile(root: String, path: String, sha256: String, mode: Int) -> RemoteCommand {
        let target = join(root, path)
        let script = """
        set -e
        t=\(q(target)).meridian-tmp-$$
        trap 'rm -f -- "$t"' EXIT
        cat > "$t"
        [ "$(sha256sum < "$t" | cut -c1-64)" = \(q(sha256)) ] || { echo "the content arrived incomplete" >&2; exit 1; }
        chmod \(String(mode, radix: 8)) "$t"
        sync "$t" 2>/dev/null || sync
        mv -f -- "$t" \(q(target))
        trap - EXIT
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
        \(ProcessLiveness.shellFunction)
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
        \(ProcessLiveness.shellFunction)
        pid=$(head -c 32 \(q(pidFile(root: root, component: component, slot: slot))) 2>/dev/null | tr -dc 0-9)
        if [ -n "$pid" ] && alive "$pid"; then echo alive; else echo dead; fi
        """
        return RemoteCommand(["sh", "-c", script])
    }

    /// The last lines of a slot's log, for a failed start's message.
    public static func logTail(root: String, component: String, slot: SlotName) -> RemoteCommand {
        RemoteCommand(["tail", "-n", "5", "--", logFile(root: root, component: component, slot: slot)])
    }
}
