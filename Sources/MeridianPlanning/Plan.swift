import Foundation
import MeridianBasics
import MeridianModel

/// Unix permission bits, written in plans as four octal digits (`"0644"`)
/// because that is how people read them.
public struct FileMode: Codable, Sendable, Hashable, CustomStringConvertible {
    public var bits: Int

    public init(_ bits: Int) { self.bits = bits }

    public var description: String {
        let digits = String(bits, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let bits = Int(text, radix: 8), bits >= 0, bits <= 0o7777 else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected an octal file mode such as \"0644\", got \"\(text)\"")
        }
        self.bits = bits
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The closed set of things a plan can do to a host.
public enum PlanActionKind: String, Codable, Sendable, Equatable, CaseIterable {
    case createFile = "create_file"
    case updateFile = "update_file"
    case deleteFile = "delete_file"
    case installRelease = "install_release"
    case upgradeComponent = "upgrade_component"
    case restartComponent = "restart_component"
    case noOp = "no_op"

    /// The one-character mark the text plan shows before the action.
    public var glyph: String {
        switch self {
        case .createFile, .installRelease: return "+"
        case .updateFile: return "~"
        case .deleteFile: return "-"
        case .upgradeComponent: return ">"
        case .restartComponent: return "r"
        case .noOp: return "="
        }
    }
}

/// One step of a plan on one host. Invariants: `id` is stable for the same
/// change (`<region>/<host>:<kind>:<subject>`); a sensitive action carries no
/// content hash, only the masked diff.
public struct PlanAction: Codable, Sendable, Equatable {
    public var id: String
    public var kind: PlanActionKind
    /// A path relative to the host's root, or a component name.
    public var subject: String
    public var component: String?
    /// SHA-256 of the file (or artifact) before and after; nil when absent or sensitive.
    public var beforeSHA256: String?
    public var afterSHA256: String?
    public var modeBefore: FileMode?
    public var modeAfter: FileMode?
    public var sensitive: Bool
    public var diff: ContentDiff?
    public var fromVersion: String?
    public var toVersion: String?
    public var strategy: RolloutStrategy?
    public var slot: SlotName?
    public var port: Int?
    public var artifact: String?
    /// Why the action is needed, in words (restart causes, notes on diffs).
    public var reasons: [String]
    /// Where the desired value comes from, for messages.
    public var source: String?

    public init(id: String, kind: PlanActionKind, subject: String, component: String? = nil, beforeSHA256: String? = nil, afterSHA256: String? = nil, modeBefore: FileMode? = nil, modeAfter: FileMode? = nil, sensitive: Bool = false, diff: ContentDiff? = nil, fromVersion: String? = nil, toVersion: String? = nil, strategy: RolloutStrategy? = nil, slot: SlotName? = nil, port: Int? = nil, artifact: String? = nil, reasons: [String] = [], source: String? = nil) {
        self.id = id
        self.kind = kind
        self.subject = subject
        self.component = component
        self.beforeSHA256 = beforeSHA256
        self.afterSHA256 = afterSHA256
        self.modeBefore = modeBefore
        self.modeAfter = modeAfter
        self.sensitive = sensitive
        self.diff = diff
        self.fromVersion = fromVersion
        self.toVersion = toVersion
        self.strategy = strategy
        self.slot = slot
        self.port = port
        self.artifact = artifact
        self.reasons = reasons
        self.source = source
    }

    public var glyph: String { kind.glyph }

    enum CodingKeys: String, CodingKey {
        case id, kind, subject, component, sensitive, diff, strategy, slot, port, artifact, reasons, source
        case beforeSHA256 = "before_sha256"
        case afterSHA256 = "after_sha256"
        case modeBefore = "mode_before"
        case modeAfter = "mode_after"
        case fromVersion = "from_version"
        case toVersion = "to_version"
    }
}

/// The actions for one host, with what the plan saw there. Invariant:
/// `actions` is never empty; a host in sync has exactly one `no_op`.
public struct HostPlan: Codable, Sendable, Equatable {
    public var region: String
    public var host: String
    public var address: String
    public var root: String
    public var observedManifestSHA256: String?
    /// `ObservedHostState.planDigest(excluding: sensitiveFiles)` at plan time.
    public var observedStateSHA256: String
    /// Sensitive files that the plan could not compare by content; apply
    /// renders them with real secrets and rewrites any whose remote hash differs.
    public var sensitiveFiles: [String]
    /// Sensitive files rewritten because their keyed hash on the host
    /// differed from their rendering with the secrets of the run that planned
    /// (a secret value changed, or the copy was edited); nil when none.
    public var keyedRewrites: [String]?
    /// Things about the host the operator should know before applying,
    /// e.g. an unreadable manifest that makes every file look new.
    public var warnings: [String]
    public var actions: [PlanAction]

