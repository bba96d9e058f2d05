import Foundation
import MeridianModel
import MeridianBasics

/// One managed path an observation asks about. When `fetchContentIfDifferent`
/// is set and the file's hash is not `expectedSHA256`, the observation returns
/// the file's content (up to the request's limit) so the plan can show a diff.
/// A `sensitive` path — and any path the host's `state/sensitive-paths`
/// lists — is never fetched nor hashed in plain: only its keyed hash is
/// returned (docs/plan-format.md, "Sensitive files").
public struct ObservedPathRequest: Sendable, Equatable {
    public var path: String
    public var expectedSHA256: String?
    public var fetchContentIfDifferent: Bool
    public var sensitive: Bool

    public init(path: String, expectedSHA256: String?, fetchContentIfDifferent: Bool, sensitive: Bool = false) {
        self.path = path
        self.sensitive = sensitive
        self.expectedSHA256 = sensitive ? nil : expectedSHA256
        self.fetchContentIfDifferent = sensitive ? false : fetchContentIfDifferent
    }
}

/// Asks to take the host's run lock in the same round trip as the observation.
/// Invariant: `holder` and `runID` hold no newline (the initializer replaces them).
public struct LockRequest: Sendable, Equatable {
    public var holder: String
    public var runID: String
    /// The pid of the meridian process on the control plane.
    public var pid: Int
    public var ttlSeconds: Int

    public init(holder: String, runID: String, pid: Int, ttlSeconds: Int) {
        self.holder = holder.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        self.runID = runID.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        self.pid = pid
        self.ttlSeconds = ttlSeconds
    }
}

/// What became of a lock request.
public enum LockOutcome: Sendable, Equatable {
    case notRequested
    case acquired
    /// The previous lock had expired and was replaced.
    case tookOver(previous: RemoteLock?)
    /// Another run holds an unexpired lock (nil when its file vanished or could not be read).
    case heldByOther(RemoteLock?)
    /// The lock file could not be written; the reason is the host's message.
    case failed(String)
}

/// The result of one observation round trip.
public struct Observation: Sendable, Equatable {
    public var state: ObservedHostState
    public var lock: LockOutcome
}

/// An observation's output that cannot be read, naming the host and line.
public struct ObservationParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var line: Int?
    public var reason: String
    public var description: String {
        if let line { return "host \(host): observation output line \(line): \(reason)" }
        return "host \(host): observation output: \(reason)"
    }
}

/// The one POSIX sh script that observes a host (and optionally takes its
/// lock) in a single round trip, and the parser of its output. The output
/// format is documented in docs/plan-format.md ("Observation output"): one
/// record a line, every name or content as `x` followed by lowercase hex of
/// its bytes, so no file name can break a line or a field.
public struct ObserveScript: Sendable, Equatable {
    public static let formatHeader = "meridian-observe 1"

    public var root: String
    public var files: [ObservedPathRequest]
    /// Folders under the root whose every file is listed, for drift.
    public var listedFolders: [String]
    public var lock: LockRequest?
    /// Largest file content returned for a diff, in bytes.
    public var contentLimit: Int
    /// Whether to report if the gateway's nginx runs (on gateway hosts).
    public var observesGateway: Bool
    /// The host's key for keyed hashes of sensitive files; without one they
    /// are observed with no hash at all.
    public var fileKey: HostFileKey?

    public init(root: String, files: [ObservedPathRequest], listedFolders: [String] = ["config", "governance"], lock: LockRequest? = nil, contentLimit: Int = UnifiedDiff.lineDiffLimit, observesGateway: Bool = false, fileKey: HostFileKey? = nil) {
        var root = root
        // Listed paths are made relative by cutting "<root>/"; a trailing slash would double it.
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
        self.files = files
        self.listedFolders = listedFolders
        self.lock = lock
        self.contentLimit = contentLimit
        self.observesGateway = observesGateway
        self.fileKey = fileKey
    }

    /// The requests for a desired state: every managed file, with content
    /// fetched only for files that are not sensitive now and were not
    /// sensitive when applied (`recordedSensitive`, from the state store's
    /// manifest; the host's own list is checked by the script).
    public init(desired: DesiredHostState, lock: LockRequest? = nil, recordedSensitive: Set<String> = [], fileKey: HostFileKey? = nil) {
        self.init(
            root: desired.root,
            files: desired.files.map { file in
                ObservedPathRequest(
                    path: file.path,
                    expectedSHA256: file.content.fingerprint,
                    fetchContentIfDifferent: true,
                    sensitive: file.content.isSensitive || recordedSensitive.contains(file.path)
                )
            },
            lock: lock,
            observesGateway: desired.gateway != nil,
            fileKey: fileKey
        )
    }

