import ArgumentParser
import Foundation
import MeridianEngine
import MeridianModel
import MeridianTestHosts

/// `meridian sandbox up|down|status`: the fleet's hosts as real sshd processes on this machine.
struct SandboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run the fleet's hosts on this machine: a real sshd per host, on the address and port its region file names.",
        discussion: """
        For fleets whose hosts are all on loopback addresses, such as the example fleet (127.0.R.H). \
        Each host gets its own host key, home and root folder (the fleet's root path, bound in a private mount \
        namespace of each session); the client key and the hosts' keys go where meridian.yaml points. \
        meridian then treats them as real servers: `meridian apply` starts the gateways and services. Needs root. \
        See docs/getting-started.md.
        """,
        subcommands: [SandboxUp.self, SandboxDown.self, SandboxStatus.self]
    )
}

/// Where a fleet's sandbox lives and where its keys go.
enum SandboxFiles {
    static let relativeDirectory = ".meridian/sandbox"

    /// The layout from the fleet's ssh settings; without a loadable fleet, the standard paths.
    static func layout(fleetOptions: FleetOptions, fleet: Fleet?) -> SandboxLayout {
        let root = fleetOptions.root
        let directory = root.appendingPathComponent(relativeDirectory).path
        guard let fleet else {
            return SandboxLayout(directory: directory, identityFile: directory + "/id_ed25519", knownHostsFile: root.appendingPathComponent(".meridian/known_hosts").path)
        }
        let endpoints = FleetEndpoints(fleet: fleet, fleetRoot: root)
        let identity = fleet.settings.defaults.ssh.identities.first.map(endpoints.resolve) ?? directory + "/id_ed25519"
        return SandboxLayout(directory: directory, identityFile: identity, knownHostsFile: endpoints.knownHostsPath)
    }

    static func fail(_ error: Error) -> ExitCode {
        Output.error("error: \(error)")
        return ExitCode(ExitStatus.failure)
    }
}

struct SandboxUp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start an sshd for every host of the fleet (those already running are kept).",
        discussion: """
        Refuses hosts that are not on a loopback address (127.0.0.0/8). Writes the client key where meridian.yaml's \
        identity points and the hosts' keys into its known_hosts file; gives every env: secret the fleet references \
        a random value in .meridian/sandbox/env (source it before `meridian apply`). Exit 0 when every host accepts \
        connections, 1 otherwise, with the reason.
        """
    )

    @OptionGroup var fleetOptions: FleetOptions

    func run() throws {
        let (fleet, _) = try fleetOptions.loadValid()
        let defaults = fleet.settings.defaults
        var hosts: [SandboxHostSpec] = []
        var outside: [String] = []
        var secrets: [String] = []
        for region in fleet.regions {
            for host in region.hosts {
                if !SandboxUp.isLoopbackIPv4(host.address) { outside.append("\(region.file): host \(host.name) is at \(host.address)") }
                hosts.append(SandboxHostSpec(region: region.name, name: host.name, address: host.address, port: host.effectivePort(defaults), root: host.effectiveRoot(defaults)))
            }
            for value in region.variables.values {
                switch value {
                case .plain: break
                case .secret(let reference):
                    switch reference.source {
                    case .environment: secrets.append(reference.name)
                    case .file: break
                    }
                }
            }
        }
        guard outside.isEmpty else {
            Output.error("error: the sandbox runs only hosts on loopback addresses (127.0.0.0/8), so it can never stand in for a real server:")
            for line in outside { Output.error("  \(line)") }
            throw ExitCode(ExitStatus.failure)
        }
        let layout = SandboxFiles.layout(fleetOptions: fleetOptions, fleet: fleet)
        let start: SandboxStart
        do {
            start = try Sandbox.up(hosts: hosts, layout: layout, secrets: secrets)
        } catch {
            throw SandboxFiles.fail(error)
        }
        if !start.alreadyRunning.isEmpty {
            let names = start.alreadyRunning.map(\.name).joined(separator: ", ")
            Output.line(start.started.isEmpty
                ? "The sandbox is already up: all \(hosts.count) hosts were running; nothing started (`meridian sandbox down` stops it)."
                : "Kept \(start.alreadyRunning.count) host(s) still running from an earlier start (\(names)); started the other \(start.started.count).")
        }
        if !start.started.isEmpty {
            var rows = [["REGION", "HOST", "SSH", "ROOT"]]
            for host in start.started {
                rows.append([host.region, host.name, "\(host.address):\(host.port)", "\(host.root) = \(layout.hostRoot(host.name))"])
            }
            Output.line("Started \(start.started.count) sandbox host(s):")
            Output.text(Table.render(rows))
        }
        Output.line("client key:  \(layout.identityFile)")
        Output.line("known_hosts: \(layout.knownHostsFile)")
        if !start.secrets.isEmpty {
            Output.line("secrets:     \(start.secrets.joined(separator: ", ")) in \(layout.environmentFile) (mode 0600)")
            Output.line("Before `meridian apply`, load them into your shell: . \(layout.environmentFile)")
        }
        Output.line("Next: `meridian hosts check`, then `meridian plan`. `meridian sandbox down` stops everything.")
    }

    static func isLoopbackIPv4(_ address: String) -> Bool {
        let parts = address.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

struct SandboxDown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop every sandbox sshd and everything its hosts started (services, gateways).",
        discussion: """
        Stops the gateways' nginx by their pid files, then every process still inside a host's mount namespace \
        (TERM, then KILL). --purge also removes .meridian/sandbox (host keys, the hosts' root folders, the client \
        key, the secrets) and the hosts' lines in known_hosts; the state store is kept. Exit 0 when nothing of the \
        sandbox runs any more.
        """
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Flag(help: "Also remove the sandbox's folder: every host starts empty at the next `up`.") var purge = false

    func run() throws {
        let fleet = try? fleetOptions.loadValid().0
        let layout = SandboxFiles.layout(fleetOptions: fleetOptions, fleet: fleet)
        guard Sandbox.exists(layout: layout) else {
            Output.line("No sandbox here (\(layout.directory) has no record): nothing to stop.")
            return
        }
        let stop: SandboxStop
        do {
            stop = try Sandbox.down(layout: layout, purge: purge)
        } catch {
            throw SandboxFiles.fail(error)
        }
        Output.line("Stopped \(stop.sshdStopped) sshd(s) and \(stop.servicesStopped.count) process(es) the hosts started; nothing of the sandbox runs.")
        if stop.purged { Output.line("Removed \(layout.directory) and the sandbox hosts' lines in \(layout.knownHostsFile); the state store is kept.") }
    }
}

