/// Everything one fleet repository declares, loaded and resolved: fleet-wide
/// settings, regions sorted by name and policies sorted by name. Every value
/// can be traced back to its file through `sources`.
public struct Fleet: Sendable {
    public var settings: FleetSettings
    public var regions: [Region]
    public var policies: [Policy]
    /// SHA-256 of every fleet file read, keyed by its path relative to the fleet root.
    public var fileHashes: [String: String]
    public var sources: SourceMap

    public init(settings: FleetSettings, regions: [Region], policies: [Policy], fileHashes: [String: String], sources: SourceMap) {
        self.settings = settings
        self.regions = regions.sorted { $0.name < $1.name }
        self.policies = policies.sorted { $0.name < $1.name }
        self.fileHashes = fileHashes
        self.sources = sources
    }

    public func region(named name: String) -> Region? { regions.first { $0.name == name } }
    public func policy(named name: String) -> Policy? { policies.first { $0.name == name } }
    public func component(named name: String) -> Component? { settings.components.first { $0.name == name } }

    /// The version of `component` a region should run: its pin, else the fleet's platform version.
    public func version(of component: String, in region: Region) -> Version? {
        region.versions[component] ?? settings.platform[component]
    }

    /// The policies a region references, in the order it lists them (unknown names skipped).
    public func policies(of region: Region) -> [Policy] {
        region.policies.compactMap { policy(named: $0) }
    }

    /// The location of the value at `path` in `file`, or of the nearest enclosing value.
    public func location(_ file: String, _ path: String) -> SourceLocation {
        sources.location(file: file, path: path)
    }
}

/// Where each value of each file was written: path inside the document →
/// line and column. Lookups of a path that has no entry fall back to its
/// nearest recorded parent, so a missing field points at its mapping.
public struct SourceMap: Sendable {
    private var entries: [String: [String: SourceLocation]] = [:]

    public init() {}

    public mutating func record(_ location: SourceLocation, path: String) {
        if entries[location.file]?[path] == nil { entries[location.file, default: [:]][path] = location }
    }

    /// Adds every entry of `other`; entries already recorded win.
    public mutating func merge(_ other: SourceMap) {
        for (file, table) in other.entries {
            entries[file, default: [:]].merge(table) { existing, _ in existing }
        }
    }

    public func location(file: String, path: String) -> SourceLocation {
        guard let table = entries[file] else { return SourceLocation(file: file) }
        var current = path
        while true {
            if let hit = table[current] { return hit }
            if current.isEmpty { return SourceLocation(file: file) }
            current = SourceMap.parent(of: current)
        }
    }

    static func parent(of path: String) -> String {
        guard let last = path.lastIndex(where: { $0 == "." || $0 == "[" }) else { return "" }
        return String(path[..<last])
    }
}

/// The fleet-wide settings of `meridian.yaml`.
public struct FleetSettings: Sendable, Equatable {
    public var name: String
    public var defaults: FleetDefaults
    /// Components in the order they are declared.
    public var components: [Component]
    /// Fleet-wide platform versions: component name → version.
    public var platform: [String: Version]
    public var waves: [Wave]
    public var residency: ResidencySettings
    /// Where the fleet's state store lives, when meridian.yaml says.
    public var state: StateSetting?

    public init(name: String, defaults: FleetDefaults, components: [Component], platform: [String: Version], waves: [Wave], residency: ResidencySettings, state: StateSetting? = nil) {
        self.name = name
        self.defaults = defaults
        self.components = components
        self.platform = platform
        self.waves = waves
        self.residency = residency
        self.state = state
    }
}

/// meridian.yaml's `state:`: a SQLite file inside the fleet repository or a
/// `postgresql://` URL, and for PostgreSQL an optional secret reference for
/// the password. Invariant: `location` holds no password (validation refuses one).
public struct StateSetting: Sendable, Equatable {
    public var location: String
    public var password: SecretReference?