    /// `printf` escapes of the key's inner pad: the script never holds the key in any other form.
    var innerPadEscapes: String {
        guard let fileKey else { return "" }
        return HMACSHA256.innerPad(fileKey.bytes).map { "\\" + String(repeating: "0", count: 3 - String($0, radix: 8).count) + String($0, radix: 8) }.joined()
    }

    /// The script text, for `sh -c` or for sh's standard input.
    public var script: String {
        var s = """
        set -u
        umask 077
        PATH=/usr/local/bin:/usr/bin:/bin:$PATH
        root=\(ShellQuoting.quote(root))
        hx() { od -An -v -tx1 | tr -d ' \\n'; }
        field() { printf 'x'; printf '%s' "$1" | hx; }
        filefield() { printf 'x'; hx < "$1"; }
        echo '\(Self.formatHeader)'

        """
        if let lock {
            s += Self.lockAcquisition(lock)
        } else {
            s += "echo 'lock-outcome not-requested'\n"
        }
        s += """
        if [ -f "$root/state/lock" ]; then printf 'lock '; filefield "$root/state/lock"; printf '\\n'; else echo 'lock none'; fi
        if [ -f "$root/state/manifest.json" ]; then printf 'manifest '; filefield "$root/state/manifest.json"; printf '\\n'; else echo 'manifest none'; fi
        nl='
        '
        sens=$nl$(cat "$root/\(HostManifest.sensitivePathsFile)" 2>/dev/null)$nl
        listed() { case $sens in *"$nl$1$nl"*) return 0 ;; esac; return 1; }
        k='\(innerPadEscapes)'
        keyed() {
          st=$(stat -c '%a %s' -- "$2" 2>/dev/null) || { echo "file $1 missing"; return; }
          h=-
          if [ -n "$k" ]; then h=$( { printf "$k"; cat -- "$2"; } 2>/dev/null | sha256sum | cut -c1-64); fi
          echo "file $1 keyed ${h:--} $st"
        }
        set --
        meta=

        """
        // Per path, shell builtins only sort out missing and odd paths; the
        // regular files are then hashed and stat'ed by one sha256sum and one
        // stat for all of them, whose outputs come in argument order.
        for (index, file) in files.enumerated() {
            let expected = file.expectedSHA256 ?? "-"
            s += """
            f="$root"/\(ShellQuoting.quote(file.path))
            if [ -L "$f" ] || { [ -e "$f" ] && [ ! -f "$f" ]; }; then echo 'file \(index) other'
            elif [ ! -e "$f" ]; then echo 'file \(index) missing'
            elif [ ! -r "$f" ]; then echo 'file \(index) unreadable'
            elif \(file.sensitive ? "true" : "listed x" + Data(file.path.utf8).hexString); then keyed \(index) "$f"
            else set -- "$@" "$f"; meta="$meta \(index):\(Self.metaWord(expected)):\(file.fetchContentIfDifferent ? "1" : "0")"; fi

            """
        }
        s += """
        if [ $# -gt 0 ]; then
          stats=$(stat -c '%a %s' -- "$@" 2>/dev/null)$nl
          sha256sum -- "$@" 2>/dev/null | cut -c1-65 | {
            for f in "$@"; do
              IFS= read -r h || h=
              h=${h#\\\\}; h=${h%% *}
              st=${stats%%"$nl"*}; stats=${stats#*"$nl"}
              meta=${meta# }; w=${meta%% *}; meta=${meta#"$w"}
              i=${w%%:*}; r=${w#*:}; e=${r%%:*}; want=${r#*:}
              echo "file $i $h $st"
              if [ "$want" = 1 ] && [ "$h" != "$e" ] && [ "${st#* }" -le \(contentLimit) ] 2>/dev/null; then
                printf 'content %s ' "$i"; filefield "$f"; printf '\\n'
              fi
            done
          }
        fi

        """
        s += """
        printf 'releases x'
        for c in "$root"/releases/*; do
          [ -d "$c" ] || continue
          for v in "$c"/*; do
            [ -d "$v" ] || continue
            printf '%s\\0%s\\0' "${c##*/}" "${v##*/}"
          done
        done | hx
        printf '\\n'
        for c in "$root"/slots/*; do
          [ -d "$c" ] || continue
          for s in blue green; do
            printf 'slot '; field "${c##*/}"; printf ' %s ' "$s"
            if [ -L "$c/$s" ]; then readlink -- "$c/$s" | { printf 'x'; hx; }; else printf 'none'; fi
            printf '\\n'
          done
        done
        \(ProcessLiveness.shellFunction)
        for p in "$root"/run/*.pid; do
          [ -f "$p" ] || continue
          n=${p##*/}; n=${n%.pid}
          pid=$(head -c 32 "$p" | tr -d ' \\n\\r\\t')
          case $pid in
            ''|*[!0-9]*) pid=-; state=invalid ;;
            *) if alive "$pid"; then state=alive; else state=dead; fi ;;
          esac
          printf 'process '; field "$n"; printf ' %s %s\\n' "$pid" "$state"
        done

        """
        if observesGateway {
            // `alive` was defined above, before the slot processes.
            s += """
            gpid=$(head -c 32 "$root"/\(ShellQuoting.quote(GatewayConfig.pidPath)) 2>/dev/null | tr -dc 0-9)
            if [ -n "$gpid" ] && alive "$gpid"; then echo 'gateway running'; else echo 'gateway stopped'; fi

            """
        }
        for folder in listedFolders {
            // One od for all names: NUL-separated absolute paths, hex-encoded together.
            s += """
            if [ -d "$root"/\(ShellQuoting.quote(folder)) ]; then
              printf 'listed x'; find "$root"/\(ShellQuoting.quote(folder)) ! -type d -exec printf '%s\\0' {} + | hx; printf '\\n'
            fi

            """
        }
        s += "echo end\n"
        return s
    }

