import Foundation
import MeridianModel
import MeridianBasics

/// The plan layer's name for the model's `Slot` (blue or green): one type, two names.
public typealias SlotName = Slot

/// What a managed file holds in desired state. Invariant: a `.sensitive`
/// file carries only its masked rendering (secrets replaced by placeholders)
/// and the references it needs, never a secret value.
public enum ManagedFileContent: Codable, Sendable, Equatable {
    case bytes(Data)
    case sensitive(masked: String, references: [SecretReference])

    public var isSensitive: Bool {
        switch self {
        case .bytes: return false
        case .sensitive: return true
        }
    }

    /// What a plan and a manifest compare for this content: the SHA-256 of the
    /// bytes, or for sensitive content the SHA-256 of its masked rendering
    /// under a distinct prefix (which depends on the template and the secret
    /// references, never on a secret value).
    public var fingerprint: String {
        switch self {
        case .bytes(let data): return SHA256.hex(data)
        case .sensitive(let masked, _): return SHA256.hex("meridian-masked-v1\n" + masked)
        }
    }

    /// The bytes a plan may show: the content itself, or the masked rendering.
    public var displayBytes: Data {
        switch self {
        case .bytes(let data): return data
        case .sensitive(let masked, _): return Data(masked.utf8)
        }
    }
}

/// A file meridian writes under a host's root. Invariants: `path` is relative
/// to the root, has no `.` or `..` component; sensitive content has mode 0600.
public struct ManagedFile: Codable, Sendable, Equatable {
    public var path: String
    public var content: ManagedFileContent
    /// Permission bits, e.g. 0o644.
    public var mode: Int
    public var owner: String?
    /// Where the file comes from, for messages: e.g. `templates/inference.yaml (region eu-west)`.
    public var source: String
    /// The component whose process reads this file: changing it restarts that component.
    public var component: String?

    public init(path: String, content: ManagedFileContent, mode: Int = 0o644, owner: String? = nil, source: String, component: String? = nil) {
        self.path = path
        self.content = content
        self.mode = content.isSensitive ? 0o600 : mode
        self.owner = owner
        self.source = source
        self.component = component
    }

    /// Renders `template` at plan time: secrets are masked, so the result is
    /// sensitive (mode 0600, masked content) whenever a secret flowed into it.
    /// Problems are prefixed with `templatePath` so they read `file:line:col: …`.
    public static func rendering(
        _ template: Template,
        templatePath: String,
        variables: [String: TemplateValue],
        path: String,
        mode: Int = 0o644,
        owner: String? = nil,
        source: String,
        component: String? = nil
    ) -> Result<ManagedFile, ManagedFileRenderingFailure> {
        switch template.render(variables, secrets: MaskingSecretResolver()) {
        case .failure(let failure):
            return .failure(ManagedFileRenderingFailure(templatePath: templatePath, problems: failure.problems))
        case .success(let rendered):
            let content: ManagedFileContent = rendered.isSensitive
                ? .sensitive(masked: rendered.text, references: rendered.secretReferences)
                : .bytes(Data(rendered.text.utf8))
            return .success(ManagedFile(path: path, content: content, mode: mode, owner: owner, source: source, component: component))
        }
    }

    /// Nil when `path` is acceptable, else a sentence saying why not.
    public static func pathProblem(_ path: String) -> String? {
        if path.isEmpty { return "a managed path must not be empty" }
        if path.hasPrefix("/") { return "managed path \(path) must be relative to the host's root" }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            return "managed path \(path) must not contain empty, `.` or `..` components"
        }
        if path.contains("\0") { return "managed path \(path) must not contain a NUL byte" }
        return nil
    }
}

/// Every problem rendering one template ran into, each prefixed with the template's path.
public struct ManagedFileRenderingFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var templatePath: String
    public var problems: [TemplateProblem]
    public var messages: [String] { problems.map { "\(templatePath):\($0)" } }
    public var description: String { messages.joined(separator: "\n") }
}

