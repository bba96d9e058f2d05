import Foundation
import MeridianModel
import MeridianSSH

/// Maps fleet hosts onto SSH endpoints: the host's own settings, else the
/// fleet defaults, with file paths resolved against the fleet root.
public struct FleetEndpoints: Sendable {
    public let fleet: Fleet
    public let fleetRoot: URL
    public let environment: [String: String]

    public init(fleet: Fleet, fleetRoot: URL, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.fleet = fleet
        self.fleetRoot = fleetRoot
        self.environment = environment
    }

    /// The known_hosts file the fleet uses, as an absolute path.
    public var knownHostsPath: String { resolve(fleet.settings.defaults.ssh.knownHosts) }

    public func endpoint(_ host: FleetHost, in region: Region) -> SSHEndpoint {
        let defaults = fleet.settings.defaults
        let ssh = defaults.ssh
        return SSHEndpoint(
            region: region.name,
            hostName: host.name,
            address: host.address,
            port: host.effectivePort(defaults),
            user: host.effectiveUser(defaults),
            identityFiles: ssh.identities.map(resolve),
            passphraseVariable: ssh.passphraseEnv,
            useAgent: ssh.agent && environment["SSH_AUTH_SOCK"] != nil,
            agentSocket: environment["SSH_AUTH_SOCK"],
            hostKeyPolicy: HostKeyPolicy(pinnedKeys: host.hostKeys, knownHostsFile: host.hostKeys.isEmpty ? knownHostsPath : nil),
            connectTimeout: ssh.connectTimeout,
            commandTimeout: ssh.commandTimeout,
            keepaliveInterval: ssh.keepalive == .zero ? nil : ssh.keepalive
        )
    }

    /// Every host of the named regions (all when empty), in region then host order.
    public func endpoints(regions: [String] = []) -> [(region: Region, host: FleetHost, endpoint: SSHEndpoint)] {
        fleet.regions.filter { regions.isEmpty || regions.contains($0.name) }.flatMap { region in
            region.hosts.map { (region, $0, endpoint($0, in: region)) }
        }
    }

    /// `~/x` against $HOME, a relative path against the fleet root.
    public func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") {
            let home = environment["HOME"] ?? NSHomeDirectory()
            return URL(fileURLWithPath: home).appendingPathComponent(String(path.dropFirst(2))).path
        }
        return fleetRoot.appendingPathComponent(path).standardizedFileURL.path
    }
}

extension SSHEndpoint {
    /// The fleet host this endpoint reaches.
    public var hostID: HostID { HostID(region: region, host: hostName) }
}