    /// An expected hash goes into the script unquoted inside a word list, so
    /// anything but 64 lowercase hex digits becomes `-` (never equal to a hash).
    static func metaWord(_ expected: String) -> String {
        let isHash = expected.utf8.count == 64 && expected.utf8.allSatisfy { hexValue($0) != nil }
        return isHash ? expected : "-"
    }

    /// Takes `<root>/state/lock` atomically: the new lock is written to a
    /// temporary file and hard-linked into place (link(2) fails when the name
    /// exists). An expired lock is moved aside, checked to still be the one
    /// judged expired, and replaced; a lock that changed meanwhile is put back.
    static func lockAcquisition(_ lock: LockRequest) -> String {
        """
        now=$(date +%s)
        lockfile="$root/state/lock"
        outcome=held
        previous=
        if mkdir -p "$root/state" 2>/dev/null && tmp="$root/state/.lock.$$" && {
          printf 'holder=%s\\n' \(ShellQuoting.quote(lock.holder))
          printf 'run=%s\\n' \(ShellQuoting.quote(lock.runID))
          printf 'pid=%s\\n' \(ShellQuoting.quote(String(lock.pid)))
          printf 'started=%s\\n' "$now"
          printf 'expires=%s\\n' "$((now + \(max(0, lock.ttlSeconds))))"
        } > "$tmp" 2>/dev/null; then
          for attempt in 1 2 3; do
            if ln "$tmp" "$lockfile" 2>/dev/null; then outcome=acquired; break; fi
            [ -f "$lockfile" ] || continue
            old=$(cat "$lockfile" 2>/dev/null; printf x)
            expires=$(sed -n 's/^expires=//p' "$lockfile" 2>/dev/null | head -n 1)
            case $expires in ''|*[!0-9]*) expires= ;; esac
            if [ -n "$expires" ] && [ "$now" -ge "$expires" ]; then
              aside="$root/state/.lock.stale.$$"
              if mv "$lockfile" "$aside" 2>/dev/null; then
                if [ "$(cat "$aside" 2>/dev/null; printf x)" = "$old" ] && ln "$tmp" "$lockfile" 2>/dev/null; then
                  outcome=took-over
                  previous=$aside
                  break
                fi
                ln "$aside" "$lockfile" 2>/dev/null
                rm -f "$aside"
              fi
            fi
            outcome=held
            break
          done
          if [ "$outcome" = took-over ]; then
            printf 'lock-outcome took-over '; filefield "$previous"; printf '\\n'
            rm -f "$previous"
          else
            echo "lock-outcome $outcome"
          fi
          rm -f "$tmp"
        else
          printf 'lock-outcome failed '; field "cannot write $root/state/lock"; printf '\\n'
        fi

        """
    }