/// A release a host needs: one artifact version of one component, unpacked
/// under `releases/<component>/<version>/`.
public struct ReleaseRequirement: Codable, Sendable, Equatable, Hashable {
    public var component: String
    public var version: String
    /// The artifact's file name in the fleet's artifacts/ folder.
    public var artifact: String
    public var sha256: String

    public init(component: String, version: String, artifact: String, sha256: String) {
        self.component = component
        self.version = version
        self.artifact = artifact
        self.sha256 = sha256
    }

    /// The release folder relative to the host's root.
    public var path: String { "releases/\(component)/\(version)" }
}

/// How one component is laid out on a host: two slots, each with its own
/// port, and how a new version reaches them. Which slot serves is not desired
/// state: it is what the host's manifest (and a rollout in progress) records.
public struct ComponentSlotLayout: Codable, Sendable, Equatable {
    /// The slot a component's first install goes into, on a host with no record of it.
    public static let firstSlot: SlotName = .blue

    public var component: String
    public var version: String
    public var strategy: RolloutStrategy
    /// The host's service address: where both slots listen, each on its own port.
    public var address: String
    public var bluePort: Int
    public var greenPort: Int
    /// argv of the process; run from the slot's folder.
    public var startCommand: [String]
    public var healthPath: String
    /// Requests a new slot must answer before it takes traffic (blue-green and canary).
    public var smoke: [SmokeProbe]

    public init(component: String, version: String, strategy: RolloutStrategy = .recreate, address: String, bluePort: Int, greenPort: Int, startCommand: [String], healthPath: String, smoke: [SmokeProbe] = []) {
        self.component = component
        self.version = version
        self.strategy = strategy
        self.address = address
        self.bluePort = bluePort
        self.greenPort = greenPort
        self.startCommand = startCommand
        self.healthPath = healthPath
        self.smoke = smoke
    }

    public func port(_ slot: SlotName) -> Int {
        switch slot {
        case .blue: return bluePort
        case .green: return greenPort
        }
    }

    /// The slot link relative to the host's root.
    public func slotPath(_ slot: SlotName) -> String { "slots/\(component)/\(slot.rawValue)" }
}

/// Everything meridian wants on one host, rendered from the fleet. Invariant:
/// file paths are unique, and every component's version has a release.
public struct DesiredHostState: Codable, Sendable, Equatable {
    public static let governanceBundlePath = "governance/bundle.json"

    public var region: String
    public var host: String
    public var address: String
    /// Absolute path of the folder meridian owns on the host.
    public var root: String
    public var roles: [String]
    public var files: [ManagedFile]
    public var releases: [ReleaseRequirement]
    public var components: [ComponentSlotLayout]
    /// On a gateway host, its nginx configuration; its text is also in
    /// `files` at `GatewayConfig.path`, so plan and drift treat it like any
    /// file, while apply puts it in place through the gateway step.
    public var gateway: GatewayConfig?

    public init(region: String, host: String, address: String, root: String, roles: [String], files: [ManagedFile], releases: [ReleaseRequirement], components: [ComponentSlotLayout], gateway: GatewayConfig? = nil) {
        self.region = region
        self.host = host
        self.address = address
        self.root = root
        self.roles = roles
        self.files = files
        self.releases = releases
        self.components = components
        self.gateway = gateway
    }

    /// `region/host`: the key of observed states and of host plans.
    public var id: HostID { HostID(region: region, host: host) }

    public var governanceBundle: ManagedFile? { files.first { $0.path == Self.governanceBundlePath } }

