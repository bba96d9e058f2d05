import ArgumentParser
import Foundation
import MeridianEngine
import MeridianModel
import MeridianSSH

/// `meridian trust HOST`: shows a host's key and, once confirmed, records it in the fleet's known_hosts.
struct TrustCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trust",
        abstract: "Show a host's key fingerprint and, after confirmation, record it in the fleet's known_hosts.",
        discussion: "Compare the fingerprint with one obtained out of band (e.g. `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host's console) before you confirm."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Argument(help: "The host's name in the fleet.") var host: String
    @Option(help: "The host's region (needed only when the name alone is ambiguous).") var region: String?
    @Flag(help: "Record the key without asking.") var yes = false

    func run() async throws {
        let (fleet, _) = try fleetOptions.loadValid()
        let mapping = FleetEndpoints(fleet: fleet, fleetRoot: fleetOptions.root)
        let matches = mapping.endpoints().filter { $0.host.name == host && (region == nil || $0.region.name == region) }
        guard let target = matches.first else {
            Output.error("error: no host \"\(host)\"\(region.map { " in region \($0)" } ?? "") in the fleet; `meridian hosts check` lists every host")
            throw ExitCode(ExitStatus.failure)
        }
        if !target.host.hostKeys.isEmpty {
            Output.error("note: \(host) pins its key in \(target.region.file); known_hosts is not consulted for it. Edit host_key there to change it.")
        }
        let key: PublicHostKey
        do {
            key = try await SSHSession.scanHostKey(target.endpoint)
        } catch {
            Output.error("error: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
        Output.line("\(target.endpoint.place) presents \(key.algorithm) key \(key.fingerprint)")
        Output.line("  \(key.openSSHLine)")
        if !yes {
            guard isatty(STDIN_FILENO) != 0 else {
                Output.error("error: no terminal to confirm on; check the fingerprint and rerun with --yes")
                throw ExitCode(ExitStatus.usage)
            }
            FileHandle.standardOutput.write(Data("Record this key in \(mapping.knownHostsPath)? [y/N] ".utf8))
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                Output.line("Nothing recorded.")
                return
            }
        }
        do {
            try KnownHostsFile.append(names: [target.host.address], port: target.endpoint.port, key: key, to: mapping.knownHostsPath)
        } catch {
            Output.error("error: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
        Output.line("Recorded \(host) in \(mapping.knownHostsPath).")
    }
}