    /// Parses this script's output for `host` (used in messages); file
    /// records name paths by their index in `files`.
    public func parse(_ output: Data, host: String) -> Result<Observation, ObservationParseError> {
        let formatHeader = Self.formatHeader
        guard let text = String(data: output, encoding: .utf8) else {
            return .failure(ObservationParseError(host: host, line: nil, reason: "the output is not UTF-8 text"))
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        guard lines.first.map(String.init) == formatHeader else {
            return .failure(ObservationParseError(host: host, line: 1, reason: "expected `\(formatHeader)`, got `\(lines.first.map { String($0.prefix(80)) } ?? "")`; is the root readable and sh POSIX?"))
        }
        guard lines.last == "end" else {
            return .failure(ObservationParseError(host: host, line: lines.count, reason: "the output stops before `end`; the script was interrupted"))
        }
        var state = ObservedHostState()
        var lockOutcome = LockOutcome.notRequested
        var lockRecord: RemoteLock?? = nil
        let requested = Set(files.map(\.path))
        var listed: [String] = []
        for (offset, line) in lines.enumerated().dropFirst().dropLast() {
            let number = offset + 1
            func fail(_ reason: String) -> Result<Observation, ObservationParseError> {
                .failure(ObservationParseError(host: host, line: number, reason: reason))
            }
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            func bytes(_ index: Int) -> Data? {
                guard index < fields.count else { return nil }
                return Self.decodeField(fields[index])
            }
            func string(_ index: Int) -> String? {
                bytes(index).flatMap { String(data: $0, encoding: .utf8) }
            }
            switch fields[0] {
            case "lock-outcome":
                switch fields.count > 1 ? fields[1] : "" {
                case "not-requested": lockOutcome = .notRequested
                case "acquired": lockOutcome = .acquired
                case "held": lockOutcome = .heldByOther(nil)
                case "took-over":
                    guard let data = bytes(2) else { return fail("malformed took-over record") }
                    lockOutcome = .tookOver(previous: RemoteLock(parsing: data))
                case "failed":
                    lockOutcome = .failed(string(2) ?? "unknown reason")
                default:
                    return fail("unknown lock outcome `\(fields.count > 1 ? fields[1] : "")`")
                }
            case "lock":
                if fields.count == 2 && fields[1] == "none" {
                    lockRecord = .some(nil)
                } else if let data = bytes(1) {
                    lockRecord = .some(RemoteLock(parsing: data))
                } else {
                    return fail("malformed lock record")
                }
            case "manifest":
                if fields.count == 2 && fields[1] == "none" {
                    state.manifest = .absent
                } else if let data = bytes(1) {
                    state.manifest = Self.parseManifest(data)
                } else {
                    return fail("malformed manifest record")
                }
            case "file":
                guard fields.count >= 3, let index = Int(fields[1]), files.indices.contains(index) else { return fail("malformed file record") }
                let path = files[index].path
                switch fields[2] {
                case "missing": state.files[path] = .missing
                case "other": state.files[path] = .notRegular
                case "unreadable": state.files[path] = .notRegular
                case "keyed":
                    guard fields.count == 6, let mode = Int(fields[4], radix: 8), let size = Int(fields[5]) else {
                        return fail("malformed keyed file record for \(path); did the file change during the observation?")
                    }
                    var keyed: String?
                    if let fileKey, fields[3] != "-" {
                        guard fields[3].utf8.count == 64, let inner = Self.decodeField("x" + fields[3]) else { return fail("malformed keyed hash for \(path)") }
                        keyed = fileKey.finish(innerDigest: inner)
                    }
                    state.files[path] = .sensitive(keyedSHA256: keyed, mode: mode, size: size)
                default:
                    guard fields.count == 5, fields[2].utf8.count == 64,
                          let mode = Int(fields[3], radix: 8), let size = Int(fields[4])
                    else { return fail("malformed file record for \(path); did the file change during the observation?") }
                    state.files[path] = .regular(sha256: fields[2], mode: mode, size: size)
                }
            case "content":
                guard fields.count == 3, let index = Int(fields[1]), files.indices.contains(index), let data = bytes(2) else {
                    return fail("malformed content record")
                }
                state.fileContents[files[index].path] = data
            case "releases":
                guard let data = bytes(1) else { return fail("malformed releases record") }
                let names = data.split(separator: 0, omittingEmptySubsequences: false).dropLast()
                guard names.count % 2 == 0 else { return fail("releases record has an odd number of names") }
                for pair in stride(from: names.startIndex, to: names.endIndex, by: 2) {
                    state.releases.append(ObservedRelease(
                        component: String(decoding: names[pair], as: UTF8.self),
                        version: String(decoding: names[pair + 1], as: UTF8.self)
                    ))
                }
            case "slot":
                guard fields.count == 4, let component = string(1), let slot = SlotName(rawValue: fields[2]) else {
                    return fail("malformed slot record")
                }
                var target: String?
                if fields[3] != "none" {
                    guard var data = bytes(3) else { return fail("malformed slot target") }
                    if data.last == 0x0A { data.removeLast() }  // readlink's newline
                    target = String(decoding: data, as: UTF8.self)
                }
                state.slots.append(ObservedSlotLink(component: component, slot: slot, target: target))
            case "process":
                guard fields.count == 4, let name = string(1) else { return fail("malformed process record") }
                // Pid files are named <component>-<slot>.pid; other files in run/ are not meridian's.
                guard let dash = name.lastIndex(of: "-"), let slot = SlotName(rawValue: String(name[name.index(after: dash)...])) else { continue }
                state.processes.append(ObservedProcess(component: String(name[..<dash]), slot: slot, pid: Int(fields[2]), alive: fields[3] == "alive"))
            case "gateway":
                guard fields.count == 2, fields[1] == "running" || fields[1] == "stopped" else { return fail("malformed gateway record") }
                state.gatewayRunning = fields[1] == "running"
            case "listed":
                guard let data = bytes(1) else { return fail("malformed listed record") }
                let prefix = Data((root == "/" ? "/" : root + "/").utf8)
                for name in data.split(separator: 0) where name.starts(with: prefix) {
                    listed.append(String(decoding: name.dropFirst(prefix.count), as: UTF8.self))
                }
            default:
                return fail("unknown record `\(fields[0].prefix(40))`")
            }
        }
        if case .heldByOther = lockOutcome, case .some(let current) = lockRecord {
            lockOutcome = .heldByOther(current)
        }
        if case .some(let current) = lockRecord { state.lock = current }
        // A manifest written before `sensitive-paths` existed is the last
        // word on what was sensitive: such files lose their plain hash and content here.
        if let recorded = state.manifest.manifest?.sensitivePaths {
            for path in recorded {
                state.fileContents[path] = nil
                if case .regular(_, let mode, let size) = state.files[path] {
                    state.files[path] = .sensitive(keyedSHA256: nil, mode: mode, size: size)
                }
            }
        }
        state.unmanagedFiles = listed.filter { !requested.contains($0) }.sorted()
        state.releases.sort()
        state.slots.sort { ($0.component, $0.slot) < ($1.component, $1.slot) }
        state.processes.sort { ($0.component, $0.slot) < ($1.component, $1.slot) }
        return .success(Observation(state: state, lock: lockOutcome))
    }

    static func decodeField(_ field: String) -> Data? {
        guard field.first == "x" else { return nil }
        let hex = Array(field.utf8.dropFirst())
        guard hex.count % 2 == 0 else { return nil }
        var data = Data(capacity: hex.count / 2)
        var index = 0
        while index < hex.count {
            guard let high = hexValue(hex[index]), let low = hexValue(hex[index + 1]) else { return nil }
            data.append(high << 4 | low)
            index += 2
        }
        return data
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    static func parseManifest(_ data: Data) -> ObservedManifest {
        let hash = SHA256.hex(data)
        struct Version: Decodable {
            var schema_version: Int
        }
        guard let version = try? JSONDecoder().decode(Version.self, from: data) else {
            return .unreadable(sha256: hash, reason: "not a meridian manifest (no schema_version)")
        }
        guard version.schema_version <= HostManifest.currentSchemaVersion else {
            return .unreadable(sha256: hash, reason: "written by a newer meridian (schema \(version.schema_version), this one reads up to \(HostManifest.currentSchemaVersion))")
        }
        do {
            return .present(try JSONDecoder().decode(HostManifest.self, from: data), sha256: hash)
        } catch {
            return .unreadable(sha256: hash, reason: "invalid manifest: \(error)")
        }
    }
}

extension RemoteLock {
    /// Reads the `key=value` lines of a lock file; unknown keys are ignored so
    /// that a newer meridian may add some.
    init(parsing data: Data) {
        var values: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<equals])
            if values[key] == nil { values[key] = String(line[line.index(after: equals)...]) }
        }
        self.init(
            holder: values["holder"] ?? "unknown",
            runID: values["run"] ?? "unknown",
            pid: values["pid"].flatMap { Int($0) },
            startedAt: values["started"].flatMap { Int($0) },
            expiresAt: values["expires"].flatMap { Int($0) }
        )
    }
}