    public init(location: String, password: SecretReference? = nil) {
        self.location = location
        self.password = password
    }
}

/// Defaults every host inherits unless its region file overrides them.
public struct FleetDefaults: Sendable, Equatable {
    public var ssh: SSHSettings
    /// The folder on each host that meridian owns.
    public var root: String
    /// How many hosts are worked at once.
    public var parallelism: Int
    /// How long a blue-green or canary rollout keeps the old slot running once
    /// all traffic is on the new one: the window for `meridian rollout rollback`.
    public var gracePeriod: Duration

    public static let standardRoot = "/srv/meridian"
    public static let standardParallelism = 32
    public static let standardGracePeriod: Duration = .seconds(30)

    public init(ssh: SSHSettings = SSHSettings(), root: String = FleetDefaults.standardRoot, parallelism: Int = FleetDefaults.standardParallelism, gracePeriod: Duration = FleetDefaults.standardGracePeriod) {
        self.ssh = ssh
        self.root = root
        self.parallelism = parallelism
        self.gracePeriod = gracePeriod
    }
}

/// How meridian reaches hosts over SSH. Paths are relative to the fleet root
/// unless absolute or starting with `~/`.
public struct SSHSettings: Sendable, Equatable {
    public var user: String
    public var port: Int
    /// Private key files tried in order.
    public var identities: [String]
    /// The environment variable holding the identities' passphrase, if they have one.
    public var passphraseEnv: String?
    /// Whether to try keys held by ssh-agent (`SSH_AUTH_SOCK`).
    public var agent: Bool
    /// The known_hosts file consulted for hosts without pinned keys.
    public var knownHosts: String
    public var connectTimeout: Duration
    public var commandTimeout: Duration
    /// Interval of SSH keepalive messages; zero turns them off.
    public var keepalive: Duration

    public init(user: String = "root", port: Int = 22, identities: [String] = ["~/.ssh/id_ed25519"], passphraseEnv: String? = nil, agent: Bool = true, knownHosts: String = ".meridian/known_hosts", connectTimeout: Duration = .seconds(10), commandTimeout: Duration = .seconds(300), keepalive: Duration = .seconds(30)) {
        self.user = user
        self.port = port
        self.identities = identities
        self.passphraseEnv = passphraseEnv
        self.agent = agent
        self.knownHosts = knownHosts
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.keepalive = keepalive
    }
}

/// A service of the regional stack, installed side by side in two slots.
public struct Component: Sendable, Equatable {
    public var name: String
    public var artifact: ArtifactSource
    /// The argv that starts the component, run from its slot folder;
    /// `{address}`, `{port}`, `{slot}`, `{version}` and `{root}` are replaced when it starts.
    public var start: [String]
    public var ports: SlotPorts
    /// HTTP path answered with 2xx when the component is healthy.
    public var health: String
    public var smoke: [SmokeProbe]
    public var strategy: RolloutStrategy
    public var canary: CanarySettings
    /// The path prefix the regional gateway sends to this component, e.g.
    /// `/v1/`; starts and ends with `/`. Nil: the gateway does not serve it.
    public var route: String?

    /// The names a start command may write in braces; each is replaced when a slot starts.
    public static let startPlaceholders = ["address", "port", "slot", "version", "root"]

    /// The `{name}` placeholders in one word of a start command (lower-case names only,
    /// so literal braces such as JSON in an argument are left alone).
    public static func placeholders(in word: String) -> [String] {
        let characters = Array(word)
        var found: [String] = []
        for (open, character) in characters.enumerated() where character == "{" {
            var end = open + 1
            while end < characters.count, ("a"..."z").contains(characters[end]) || characters[end] == "_" { end += 1 }
            if end > open + 1, end < characters.count, characters[end] == "}" { found.append(String(characters[(open + 1)..<end])) }
        }
        return found
    }