    /// Invariant violations as sentences naming the host; empty when valid.
    public var problems: [String] {
        var problems: [String] = []
        if !root.hasPrefix("/") { problems.append("host \(id): root \(root) must be an absolute path") }
        var seen = Set<String>()
        for file in files {
            if let problem = ManagedFile.pathProblem(file.path) { problems.append("host \(id): \(file.source): \(problem)") }
            if !seen.insert(file.path).inserted { problems.append("host \(id): \(file.path) is declared twice (again by \(file.source))") }
        }
        for component in components where !releases.contains(where: { $0.component == component.component && $0.version == component.version }) {
            problems.append("host \(id): component \(component.component) runs version \(component.version) but no release of it is required")
        }
        return problems
    }
}

/// One file's entry in a host manifest. Invariant: for a sensitive file only
/// the masked fingerprint is recorded, never a hash of the real content.
public struct ManifestFile: Codable, Sendable, Equatable {
    /// SHA-256 of the bytes written; nil for sensitive files.
    public var sha256: String?
    /// For sensitive files: `ManagedFileContent.fingerprint` of what was rendered.
    public var maskedSHA256: String?
    /// For sensitive files: `HostFileKey.keyedHash` of the bytes written
    /// (HMAC-SHA256 under the host's key); nil in manifests of older versions.
    public var keyedSHA256: String?
    public var mode: Int
    public var component: String?

    public init(sha256: String?, maskedSHA256: String?, keyedSHA256: String? = nil, mode: Int, component: String?) {
        self.sha256 = sha256
        self.maskedSHA256 = maskedSHA256
        self.keyedSHA256 = keyedSHA256
        self.mode = mode
        self.component = component
    }

    public var isSensitive: Bool { maskedSHA256 != nil }

    enum CodingKeys: String, CodingKey {
        case sha256, mode, component
        case maskedSHA256 = "masked_sha256"
        case keyedSHA256 = "keyed_sha256"
    }
}

/// One slot of a component as last applied.
public struct ManifestSlot: Codable, Sendable, Equatable {
    /// Nil when the slot holds no release.
    public var version: String?
    /// The service address the slot listens on; nil in manifests written
    /// before meridian recorded it.
    public var address: String?
    public var port: Int
    /// Share of the component's traffic, 0…100, for the gateway.
    public var weight: Int

    public init(version: String?, address: String?, port: Int, weight: Int) {
        self.version = version
        self.address = address
        self.port = port
        self.weight = weight
    }
}

/// One component as last applied.
public struct ManifestComponent: Codable, Sendable, Equatable {
    public var activeSlot: SlotName
    public var blue: ManifestSlot
    public var green: ManifestSlot

    public init(activeSlot: SlotName, blue: ManifestSlot, green: ManifestSlot) {
        self.activeSlot = activeSlot
        self.blue = blue
        self.green = green
    }

    public func slot(_ name: SlotName) -> ManifestSlot {
        switch name {
        case .blue: return blue
        case .green: return green
        }
    }

    /// The version serving traffic.
    public var activeVersion: String? { slot(activeSlot).version }

    enum CodingKeys: String, CodingKey {
        case blue, green
        case activeSlot = "active_slot"
    }
}

/// A release as recorded in a manifest.
public struct ManifestRelease: Codable, Sendable, Equatable, Hashable {
    public var component: String
    public var version: String
    public var sha256: String

    public init(component: String, version: String, sha256: String) {
        self.component = component
        self.version = version
        self.sha256 = sha256
    }
}

/// What meridian last applied to a host, written to `<root>/state/manifest.json`.
/// Invariant: it holds hashes and versions only, never content or secrets.
public struct HostManifest: Codable, Sendable, Equatable {
    public static let currentSchemaVersion = 1
    public static let path = "state/manifest.json"
    /// Beside the manifest: the paths that were sensitive when applied, one
    /// `x<hex of the path>` a line, so the observation script (which cannot
    /// read JSON) never hashes or fetches their content in plain.
    public static let sensitivePathsFile = "state/sensitive-paths"

