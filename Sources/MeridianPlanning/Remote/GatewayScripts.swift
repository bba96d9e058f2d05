import Foundation
import MeridianBasics

/// What the activation script reports: one line `gateway WORD …`.
public enum GatewayActivationOutcome: Sendable, Equatable {
    /// nginx was not running and was started with the new configuration; its master's pid.
    case started(pid: Int)
    /// The running nginx (its master's pid) was told to reload; its error log
    /// was `errorLogOffset` bytes long just before, so a failed reload's
    /// messages are what follows. `settled`: before answering, the script saw
    /// new workers accept connections and every old one stop accepting.
    /// `accessLogOffset`: the access log's length just before the reload, so
    /// the lines of the new split are what follows.
    case reloaded(pid: Int, errorLogOffset: Int, settled: Bool = false, accessLogOffset: Int? = nil)
    /// `nginx -t` refused the new configuration; the live one is untouched.
    case checkFailed(String)
    /// nginx did not start; its message.
    case startFailed(String)
    /// The new configuration could not be written, or nginx is not installed.
    case failed(String)
}

/// The gateway's remote steps, each one POSIX sh script built from values,
/// every value quoted by `ShellQuoting`: write the new configuration under
/// `<root>/router/` with a temporary name, check it with `nginx -t`, put it
/// in place only when the check passes, then start nginx (as the SSH user,
/// with that prefix) or reload it. Confirming which configuration serves is
/// the engine's, through the SSH connection (`GatewayConfig.identityLocation`).
public struct GatewayScripts: Sendable, Equatable {
    /// The host root.
    public var root: String