    public var id: HostID { HostID(region: region, host: host) }
    public var hasChanges: Bool { actions.contains { $0.kind != .noOp } }

    enum CodingKeys: String, CodingKey {
        case region, host, address, root, actions, warnings
        case observedManifestSHA256 = "observed_manifest_sha256"
        case observedStateSHA256 = "observed_state_sha256"
        case sensitiveFiles = "sensitive_files"
        case keyedRewrites = "keyed_rewrites"
    }
}

/// One region's hosts, sorted by name.
public struct RegionPlan: Codable, Sendable, Equatable {
    public var name: String
    public var hosts: [HostPlan]

    public var hasChanges: Bool { hosts.contains(where: \.hasChanges) }
    public var hasWarnings: Bool { hosts.contains { !$0.warnings.isEmpty } }
}

/// What a plan was computed from, so apply can refuse it once that changed.
public struct PlanBasis: Codable, Sendable, Equatable {
    /// Fleet file path (relative to the repository) → SHA-256 of its bytes.
    public var fleetFiles: [String: String]
    /// HEAD when the fleet is a git repository.
    public var gitCommit: String?

    public init(fleetFiles: [String: String], gitCommit: String?) {
        self.fleetFiles = fleetFiles
        self.gitCommit = gitCommit
    }

    enum CodingKeys: String, CodingKey {
        case fleetFiles = "fleet_files"
        case gitCommit = "git_commit"
    }
}

/// Counts of a plan's actions, for its summary line and exit codes.
public struct PlanSummary: Codable, Sendable, Equatable {
    public var create = 0
    public var update = 0
    public var delete = 0
    public var upgrade = 0
    public var restart = 0
    public var regionsChanged = 0
    public var hostsChanged = 0
    public var hostsUnchanged = 0

    public var hasChanges: Bool { create + update + delete + upgrade + restart > 0 }

    enum CodingKeys: String, CodingKey {
        case create, update, delete, upgrade, restart
        case regionsChanged = "regions_changed"
        case hostsChanged = "hosts_changed"
        case hostsUnchanged = "hosts_unchanged"
    }
}

/// The complete list of actions that turns the observed fleet into the
/// desired one: a value that is saved, shown and applied as it is.
/// Invariant: regions and hosts are sorted by name and actions are in
/// execution order, so equal inputs give byte-equal plans.
public struct Plan: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var basis: PlanBasis
    public var regions: [RegionPlan]
    /// Where data may go changes, against the routing table the hosts were
    /// applied with; nil when it does not change (or nothing was applied yet).
    public var residency: ResidencyPlan?

    public init(formatVersion: Int = Plan.currentFormatVersion, basis: PlanBasis, regions: [RegionPlan], residency: ResidencyPlan? = nil) {
        self.formatVersion = formatVersion
        self.basis = basis
        self.regions = regions
        self.residency = residency
    }

    enum CodingKeys: String, CodingKey {
        case basis, regions, residency
        case formatVersion = "format_version"
    }

    public var hosts: [HostPlan] { regions.flatMap(\.hosts) }

    public var summary: PlanSummary {
        var summary = PlanSummary()
        for region in regions {
            if region.hasChanges { summary.regionsChanged += 1 }
            for host in region.hosts {
                if host.hasChanges { summary.hostsChanged += 1 } else { summary.hostsUnchanged += 1 }
                for action in host.actions {
                    switch action.kind {
                    case .createFile, .installRelease: summary.create += 1
                    case .updateFile: summary.update += 1
                    case .deleteFile: summary.delete += 1
                    case .upgradeComponent: summary.upgrade += 1
                    case .restartComponent: summary.restart += 1
                    case .noOp: break
                    }
                }
            }
        }
        return summary
    }

