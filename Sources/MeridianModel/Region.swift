/// One independent AI instance in one jurisdiction, as its region file declares it.
public struct Region: Sendable, Equatable {
    public var name: String
    /// The region file, relative to the fleet root.
    public var file: String
    public var jurisdiction: Jurisdiction
    /// The port the regional gateway listens on.
    public var gatewayPort: Int
    /// Order among regions of one jurisdiction in the routing table; lower first.
    public var priority: Int
    public var hosts: [FleetHost]
    /// Values templates can use; a value `env:NAME` or `file:PATH` is a secret reference.
    public var variables: [String: VariableValue]
    public var configFiles: [ConfigFile]
    /// Names of the policies in force, in the order listed.
    public var policies: [String]
    /// Version pins that override the fleet's platform versions.
    public var versions: [String: Version]

    public init(name: String, file: String, jurisdiction: Jurisdiction, gatewayPort: Int, priority: Int = 100, hosts: [FleetHost], variables: [String: VariableValue] = [:], configFiles: [ConfigFile] = [], policies: [String] = [], versions: [String: Version] = [:]) {
        self.name = name
        self.file = file
        self.jurisdiction = jurisdiction
        self.gatewayPort = gatewayPort
        self.priority = priority
        self.hosts = hosts
        self.variables = variables
        self.configFiles = configFiles
        self.policies = policies
        self.versions = versions
    }

    /// The hosts with the gateway role.
    public var gateways: [FleetHost] { hosts.filter { $0.roles.contains(.gateway) } }

    /// The hosts that run `component`.
    public func hosts(running component: String) -> [FleetHost] {
        hosts.filter { $0.roles.contains(.component(component)) }
    }
}

/// A machine of a region, reached over SSH. Unset connection fields fall back
/// to the fleet defaults. (Named FleetHost because Foundation declares `Host`.)
public struct FleetHost: Sendable, Equatable {
    public var name: String
    /// Where meridian reaches the host over SSH.
    public var address: String
    /// Where the host's slot processes listen, when that is not `address`
    /// (the region's gateway reaches the host on another address).
    public var listen: String?
    public var port: Int?
    public var user: String?
    /// Pinned host keys, as OpenSSH public-key lines or `SHA256:` fingerprints.
    public var hostKeys: [String]
    public var roles: [Role]
    public var root: String?

    public init(name: String, address: String, listen: String? = nil, port: Int? = nil, user: String? = nil, hostKeys: [String] = [], roles: [Role], root: String? = nil) {
        self.name = name
        self.address = address
        self.listen = listen
        self.port = port
        self.user = user
        self.hostKeys = hostKeys
        self.roles = roles
        self.root = root
    }

    public func effectivePort(_ defaults: FleetDefaults) -> Int { port ?? defaults.ssh.port }
    public func effectiveUser(_ defaults: FleetDefaults) -> String { user ?? defaults.ssh.user }
    public func effectiveRoot(_ defaults: FleetDefaults) -> String { root ?? defaults.root }

    /// The address slot processes bind and health checks reach: `listen`, else
    /// `address`, without the brackets an IPv6 address may be written with.
    public var serviceAddress: String {
        let chosen = listen ?? address
        return chosen.hasPrefix("[") && chosen.hasSuffix("]") ? String(chosen.dropFirst().dropLast()) : chosen
    }

    /// The components this host runs, in role order.
    public var components: [String] {
        roles.compactMap {
            switch $0 {
            case .gateway: return nil
            case .component(let name): return name
            }
        }
    }
}

/// What a host does in its region.
public enum Role: Hashable, Sendable, CustomStringConvertible {
    /// Runs the regional nginx gateway.
    case gateway
    /// Runs the named component.
    case component(String)

    public init(_ text: String) { self = text == "gateway" ? .gateway : .component(text) }

    public var description: String {
        switch self {
        case .gateway: return "gateway"
        case .component(let name): return name
        }
    }
}

/// A region variable: a plain value, or a reference to a secret that is
/// resolved on the control plane at apply time and never stored.
public enum VariableValue: Sendable, Equatable, CustomStringConvertible {
    case plain(String)
    case secret(SecretReference)

    public init(_ text: String) {
        self = SecretReference(parsing: text).map(VariableValue.secret) ?? .plain(text)
    }

    public var description: String {
        switch self {
        case .plain(let value): return value
        case .secret(let reference): return reference.description
        }
    }
}

/// A configuration file rendered from a template for every host of the
/// region that runs its component (every host when it names none).
public struct ConfigFile: Sendable, Equatable {
    /// The template, relative to the fleet root (`templates/…`).
    public var template: String
    /// Where it is written: relative to the host root, or absolute when `outsideRoot`.
    public var destination: String
    public var component: String?
    /// Permission bits; files that use a secret are written 0600 whatever this says.
    public var mode: Int
    /// Whether an absolute destination outside the host root is intended.
    public var outsideRoot: Bool

    public init(template: String, destination: String, component: String? = nil, mode: Int = 0o644, outsideRoot: Bool = false) {
        self.template = template
        self.destination = destination
        self.component = component
        self.mode = mode
        self.outsideRoot = outsideRoot
    }
}