    public init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
    }

    /// `<root>/router/`: nginx's prefix (`-p`).
    public var prefix: String { (root == "/" ? "" : root) + "/" + GatewayConfig.prefix }

    /// The lines every gateway script starts with: the prefix, the paths
    /// under it, and nginx's arguments (a master started as root runs its
    /// workers as root too, so nothing nginx does needs another user).
    private var preamble: String {
        """
        set -u
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
        p=\(ShellQuoting.quote(prefix))
        conf="$p"nginx.conf
        err="$p"logs/error.log
        pidf="$p"run/nginx.pid
        hx() { od -An -v -tx1 | tr -d ' \\n'; }
        report() { printf 'gateway %s x' "$1"; printf '%s' "$2" | hx; printf '\\n'; }
        \(ProcessLiveness.shellFunction)
        \(Self.acceptingFunction)
        set --
        if [ "$(id -u)" = 0 ]; then set -- -g "user $(id -un);"; fi

        """
    }

    /// Reads the new configuration from standard input into
    /// `router/.nginx.conf.new` and checks that it arrived whole (its
    /// SHA-256), checks it with `nginx -t` (error log given with `-e`, so
    /// nginx never touches /var/log), and only when it passes keeps the live
    /// file as `nginx.conf.previous`, renames the new one into place and
    /// starts or reloads nginx. A failed check removes the new file and leaves
    /// the live configuration untouched. The text goes on standard input, not
    /// into the command line, so a region of any size fits.
    /// With a residency section, it first refuses a host without nginx's
    /// JavaScript module, and writes the section's script under its final,
    /// content-named path before the check (the running nginx has its own
    /// copy compiled, and no live configuration names a new script yet);
    /// afterwards it removes scripts that neither the live configuration nor
    /// `nginx.conf.previous` names.
    public func activate(_ config: GatewayConfig) -> String { activate(text: config.text, script: config.residencyScript) }

    /// `activate` for a configuration given as text, sent on standard input
    /// (what tests of a refused configuration need; meridian itself renders
    /// every text from a value).
    public func activate(text: String, script: GatewayResidencyScript? = nil) -> String {
        preamble + """
        new="$p".nginx.conf.new
        command -v nginx >/dev/null 2>&1 || { report failed "nginx is not installed (or not on PATH) on this gateway host"; exit 0; }
        prune() {
          for f in "$p"residency-*.js; do
            [ -f "$f" ] || continue
            b=${f##*/}
            grep -qF -- "$b" "$conf" 2>/dev/null || grep -qF -- "$b" "$p"nginx.conf.previous 2>/dev/null || rm -f -- "$f"
          done
        }
        \(script.map(scriptLines) ?? "")mkdir -p -- "$p"logs "$p"run "$p"temp 2>/dev/null || { report failed "cannot create the folders under $p"; exit 0; }
        \(script.map(writeScriptLines) ?? "")cat > "$new" 2>/dev/null || { rm -f -- "$new"; report failed "cannot write $new"; exit 0; }
        if [ "$(sha256sum < "$new" | cut -c1-64)" != \(SHA256.hex(text)) ]; then
          rm -f -- "$new"
          report failed "the new configuration arrived incomplete (its SHA-256 differs); nothing was changed"
          exit 0
        fi
        if ! out=$(nginx -t -q -p "$p" -c "$new" -e "$err" "$@" 2>&1 </dev/null); then
          rm -f -- "$new"
          prune
          report check-failed "$out"
          exit 0
        fi
        if [ -f "$conf" ]; then cp -p -- "$conf" "$p"nginx.conf.previous 2>/dev/null || true; fi
        mv -f -- "$new" "$conf" || { report failed "cannot rename $new to $conf"; exit 0; }
        prune
        pid=$(head -c 32 "$pidf" 2>/dev/null | tr -dc 0-9)
        # A pid file can outlive its nginx and name a recycled pid: only an nginx master counts.
        if [ -n "$pid" ] && alive "$pid" && { [ ! -r "/proc/$pid/cmdline" ] || tr '\\000' ' ' < "/proc/$pid/cmdline" | grep -q '^nginx: master'; }; then
          size=$(wc -c < "$err" 2>/dev/null | tr -dc 0-9)
          asize=$(wc -c < "$p"logs/access.log 2>/dev/null | tr -dc 0-9)
          old=$(accepting "$pid")
          if kill -s HUP "$pid" 2>/dev/null; then
            # Wait here (bounded, 5 s) until new workers accept and no old one does, so a
            # fresh connection after this answer can only reach the new configuration.
            settled=0
            i=0
            while [ "$i" -lt 100 ]; do
              now=$(accepting "$pid")
              if [ -n "$now" ]; then
                settled=1
                for o in $old; do case " $now " in *" $o "*) settled=0 ;; esac; done
                [ "$settled" = 1 ] && break
              fi
              sleep 0.05
              i=$((i + 1))
            done
            echo "gateway reloaded $pid ${size:-0} $settled ${asize:-0}"
            exit 0
          fi
        fi
        rm -f -- "$pidf"
        if ! out=$(nginx -p "$p" -c "$conf" -e "$err" "$@" 2>&1 </dev/null); then
          report start-failed "$out"
          exit 0
        fi
        i=0
        while [ "$i" -lt 50 ]; do
          pid=$(head -c 32 "$pidf" 2>/dev/null | tr -dc 0-9)
          if [ -n "$pid" ] && alive "$pid"; then echo "gateway started $pid"; exit 0; fi
          sleep 0.1
          i=$((i + 1))
        done
        report start-failed "nginx exited without a running master; $(tail -n 5 "$err" 2>/dev/null)"

        """
    }

    /// Refuses a host without nginx's JavaScript module before anything is written.
    private func scriptLines(_ script: GatewayResidencyScript) -> String {
        "\(NginxJavaScriptModule.probe) || { report failed \(ShellQuoting.quote(NginxJavaScriptModule.missingReason)); exit 0; }\n"
    }

    /// Writes the residency script under a temporary name, checks that it
    /// arrived whole, and renames it to its content-named path.
    private func writeScriptLines(_ script: GatewayResidencyScript) -> String {
        let name = ShellQuoting.quote(script.fileName)
        return """
        js="$p"\(name)
        jsnew="$p".\(name).new
        printf '%s' \(ShellQuoting.quote(script.text)) > "$jsnew" 2>/dev/null || { rm -f -- "$jsnew"; report failed "cannot write $jsnew"; exit 0; }
        if [ "$(sha256sum < "$jsnew" | cut -c1-64)" != \(SHA256.hex(script.text)) ]; then
          rm -f -- "$jsnew"
          report failed "the residency script arrived incomplete (its SHA-256 differs); nothing was changed"
          exit 0
        fi
        mv -f -- "$jsnew" "$js" || { rm -f -- "$jsnew"; report failed "cannot rename $jsnew to $js"; exit 0; }

        """
    }

    /// Counts the workers of the nginx master `pid` that still accept
    /// connections: its children titled `nginx: worker process`, leaving out
    /// those `… is shutting down` (a worker sets that title just before it
    /// closes its listening sockets). Between a reload's new worker answering
    /// and the old one receiving its signal, a fresh connection can still
    /// reach the old configuration; confirmation waits until this count is
    /// back to the configured number. Prints `workers N`. Reads /proc only,
    /// without a process per entry.
    public static func acceptingWorkers(master pid: Int) -> String {
        """
        \(acceptingFunction)
        n=0
        for w in $(accepting \(pid)); do n=$((n + 1)); done
        echo "workers $n"

        """
    }

    /// The sh function `accepting MASTER`: the pids of that master's workers
    /// that still accept connections, one line. The master's children come
    /// from /proc/PID/task/PID/children where the kernel has it (no scan of
    /// every process), else from every process's parent in /proc.
    static let acceptingFunction = """
    accepting() {
      m=$1
      out=
      kids=
      if [ -r "/proc/$m/task/$m/children" ]; then
        read -r kids < "/proc/$m/task/$m/children" || :
      else
        for d in /proc/[0-9]*; do
          s=
          { read -r s < "$d/stat"; } 2>/dev/null || continue
          s=${s##*) }
          set -- $s
          [ "${2:-}" = "$m" ] && kids="$kids ${d#/proc/}"
        done
      fi
      for k in $kids; do
        t=$(tr '\\000' ' ' < "/proc/$k/cmdline" 2>/dev/null)
        case $t in
          "nginx: worker process is shutting down"*) ;;
          "nginx: worker process"*) out="$out $k" ;;
        esac
      done
      echo $out
    }
    """

    /// At most the last `limit` lines of the access log whose time (`$msec`,
    /// the first field, in seconds) lies in the window [from, to) given in
    /// milliseconds since 1970, widened by 1 ms each side for awk's floating
    /// point; the analysis keeps the window exactly. A missing log prints nothing.
    /// `offset` skips the log's first bytes (its length when the window's
    /// split went live), unless the log is shorter now (it was rotated).
    public func accessLogWindow(from: Int64, to: Int64, offset: Int = 0, limit: Int = 500_000) -> String {
        """
        log=\(ShellQuoting.quote(prefix + "logs/access.log"))
        [ -f "$log" ] || exit 0
        off=\(max(0, offset))
        [ "$(wc -c < "$log" | tr -dc 0-9)" -ge "$off" ] || off=0
        tail -c +$((off + 1)) "$log" | awk -F '\\t' -v a=\(from - 1) -v b=\(to + 1) '$1 ~ /^[0-9]+(\\.[0-9]+)?$/ { t = $1 * 1000; if (t >= a && t < b) print }' | tail -n \(max(1, limit))

        """
    }

    /// The error log's messages of level error and worse written after
    /// `offset` bytes (what a failed reload left), at most the last 10.
    public func errorLogSince(_ offset: Int) -> String {
        """
        tail -c +\(max(0, offset) + 1) \(ShellQuoting.quote(prefix + "logs/error.log")) 2>/dev/null | grep -E '\\[(emerg|alert|crit|error)\\]' | tail -n 10

        """
    }

    /// Parses the activation script's output.
    public static func parseActivation(_ output: Data, host: String) -> Result<GatewayActivationOutcome, ObservationParseError> {
        let text = String(decoding: output, as: UTF8.self)
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("gateway ") }) else {
            return .failure(ObservationParseError(host: host, line: nil, reason: "the gateway script printed no outcome: `\(text.prefix(200))`"))
        }
        let fields = line.split(separator: " ").map(String.init)
        func message() -> String? {
            guard fields.count == 3, let data = ObserveScript.decodeField(fields[2]) else { return nil }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        switch fields.count > 1 ? fields[1] : "" {
        case "started":
            if fields.count == 3, let pid = Int(fields[2]) { return .success(.started(pid: pid)) }
        case "reloaded":
            if (4...6).contains(fields.count), let pid = Int(fields[2]), let offset = Int(fields[3]) {
                return .success(.reloaded(pid: pid, errorLogOffset: offset, settled: fields.count >= 5 && fields[4] == "1",
                                          accessLogOffset: fields.count == 6 ? Int(fields[5]) : nil))
            }
        case "check-failed":
            if let text = message() { return .success(.checkFailed(text)) }
        case "start-failed":
            if let text = message() { return .success(.startFailed(text)) }
        case "failed":
            if let text = message() { return .success(.failed(text)) }
        default:
            break
        }
        return .failure(ObservationParseError(host: host, line: nil, reason: "unexpected gateway outcome `\(line.prefix(200))`"))
    }
}
