/// Everything needed to reach one host over SSH, independent of the fleet
/// model (the CLI maps fleet hosts onto it). Invariant: a plain value; nothing
/// in it is resolved, opened or read until a session connects.
public struct SSHEndpoint: Sendable, Hashable {
    /// The region the host belongs to; only used to name the place in errors.
    public var region: String
    /// The host's name in the fleet; used in errors and for known_hosts lookups.
    public var hostName: String
    /// What to connect to: an IPv4 or IPv6 literal or a DNS name.
    public var address: String
    public var port: Int
    public var user: String
    /// Private key files tried in order (their `.pub` sibling is used when present).
    public var identityFiles: [String]
    /// The name of the environment variable that holds the passphrase of the
    /// identity files, if they are encrypted; the passphrase itself is never stored.
    public var passphraseVariable: String?
    /// Whether to try the keys of an ssh-agent after the identity files.
    public var useAgent: Bool
    /// The agent's socket; nil means the `SSH_AUTH_SOCK` of this process.
    public var agentSocket: String?
    public var hostKeyPolicy: HostKeyPolicy
    /// Bounds the TCP connect, the handshake and authentication together.
    public var connectTimeout: Duration
    /// The default bound of one remote command or transfer.
    public var commandTimeout: Duration
    /// How often to send an SSH keepalive while the session is open; nil for never.
    public var keepaliveInterval: Duration?

    public init(
        region: String,
        hostName: String,
        address: String,
        port: Int = 22,
        user: String = "root",
        identityFiles: [String] = [],
        passphraseVariable: String? = nil,
        useAgent: Bool = false,
        agentSocket: String? = nil,
        hostKeyPolicy: HostKeyPolicy,
        connectTimeout: Duration = .seconds(10),
        commandTimeout: Duration = .seconds(300),
        keepaliveInterval: Duration? = .seconds(30)
    ) {
        self.region = region
        self.hostName = hostName
        self.address = address
        self.port = port
        self.user = user
        self.identityFiles = identityFiles
        self.passphraseVariable = passphraseVariable
        self.useAgent = useAgent
        self.agentSocket = agentSocket
        self.hostKeyPolicy = hostKeyPolicy
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.keepaliveInterval = keepaliveInterval
    }

    /// Where an error happened, for messages.
    public var place: SSHPlace {
        SSHPlace(region: region, hostName: hostName, address: address, port: port)
    }
}

/// Which host keys a session accepts. Invariant: there is no "accept any"
/// policy; a key is accepted only when a pinned key or a known_hosts entry
/// for this host matches it exactly.
public struct HostKeyPolicy: Sendable, Hashable {
    /// OpenSSH public-key lines (`ssh-ed25519 AAAA… [comment]`) and/or
    /// fingerprints (`SHA256:…`), as pinned in the region file.
    public var pinnedKeys: [String]
    /// An OpenSSH known_hosts file (plain or hashed host names).
    public var knownHostsFile: String?

    public init(pinnedKeys: [String] = [], knownHostsFile: String? = nil) {
        self.pinnedKeys = pinnedKeys
        self.knownHostsFile = knownHostsFile
    }
}

/// The region, host and address an SSH error happened at.
public struct SSHPlace: Sendable, Hashable, CustomStringConvertible {
    public var region: String
    public var hostName: String
    public var address: String
    public var port: Int

    public init(region: String, hostName: String, address: String, port: Int) {
        self.region = region
        self.hostName = hostName
        self.address = address
        self.port = port
    }

    /// `eu-west/gw-1 (10.0.0.5:22)`; IPv6 addresses are bracketed.
    public var description: String {
        let hostPart = address.contains(":") ? "[\(address)]" : address
        return "\(region)/\(hostName) (\(hostPart):\(port))"
    }
}
