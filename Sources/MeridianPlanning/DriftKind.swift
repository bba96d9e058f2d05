import Foundation
import MeridianModel

/// The closed set of ways a host can differ from what meridian last applied
/// to it. A new kind (the gateway's, rollouts', live residency routing) is a
/// new case here, and the compiler then shows every switch that must learn it.
public enum DriftKind: String, Sendable, Codable, CaseIterable, Hashable, Comparable {
    /// A file meridian wrote was changed on the host.
    case managedFileModified = "file-modified"
    /// A file meridian wrote is gone from the host.
    case managedFileMissing = "file-missing"
    /// A file meridian did not write sits in a folder it manages.
    case unmanagedFile = "file-unmanaged"
    /// A release the manifest lists is missing from the host.
    case releaseMismatch = "release-mismatch"
    /// A slot link points at another release than the manifest says.
    case slotMismatch = "slot-mismatch"
    /// The governance bundle on the host does not hash to the applied bundle.
    case bundleMismatch = "bundle-mismatch"
    /// The gateway's nginx configuration (`router/nginx.conf`) was edited or removed by hand.
    case gatewayConfigModified = "gateway-config-modified"
    /// A component that should run has no live process.
    case componentNotRunning = "component-down"
    /// A component runs but fails its health check.
    case componentUnhealthy = "component-unhealthy"
    /// The host's `state/manifest.json` is missing, unreadable or differs
    /// from the state store's record of the last apply.
    case manifestMismatch = "manifest-mismatch"
    /// A run lock is still on the host after its run ended or expired.
    case lockLeftBehind = "lock-left"
    /// A gateway answered a residency probe otherwise than the routing table
    /// it was applied with says (given the regions' health seen in the run):
    /// served data elsewhere, or refused what it should have served.
    case residencyViolation = "residency-violation"
    /// The host presented a different key than the one pinned or known.
    case hostKeyChanged = "host-key-changed"
    /// The host could not be reached, so it could not be examined.
    case hostUnreachable = "host-unreachable"

    public static func < (a: DriftKind, b: DriftKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// One line that says how to fix a finding of this kind.
    public var fix: String {
        switch self {
        case .managedFileModified, .managedFileMissing:
            return "restore it with `meridian drift --remediate \(rawValue)` (or `meridian apply`), or put the change into the fleet repository"
        case .unmanagedFile:
            return "remove the file from the host, or declare it in the region's config so meridian manages it"
        case .releaseMismatch, .slotMismatch:
            return "reinstall with `meridian drift --remediate \(rawValue)`; check who changed the host by hand"
        case .bundleMismatch:
            return "restore the governance bundle with `meridian drift --remediate \(rawValue)`"
        case .gatewayConfigModified:
            return "restore the gateway configuration (checked with nginx -t, then reloaded) with `meridian drift --remediate \(rawValue)`, or change the fleet repository instead"
        case .componentNotRunning:
            return "start it again with `meridian drift --remediate \(rawValue)`; read its log under <root>/run/"
        case .componentUnhealthy:
            return "read the component's log under <root>/run/ and restart it with `meridian drift --remediate \(rawValue)`"
        case .manifestMismatch:
            return "find out who applied from elsewhere (`meridian audit`); `meridian apply` rewrites the manifest"
        case .lockLeftBehind:
            return "if no run is active, clear it with `meridian drift --remediate \(rawValue)` or `meridian unlock REGION`"
        case .residencyViolation:
            return "if this host also shows gateway-config-modified, `meridian drift --remediate gateway-config-modified` puts the applied routing back; otherwise run `meridian routes verify` to see whether a region's health flapped, and check the gateways the request passed"
        case .hostKeyChanged:
            return "find out why the key changed; if the host was rebuilt, trust the new key with `meridian trust HOST`"
        case .hostUnreachable:
            return "check the host and its sshd with `meridian hosts check --region REGION`"
        }
    }

    /// Whether `drift --remediate` can repair this kind through the normal apply path.
    public var isRemediable: Bool {
        switch self {
        case .managedFileModified, .managedFileMissing, .releaseMismatch, .slotMismatch, .bundleMismatch, .gatewayConfigModified,
             .componentNotRunning, .componentUnhealthy, .lockLeftBehind:
            return true
        case .unmanagedFile, .manifestMismatch, .residencyViolation, .hostKeyChanged, .hostUnreachable:
            return false
        }
    }
}

/// One difference found on one host; identified by (region, host, kind, subject).
public struct DriftFinding: Sendable, Codable, Hashable, Comparable {
    public var region: String
    public var host: String
    public var kind: DriftKind
    /// What differs: a file path relative to the host root, a component, a slot.
    public var subject: String
    /// What was expected and what was found, for people.
    public var detail: String

    public var hostID: HostID { HostID(region: region, host: host) }

    public init(region: String, host: String, kind: DriftKind, subject: String, detail: String) {
        self.region = region
        self.host = host
        self.kind = kind
        self.subject = subject
        self.detail = detail
    }

    public static func < (a: DriftFinding, b: DriftFinding) -> Bool {
        (a.region, a.host, a.kind, a.subject) < (b.region, b.host, b.kind, b.subject)
    }
}