    /// Compact JSON with sorted keys: the bytes `hash` is computed over.
    public func canonicalJSON() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dataEncodingStrategy = .base64
        // A plan holds only strings, integers, booleans and arrays of them: encoding cannot fail.
        return (try? encoder.encode(self)) ?? Data()
    }

    /// SHA-256 of the canonical JSON: names this exact plan in apply records and audit entries.
    public var hash: String { SHA256.hex(canonicalJSON()) }

    /// Reads a saved plan, refusing formats this version does not know.
    public static func decode(_ data: Data) throws -> Plan {
        struct Version: Decodable { var format_version: Int }
        let version: Version
        do {
            version = try JSONDecoder().decode(Version.self, from: data)
        } catch {
            throw PlanDecodingError(reason: "not a meridian plan (no format_version): \(error)")
        }
        guard version.format_version == currentFormatVersion else {
            throw PlanDecodingError(reason: "plan format \(version.format_version) is not supported by this meridian (it reads format \(currentFormatVersion)); run `meridian plan` again with this version")
        }
        do {
            return try JSONDecoder().decode(Plan.self, from: data)
        } catch {
            throw PlanDecodingError(reason: "invalid plan: \(error)")
        }
    }

    /// Hosts whose observed state differs from what the plan was computed
    /// against; apply refuses the plan when this is not empty.
    public func staleHosts(observed: [HostID: ObservedHostState]) -> [StaleHost] {
        var stale: [StaleHost] = []
        for host in hosts {
            guard let now = observed[host.id] else {
                stale.append(StaleHost(host: host.id, reasons: ["it was not observed"]))
                continue
            }
            var reasons: [String] = []
            if now.manifest.sha256 != host.observedManifestSHA256 {
                reasons.append("its manifest changed (\(Self.short(host.observedManifestSHA256)) → \(Self.short(now.manifest.sha256)))")
            }
            if now.planDigest(excluding: Set(host.sensitiveFiles)) != host.observedStateSHA256 {
                reasons.append("its files, releases or slots changed")
            }
            if !reasons.isEmpty { stale.append(StaleHost(host: host.id, reasons: reasons)) }
        }
        return stale
    }

    static func short(_ hash: String?) -> String { hash.map { String($0.prefix(12)) } ?? "none" }
}

/// A host that changed since a plan was made.
public struct StaleHost: Sendable, Equatable, CustomStringConvertible {
    public var host: HostID
    public var reasons: [String]
    public var description: String {
        "host \(host): \(reasons.joined(separator: "; ")) since the plan was made; run `meridian plan` again"
    }
}

/// A saved plan that cannot be read.
public struct PlanDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

extension ObservedHostState {
    /// SHA-256 over what a plan depends on: the manifest hash, every observed
    /// file except `excluding` (sensitive files, whose hashes could leak
    /// low-entropy secrets), releases and slot links. Processes and the lock
    /// are left out: they change without making a plan wrong.
    public func planDigest(excluding: Set<String>) -> String {
        var lines = ["manifest \(manifest.sha256 ?? "none")"]
        for path in files.keys.sorted() where !excluding.contains(path) {
            let state: String
            switch files[path] ?? .missing {
            case .missing: state = "missing"
            case .notRegular: state = "other"
            case .regular(let sha256, let mode, _): state = "\(sha256) \(String(mode, radix: 8))"
            // A keyed hash depends on whether the observation had a key: only the mode counts.
            case .sensitive(_, let mode, _): state = "sensitive \(String(mode, radix: 8))"
            }
            lines.append("file \(Data(path.utf8).hexString) \(state)")
        }
        for release in releases.sorted() {
            lines.append("release \(Data(release.component.utf8).hexString) \(Data(release.version.utf8).hexString)")
        }
        for link in slots.sorted(by: { ($0.component, $0.slot) < ($1.component, $1.slot) }) {
            lines.append("slot \(Data(link.component.utf8).hexString) \(link.slot.rawValue) \(link.target.map { Data($0.utf8).hexString } ?? "none")")
        }
        return SHA256.hex(lines.joined(separator: "\n"))
    }
}

extension ContentDiff {
    enum CodingKeys: String, CodingKey {
        case type, unified
        case oldBytes = "old_bytes"
        case newBytes = "new_bytes"
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .identical:
            try container.encode("identical", forKey: .type)
        case .text(let unified):
            try container.encode("text", forKey: .type)
            try container.encode(unified, forKey: .unified)
        case .binary(let oldBytes, let newBytes):
            try container.encode("binary", forKey: .type)
            try container.encodeIfPresent(oldBytes, forKey: .oldBytes)
            try container.encodeIfPresent(newBytes, forKey: .newBytes)
        case .large(let oldBytes, let newBytes):
            try container.encode("large", forKey: .type)
            try container.encodeIfPresent(oldBytes, forKey: .oldBytes)
            try container.encodeIfPresent(newBytes, forKey: .newBytes)
        }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "identical": self = .identical
        case "text": self = .text(try container.decode(String.self, forKey: .unified))
        case "binary":
            self = .binary(oldBytes: try container.decodeIfPresent(Int.self, forKey: .oldBytes),
                           newBytes: try container.decodeIfPresent(Int.self, forKey: .newBytes))
        case "large":
            self = .large(oldBytes: try container.decodeIfPresent(Int.self, forKey: .oldBytes),
                          newBytes: try container.decodeIfPresent(Int.self, forKey: .newBytes))
        default:
            throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown diff type \(type)")
        }
    }
}