    /// The content of `sensitivePathsFile` for this manifest.
    public var sensitivePathsList: Data {
        Data(files.keys.sorted().filter { files[$0]?.isSensitive == true }.map { "x" + Data($0.utf8).hexString + "\n" }.joined().utf8)
    }

    /// Paths this manifest records as sensitive.
    public var sensitivePaths: Set<String> { Set(files.filter { $0.value.isSensitive }.map(\.key)) }

    public var schemaVersion: Int
    /// The run that wrote it.
    public var revision: String
    /// ISO 8601, UTC.
    public var appliedAt: String
    public var appliedBy: String
    /// Path relative to the root → entry.
    public var files: [String: ManifestFile]
    public var releases: [ManifestRelease]
    /// Component name → slots.
    public var components: [String: ManifestComponent]

    public init(schemaVersion: Int = HostManifest.currentSchemaVersion, revision: String, appliedAt: String, appliedBy: String, files: [String: ManifestFile], releases: [ManifestRelease], components: [String: ManifestComponent]) {
        self.schemaVersion = schemaVersion
        self.revision = revision
        self.appliedAt = appliedAt
        self.appliedBy = appliedBy
        self.files = files
        self.releases = releases
        self.components = components
    }

    enum CodingKeys: String, CodingKey {
        case revision, files, releases, components
        case schemaVersion = "schema_version"
        case appliedAt = "applied_at"
        case appliedBy = "applied_by"
    }

    /// The bytes written to the host: sorted keys, so equal manifests have equal hashes.
    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        // Encoding plain strings, integers and nested values of this type cannot fail.
        return (try? encoder.encode(self)) ?? Data()
    }
}

/// How a managed path looks on the host.
public enum ObservedFile: Codable, Sendable, Equatable {
    case missing
    case regular(sha256: String, mode: Int, size: Int)
    /// A regular file that is (or was, when applied) sensitive: observed
    /// without its plain hash or content, only with its keyed hash
    /// (`HostFileKey.keyedHash`), nil when the observation had no key.
    case sensitive(keyedSHA256: String?, mode: Int, size: Int)
    /// A directory, a symlink or a device where a file should be.
    case notRegular

    /// The plain SHA-256; never known for a sensitive file.
    public var sha256: String? {
        switch self {
        case .regular(let sha256, _, _): return sha256
        case .missing, .notRegular, .sensitive: return nil
        }
    }

    /// The permission bits of a regular file.
    public var mode: Int? {
        switch self {
        case .regular(_, let mode, _), .sensitive(_, let mode, _): return mode
        case .missing, .notRegular: return nil
        }
    }
}

/// The host's manifest as observed.
public enum ObservedManifest: Codable, Sendable, Equatable {
    case absent
    case present(HostManifest, sha256: String)
    /// The file exists but is not a manifest this version understands.
    case unreadable(sha256: String, reason: String)

    public var manifest: HostManifest? {
        switch self {
        case .present(let manifest, _): return manifest
        case .absent, .unreadable: return nil
        }
    }

    public var sha256: String? {
        switch self {
        case .absent: return nil
        case .present(_, let sha256), .unreadable(let sha256, _): return sha256
        }
    }
}

/// A release folder present on the host.
public struct ObservedRelease: Codable, Sendable, Equatable, Hashable, Comparable {
    public var component: String
    public var version: String

    public init(component: String, version: String) {
        self.component = component
        self.version = version
    }

    public static func < (lhs: ObservedRelease, rhs: ObservedRelease) -> Bool {
        (lhs.component, lhs.version) < (rhs.component, rhs.version)
    }
}

/// Where a slot link points, nil when the link is missing.
public struct ObservedSlotLink: Codable, Sendable, Equatable {
    public var component: String
    public var slot: SlotName
    public var target: String?

    public init(component: String, slot: SlotName, target: String?) {
        self.component = component
        self.slot = slot
        self.target = target
    }
}