    public init(name: String, artifact: ArtifactSource, start: [String], ports: SlotPorts, health: String = "/healthz", smoke: [SmokeProbe] = [], strategy: RolloutStrategy = .recreate, canary: CanarySettings = CanarySettings(), route: String? = nil) {
        self.name = name
        self.artifact = artifact
        self.start = start
        self.ports = ports
        self.health = health
        self.smoke = smoke
        self.strategy = strategy
        self.canary = canary
        self.route = route
    }
}

/// Where a component's release for a version comes from. `{version}` in the
/// path or URL is replaced by the version.
public enum ArtifactSource: Sendable, Equatable {
    /// A file or folder in the fleet repository.
    case path(String)
    /// A URL the hosts fetch themselves, with the expected SHA-256 per version.
    case url(String, sha256: [String: String])

    public func resolved(for version: Version) -> String {
        switch self {
        case .path(let template), .url(let template, _):
            return template.replacingOccurrences(of: "{version}", with: version.description)
        }
    }
}

/// The two side-by-side slots of a component.
public enum Slot: String, Sendable, Codable, CaseIterable, Hashable, Comparable {
    case blue
    case green

    public var other: Slot {
        switch self {
        case .blue: return .green
        case .green: return .blue
        }
    }

    public static func < (a: Slot, b: Slot) -> Bool { a.rawValue < b.rawValue }
}

/// Each slot of a component listens on its own port at the host's service address.
public struct SlotPorts: Sendable, Equatable {
    public var blue: Int
    public var green: Int
    public init(blue: Int, green: Int) {
        self.blue = blue
        self.green = green
    }
    public subscript(slot: Slot) -> Int {
        switch slot {
        case .blue: return blue
        case .green: return green
        }
    }
}

/// A request a new release must answer as expected before it takes traffic.
public struct SmokeProbe: Sendable, Equatable, Codable {
    public var name: String
    public var method: String
    public var path: String
    public var expectStatus: Int
    public var expectBodyContains: String?

    public init(name: String, method: String = "GET", path: String, expectStatus: Int = 200, expectBodyContains: String? = nil) {
        self.name = name
        self.method = method
        self.path = path
        self.expectStatus = expectStatus
        self.expectBodyContains = expectBodyContains
    }
}

/// How a component moves from one version to the next.
public enum RolloutStrategy: String, Sendable, Codable, CaseIterable, Hashable {
    /// Stop the old version, switch, start the new one, health-check it.
    case recreate
    /// Start the new version in the idle slot and switch the gateway in one reload.
    case blueGreen = "blue-green"
    /// Like blue-green, then shift traffic weights step by step with analysis.
    case canary
}

/// The steps and the analysis thresholds of a canary rollout.
public struct CanarySettings: Sendable, Equatable {
    /// Traffic percentages given to the new slot, strictly increasing, ending at 100.
    public var steps: [Int]
    /// How long each step runs before its analysis.
    public var pause: Duration
    public var analysis: CanaryAnalysis
    /// What a step whose analysis cannot judge it (too few requests) does.
    public var inconclusive: InconclusiveHandling

    public init(steps: [Int] = [10, 50, 100], pause: Duration = .seconds(60), analysis: CanaryAnalysis = CanaryAnalysis(), inconclusive: InconclusiveHandling = InconclusiveHandling()) {
        self.steps = steps
        self.pause = pause
        self.analysis = analysis
        self.inconclusive = inconclusive
    }
}

/// How long an inconclusive canary step may run past its pause to gather
/// enough requests, and what happens when it is still inconclusive then.
public struct InconclusiveHandling: Sendable, Equatable {
    /// Extra time beyond the step's pause; the step's window grows with it.
    public var wait: Duration
    public var then: InconclusiveOutcome

    public static let standardWait: Duration = .seconds(300)

    public init(wait: Duration = InconclusiveHandling.standardWait, then: InconclusiveOutcome = .fail) {
        self.wait = wait
        self.then = then
    }
}

