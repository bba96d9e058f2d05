import Foundation
import MeridianBasics

/// One fix `drift --remediate` decided on, before anything runs. Invariant:
/// a `restoreFile` carries exactly the bytes meridian last applied (their
/// SHA-256 is the manifest's), never a newer rendering.
public enum DriftRemedy: Sendable, Equatable {
    /// Remove `<root>/state/lock` if it still names `runID` and is still
    /// stale when the host looks again.
    case removeStaleLock(finding: DriftFinding, root: String, runID: String, leaseFree: Bool)
    /// Write the applied content back (atomically) with the applied mode.
    case restoreFile(finding: DriftFinding, root: String, path: String, content: Data, mode: Int)
    /// Named, but not fixed by this meridian: the reason says why and what to do.
    case notRemediated(finding: DriftFinding, reason: String)

    public var finding: DriftFinding {
        switch self {
        case .removeStaleLock(let finding, _, _, _), .restoreFile(let finding, _, _, _, _), .notRemediated(let finding, _):
            return finding
        }
    }

    /// One line for people: what will be (or would be) done.
    public var summary: String {
        switch self {
        case .removeStaleLock(let finding, _, let runID, _):
            return "\(finding.region)/\(finding.host): remove the stale lock of run \(runID)"
        case .restoreFile(let finding, _, let path, let content, let mode):
            return "\(finding.region)/\(finding.host): restore \(path) as applied (\(content.count) bytes, sha256 \(String(SHA256.hex(content).prefix(12))), mode \(String(mode, radix: 8)))"
        case .notRemediated(let finding, let reason):
            return "\(finding.region)/\(finding.host): \(finding.kind.rawValue) \(finding.subject): not remediated: \(reason)"
        }
    }
}

/// Decides the fixes for the findings of the named kinds, and only those.
public enum DriftRemediationPlanner {
    /// `desired` holds each host's desired state rendered from the fleet now
    /// (by `region/host`); a file is restored only when that rendering is
    /// byte-for-byte what the manifest recorded, so remediation never applies
    /// a pending change behind the operator's back.
    public static func plan(findings: [DriftFinding], kinds: Set<DriftKind>, evidence: [String: HostDriftEvidence], desired: [String: DesiredHostState]) -> [DriftRemedy] {
        var remedies: [DriftRemedy] = []
        for finding in findings.sorted() where kinds.contains(finding.kind) {
            let key = "\(finding.region)/\(finding.host)"
            let hostEvidence = evidence[key]
            let hostDesired = desired[key]
            switch finding.kind {
            case .lockLeftBehind:
                guard let lock = hostEvidence?.observed.lock, let root = hostDesired?.root else {
                    remedies.append(.notRemediated(finding: finding, reason: "the lock was not observed on this run"))
                    continue
                }
                remedies.append(.removeStaleLock(finding: finding, root: root, runID: lock.runID, leaseFree: !(hostEvidence?.regionLeaseHeld ?? true)))
            case .managedFileModified, .managedFileMissing, .bundleMismatch:
                guard let applied = hostEvidence?.applied?.files[finding.subject], let hostDesired else {
                    remedies.append(.notRemediated(finding: finding, reason: "the manifest does not record this file"))
                    continue
                }
                guard let appliedHash = applied.sha256 else {
                    remedies.append(.notRemediated(finding: finding, reason: "it is sensitive: restoring it needs the secrets, which only `meridian apply` resolves"))
                    continue
                }
                guard let file = hostDesired.files.first(where: { $0.path == finding.subject }), case .bytes(let content) = file.content,
                      SHA256.hex(content) == appliedHash else {
                    remedies.append(.notRemediated(finding: finding, reason: "the fleet repository no longer renders the applied content (a change is pending); run `meridian plan` and `meridian apply`"))
                    continue
                }
                remedies.append(.restoreFile(finding: finding, root: hostDesired.root, path: finding.subject, content: content, mode: applied.mode))
            case .releaseMismatch, .slotMismatch, .componentNotRunning, .componentUnhealthy:
                remedies.append(.notRemediated(finding: finding, reason: "it needs the apply engine (artifact upload, slot switch, process start with health checks); run `meridian plan` and `meridian apply`"))
            case .unmanagedFile, .manifestMismatch, .hostKeyChanged, .hostUnreachable:
                remedies.append(.notRemediated(finding: finding, reason: "this kind is never fixed automatically: \(finding.kind.fix)"))
            }
        }
        return remedies
    }
}

/// The script that removes a lock left behind, re-checking on the host that
/// it is the lock drift saw (same `run=`) and still stale: expired by the
/// host's clock, or `leaseFree` (no run holds the region's lease). The lock is
/// renamed aside first so a run taking it meanwhile is never deleted.
/// Output: `stale-lock removed` | `stale-lock gone` | `stale-lock kept x<hex of lock>`.
public struct StaleLockRemovalScript: Sendable, Equatable {
    public var root: String
    public var runID: String
    public var leaseFree: Bool

    public init(root: String, runID: String, leaseFree: Bool) {
        self.root = root
        self.runID = runID.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        self.leaseFree = leaseFree
    }

    public enum Outcome: Sendable, Equatable {
        case removed
        case gone
        case kept(RemoteLock)
    }

    public var script: String {
        """
        set -u
        root=\(ShellQuoting.quote(root))
        lockfile="$root/state/lock"
        aside="$root/state/.lock.remediate.$$"
        if ! mv "$lockfile" "$aside" 2>/dev/null; then echo 'stale-lock gone'; exit 0; fi
        run=$(sed -n 's/^run=//p' "$aside" | head -n 1)
        expires=$(sed -n 's/^expires=//p' "$aside" | head -n 1)
        case $expires in ''|*[!0-9]*) expires= ;; esac
        now=$(date +%s)
        stale=\(leaseFree ? "1" : "0")
        if [ -n "$expires" ] && [ "$now" -ge "$expires" ]; then stale=1; fi
        if [ "$run" = \(ShellQuoting.quote(runID)) ] && [ "$stale" = 1 ]; then
          rm -f "$aside"
          echo 'stale-lock removed'
        else
          ln "$aside" "$lockfile" 2>/dev/null
          printf 'stale-lock kept x'; od -An -v -tx1 < "$aside" | tr -d ' \\n'; printf '\\n'
          rm -f "$aside"
        fi

        """
    }

    public static func parse(_ output: Data, host: String) -> Result<Outcome, ObservationParseError> {
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .newlines)
        let fields = text.split(separator: " ").map(String.init)
        switch fields.first == "stale-lock" && fields.count >= 2 ? fields[1] : "" {
        case "removed": return .success(.removed)
        case "gone": return .success(.gone)
        case "kept":
            guard fields.count == 3, let data = ObserveScript.decodeField(fields[2]) else { break }
            return .success(.kept(RemoteLock(parsing: data)))
        default: break
        }
        return .failure(ObservationParseError(host: host, line: nil, reason: "unexpected stale-lock output `\(text.prefix(80))`"))
    }
}