/// A supervised process's pid file: the pid it names (nil when unreadable)
/// and whether that process was alive.
public struct ObservedProcess: Codable, Sendable, Equatable {
    public var component: String
    public var slot: SlotName
    public var pid: Int?
    public var alive: Bool

    public init(component: String, slot: SlotName, pid: Int?, alive: Bool) {
        self.component = component
        self.slot = slot
        self.pid = pid
        self.alive = alive
    }
}

/// The contents of `<root>/state/lock`: who runs on the host and until when.
/// Times are seconds since 1970 in the host's clock.
public struct RemoteLock: Codable, Sendable, Equatable {
    public var holder: String
    public var runID: String
    public var pid: Int?
    public var startedAt: Int?
    public var expiresAt: Int?

    public init(holder: String, runID: String, pid: Int?, startedAt: Int?, expiresAt: Int?) {
        self.holder = holder
        self.runID = runID
        self.pid = pid
        self.startedAt = startedAt
        self.expiresAt = expiresAt
    }
}

/// What one observation found on a host. Invariant: `files` has an entry for
/// every path the observation asked about, and `fileContents` only holds
/// content of non-sensitive files whose hash differed from the expected one.
public struct ObservedHostState: Codable, Sendable, Equatable {
    public var manifest: ObservedManifest
    /// Path relative to the root → what is there.
    public var files: [String: ObservedFile]
    /// Content fetched for diffs, path → bytes.
    public var fileContents: [String: Data]
    public var releases: [ObservedRelease]
    public var slots: [ObservedSlotLink]
    public var processes: [ObservedProcess]
    public var lock: RemoteLock?
    /// Files under the managed folders that meridian was not asked about, sorted.
    public var unmanagedFiles: [String]
    /// Whether the gateway's nginx master (`router/run/nginx.pid`) is alive;
    /// nil when the observation did not look (a host without the gateway role).
    public var gatewayRunning: Bool?

    public init(manifest: ObservedManifest = .absent, files: [String: ObservedFile] = [:], fileContents: [String: Data] = [:], releases: [ObservedRelease] = [], slots: [ObservedSlotLink] = [], processes: [ObservedProcess] = [], lock: RemoteLock? = nil, unmanagedFiles: [String] = [], gatewayRunning: Bool? = nil) {
        self.manifest = manifest
        self.files = files
        self.fileContents = fileContents
        self.releases = releases
        self.slots = slots
        self.processes = processes
        self.lock = lock
        self.unmanagedFiles = unmanagedFiles
        self.gatewayRunning = gatewayRunning
    }

    public func slotTarget(component: String, slot: SlotName) -> String? {
        slots.first { $0.component == component && $0.slot == slot }?.target
    }

    public func process(component: String, slot: SlotName) -> ObservedProcess? {
        processes.first { $0.component == component && $0.slot == slot }
    }
}

/// The key a host's sensitive files are hashed with: HMAC-SHA256 under a
/// key derived from the state store's fleet key and the host's name, so
/// that a host (which is sent its own key to hash its files) learns nothing
/// that would let it check guesses of another host's secrets. Invariant:
/// `bytes` is 32 bytes.
public struct HostFileKey: Sendable, Equatable {
    public var bytes: Data

    public init(bytes: Data) { self.bytes = bytes }

    /// The key of `region/host` under the store's `fleetKey`.
    public static func derive(fleetKey: Data, region: String, host: String) -> HostFileKey {
        HostFileKey(bytes: HMACSHA256.mac(key: fleetKey, message: Data("meridian-host-file-key-v1\0\(region)\0\(host)".utf8)))
    }

    /// The keyed hash recorded and compared for a sensitive file's bytes.
    public func keyedHash(_ content: Data) -> String { HMACSHA256.hex(key: bytes, message: content) }

    /// The keyed hash from the digest a host computed over the inner pad and the file.
    public func finish(innerDigest: Data) -> String { HMACSHA256.finish(key: bytes, innerDigest: innerDigest).hexString }
}