/// What a canary step that stays inconclusive past its wait turns into.
public enum InconclusiveOutcome: String, Sendable, Codable, CaseIterable, Hashable {
    /// Treated as a failed step: traffic back to stable, the wave stops.
    case fail
    /// The step holds its weights until `meridian rollout promote` (or `abort`).
    case hold
}

/// Thresholds a canary step must meet, absolute and relative to the stable slot.
public struct CanaryAnalysis: Sendable, Equatable {
    /// Highest tolerated share of 5xx responses, 0…1.
    public var maxErrorRate: Double
    /// Highest tolerated 99th-percentile latency.
    public var maxP99Latency: Duration
    /// Fewest requests a step must see to be judged at all.
    public var minRequests: Int
    /// Highest tolerated error rate above the stable slot's, in absolute points (0…1).
    public var maxErrorRateIncrease: Double?
    /// Highest tolerated ratio of the canary's p99 latency to the stable slot's.
    public var maxLatencyRatio: Double?
    /// How sure the statistical tests must be that the canary is worse before
    /// a breached threshold fails the step, 0.5…0.9999; 1 − confidence is the
    /// step's false-failure rate when canary and stable behave alike.
    public var confidence: Double

    public static let standardConfidence = 0.95

    public init(maxErrorRate: Double = 0.01, maxP99Latency: Duration = .milliseconds(1000), minRequests: Int = 20, maxErrorRateIncrease: Double? = nil, maxLatencyRatio: Double? = nil, confidence: Double = CanaryAnalysis.standardConfidence) {
        self.maxErrorRate = maxErrorRate
        self.maxP99Latency = maxP99Latency
        self.minRequests = minRequests
        self.maxErrorRateIncrease = maxErrorRateIncrease
        self.maxLatencyRatio = maxLatencyRatio
        self.confidence = confidence
    }
}

/// A group of regions upgraded together; waves run in order.
public struct Wave: Sendable, Equatable {
    public var name: String
    public var regions: [String]
    /// Whether the wave waits for `meridian rollout promote` before it starts.
    public var approval: Bool
    /// How many regions of the wave are upgraded at once.
    public var parallelism: Int?

    public init(name: String, regions: [String], approval: Bool = false, parallelism: Int? = nil) {
        self.name = name
        self.regions = regions
        self.approval = approval
        self.parallelism = parallelism
    }
}

/// How the gateways read and enforce the jurisdiction of a request's data.
public struct ResidencySettings: Sendable, Equatable {
    /// The request header naming the data's jurisdiction.
    public var header: String
    /// What a request without the header gets.
    public var missing: MissingResidency
    /// The HTTP status of a refused request.
    public var refuseStatus: Int

    public init(header: String = "X-Data-Residency", missing: MissingResidency = .refuse, refuseStatus: Int = 451) {
        self.header = header
        self.missing = missing
        self.refuseStatus = refuseStatus
    }
}

/// What happens to a request whose residency header is missing.
public enum MissingResidency: Sendable, Equatable {
    /// Refused: the fail-closed default.
    case refuse
    /// Treated as data of this jurisdiction.
    case assume(Jurisdiction)
}

/// A legal area data may be bound to, as an upper-case code (`EU`, `US`, `UK`, `SG`).
public struct Jurisdiction: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public var code: String
    public init?(_ code: String) {
        guard (2...8).contains(code.count), code.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber) }),
              code.first?.isLetter == true else { return nil }
        self.code = code
    }
    /// A code taken as written, for a region whose jurisdiction failed
    /// validation but whose other values are still checked.
    public init(unchecked code: String) { self.code = code }
    public var description: String { code }
    public static func < (a: Jurisdiction, b: Jurisdiction) -> Bool { a.code < b.code }
    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Jurisdiction(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a jurisdiction: \(text)"))
        }
        self = value
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(code)
    }
}