struct SandboxStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "What runs in the sandbox: each host's sshd and the processes started on it.",
        discussion: "Exit 0 when every host's sshd runs and accepts connections, 1 otherwise (down, partly down, or never started)."
    )

    @OptionGroup var fleetOptions: FleetOptions

    func run() throws {
        let fleet = try? fleetOptions.loadValid().0
        let layout = SandboxFiles.layout(fleetOptions: fleetOptions, fleet: fleet)
        guard Sandbox.exists(layout: layout) else {
            Output.line("No sandbox here: `meridian sandbox up` starts one.")
            throw ExitCode(ExitStatus.failure)
        }
        let statuses: [SandboxHostStatus]
        do {
            statuses = try Sandbox.status(layout: layout)
        } catch {
            throw SandboxFiles.fail(error)
        }
        var rows = [["REGION", "HOST", "SSH", "SSHD", "PROCESSES"]]
        for status in statuses {
            let sshd = status.sshdPid.map { "running (pid \($0))" + (status.accepting ? "" : ", not accepting") } ?? (status.accepting ? "another process listens" : "stopped")
            let services = status.services.filter { !$0.command.hasPrefix("sshd") }
            rows.append([status.spec.region, status.spec.name, "\(status.spec.address):\(status.spec.port)", sshd,
                         services.isEmpty ? "-" : services.map(SandboxStatus.describe).joined(separator: ", ")])
        }
        Output.text(Table.render(rows))
        let up = statuses.filter { $0.sshdPid != nil && $0.accepting }.count
        Output.line("\(up) of \(statuses.count) hosts up.")
        if up != statuses.count { throw ExitCode(ExitStatus.failure) }
    }

    /// `nginx` or `python3 (inference blue)`: short, from the command line.
    static func describe(_ process: SandboxProcess) -> String {
        let words = process.command.split(separator: " ").map(String.init)
        guard let first = words.first else { return "\(process.pid)" }
        if first.hasPrefix("nginx") { return "nginx (\(process.pid))" }
        let name = (first as NSString).lastPathComponent
        if let slot = words.firstIndex(of: "--slot"), slot + 1 < words.count, let root = words.firstIndex(of: "--port"), root + 1 < words.count {
            return "\(name) slot \(words[slot + 1]) :\(words[root + 1]) (\(process.pid))"
        }
        return "\(name) (\(process.pid))"
    }
}
