import Foundation
import MeridianModel
import MeridianBasics

/// The one script that gives back or removes a host's run lock. The lock is
/// renamed aside first and judged there, so a run that takes the lock
/// meanwhile is never deleted; a lock that does not qualify is linked back.
/// Apply gives back its own lock (`.heldByRun`); drift remediation removes a
/// lock left behind only while it is still stale (`.stale`).
/// Output: one line, `unlock released`, `unlock not-held` or `unlock kept x<hex of the lock file>`.
public struct LockReleaseScript: Sendable, Equatable {
    /// When the lock may go, beside naming `runID`.
    public enum Condition: Sendable, Equatable {
        /// The lock is this run's own.
        case heldByRun
        /// Expired by the host's clock, or `leaseFree` (no run holds the region's lease).
        case stale(leaseFree: Bool)
    }

    public enum Outcome: Sendable, Equatable {
        case released
        /// There was no lock.
        case notHeld
        /// The lock does not qualify and was put back.
        case kept(RemoteLock)
    }

    public var root: String
    public var runID: String
    public var condition: Condition

    public init(root: String, runID: String, condition: Condition = .heldByRun) {
        self.root = root
        self.runID = runID.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        self.condition = condition
    }

    public var script: String {
        var lines = [
            "set -u",
            "root=\(ShellQuoting.quote(root))",
            "lockfile=\"$root/state/lock\"",
            "aside=\"$root/state/.lock.release.$$\"",
            "if ! mv \"$lockfile\" \"$aside\" 2>/dev/null; then echo 'unlock not-held'; exit 0; fi",
            "run=$(sed -n 's/^run=//p' \"$aside\" | head -n 1)",
        ]
        switch condition {
        case .heldByRun:
            lines.append("ok=1")
        case .stale(let leaseFree):
            lines += [
                "expires=$(sed -n 's/^expires=//p' \"$aside\" | head -n 1)",
                "case $expires in ''|*[!0-9]*) expires= ;; esac",
                "ok=\(leaseFree ? "1" : "0")",
                "if [ -n \"$expires\" ] && [ \"$(date +%s)\" -ge \"$expires\" ]; then ok=1; fi",
            ]
        }
        lines += [
            "if [ \"$run\" = \(ShellQuoting.quote(runID)) ] && [ \"$ok\" = 1 ]; then",
            "  rm -f \"$aside\"",
            "  echo 'unlock released'",
            "else",
            "  ln \"$aside\" \"$lockfile\" 2>/dev/null",
            "  printf 'unlock kept x'; od -An -v -tx1 < \"$aside\" | tr -d ' \\n'; printf '\\n'",
            "  rm -f \"$aside\"",
            "fi",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// The script as one remote command line.
    public var command: RemoteCommand { RemoteCommand(["sh", "-c", script]) }

    public static func parse(_ output: Data, host: String) -> Result<Outcome, ObservationParseError> {
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .newlines)
        let fields = text.split(separator: " ").map(String.init)
        switch fields.first == "unlock" && fields.count >= 2 ? fields[1] : "" {
        case "released": return .success(.released)
        case "not-held": return .success(.notHeld)
        case "kept":
            guard fields.count == 3, let data = ObserveScript.decodeField(fields[2]) else { break }
            return .success(.kept(RemoteLock(parsing: data)))
        default: break
        }
        return .failure(ObservationParseError(host: host, line: nil, reason: "unexpected unlock output `\(text.prefix(80))`"))
    }
}
