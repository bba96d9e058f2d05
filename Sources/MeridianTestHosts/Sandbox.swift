import Foundation
import MeridianBasics

/// One host of a fleet as the sandbox serves it: the SSH address and port its
/// region file names, and the root folder the fleet gives it on the host.
public struct SandboxHostSpec: Sendable, Hashable, Codable {
    public var region: String
    public var name: String
    public var address: String
    public var port: Int
    /// The host's root as the fleet names it (e.g. `/srv/meridian`); inside
    /// every session of this host it is the host's own folder.
    public var root: String

    public init(region: String, name: String, address: String, port: Int, root: String) {
        self.region = region
        self.name = name
        self.address = address
        self.port = port
        self.root = root
    }
}

/// Where the sandbox keeps its files and where the fleet expects its keys.
public struct SandboxLayout: Sendable, Hashable {
    /// `<fleet>/.meridian/sandbox`: host folders, sshd configs, the record.
    public var directory: String
    /// The client key every host accepts, where meridian.yaml's `identity` points.
    public var identityFile: String
    /// The known_hosts file meridian.yaml points at; the sandbox writes its hosts' keys there.
    public var knownHostsFile: String

    public init(directory: String, identityFile: String, knownHostsFile: String) {
        self.directory = URL(fileURLWithPath: directory).standardizedFileURL.path
        self.identityFile = identityFile
        self.knownHostsFile = knownHostsFile
    }

    /// `export NAME=value` lines for the fleet's `env:` secrets; mode 0600, never inside a fleet file.
    public var environmentFile: String { directory + "/env" }
    var recordFile: String { directory + "/sandbox.json" }
    var authorizedKeysFile: String { directory + "/authorized_keys" }
    var enterScript: String { directory + "/enter" }
    func hostFolder(_ name: String) -> String { directory + "/hosts/" + name }
    /// The folder that is `spec.root` inside the host's sessions.
    public func hostRoot(_ name: String) -> String { hostFolder(name) + "/root" }
}

/// What one sandbox host is doing now.
public struct SandboxHostStatus: Sendable, Hashable {
    public var spec: SandboxHostSpec
    /// The host's sshd, when its pid file names a live sshd.
    public var sshdPid: Int32?
    /// Whether the SSH address and port accept TCP connections.
    public var accepting: Bool
    /// Processes started on the host (slot services, its gateway's nginx), by pid.
    public var services: [SandboxProcess]
}

/// A process running inside one sandbox host.
public struct SandboxProcess: Sendable, Hashable {
    public var pid: Int32
    /// Its command line, spaces between arguments.
    public var command: String
}

/// What `up` did.
public struct SandboxStart: Sendable {
    public var started: [SandboxHostSpec]
    /// Hosts whose sshd was still running (a second `up`, or left by a crash) and was kept.
    public var alreadyRunning: [SandboxHostSpec]
    /// The `env:` secrets written to the environment file (names only).
    public var secrets: [String]
}

/// What `down` did.
public struct SandboxStop: Sendable {
    public var sshdStopped: Int
    public var servicesStopped: [SandboxProcess]
    public var purged: Bool
}

/// Why the sandbox could not do what was asked.
public enum SandboxError: Error, Sendable, CustomStringConvertible {
    case needsRoot
    case missingTool(path: String, package: String)
    case addressTaken(host: String, address: String, port: Int)
    case otherHostsRunning(running: [String])
    case didNotStart(host: String, address: String, port: Int, log: String)
    case leftRunning([SandboxProcess])
    case io(String)

    public var description: String {
        switch self {
        case .needsRoot:
            return "the sandbox needs root: the example fleet logs in as root, and every sandbox host gets its own root folder through a private mount namespace (unshare and mount need CAP_SYS_ADMIN); run it as root, e.g. `sudo meridian sandbox up`"
        case .missingTool(let path, let package):
            return "\(path) is missing: install it with `apt-get install -y \(package)` (or run `bash scripts/install-deps`)"
        case .addressTaken(let host, let address, let port):
            return "\(address):\(port), where host \(host) must listen, is taken by a process that is not this sandbox's sshd (perhaps a sandbox started from another folder, or a test host left behind): find it with `ss -ltnp 'src \(address) and sport = :\(port)'`, stop it (`meridian sandbox down --fleet THAT-FOLDER` for another sandbox), and run `meridian sandbox up` again"
        case .otherHostsRunning(let running):
            return "the sandbox here is running for other hosts than the fleet now names (\(running.joined(separator: ", "))): run `meridian sandbox down`, then `meridian sandbox up`"
        case .didNotStart(let host, let address, let port, let log):
            return "the sshd of host \(host) at \(address):\(port) did not start accepting; its log: \(log)"
        case .leftRunning(let processes):
            return "\(processes.count) sandbox process(es) still run after KILL: " + processes.map { "\($0.pid) \($0.command)" }.joined(separator: "; ")
        case .io(let message):
            return message
        }
    }
}

/// The local sandbox: a real sshd for every host of a fleet, on exactly the
/// address and port its region file names, each with its own host key, home
/// and root folder, all accepting one client key. Each SSH session of a host
/// runs in a private mount namespace where the fleet's root path (e.g.
/// `/srv/meridian`) is the host's own folder, so hosts that share this machine
/// never see each other's files. Invariant: `down` leaves no process of the
/// sandbox running — sshd, its sessions, and everything those sessions
/// started (found by their mount namespace, not by pid files alone).
public enum Sandbox {
    static let sshd = "/usr/sbin/sshd"
    static let unshare = "/usr/bin/unshare"
    static let sftpServer = "/usr/lib/openssh/sftp-server"
    static let keygenTool = "/usr/bin/ssh-keygen"

    /// Starts every host that is not running yet; keeps those that are.
    /// `secrets` are the names of the `env:` secrets the fleet references: each
    /// gets a random value in the environment file (kept across `up`s).
    public static func up(hosts: [SandboxHostSpec], layout: SandboxLayout, secrets: [String]) throws -> SandboxStart {
        guard geteuid() == 0 else { throw SandboxError.needsRoot }
        for (path, package) in [(sshd, "openssh-server"), (sftpServer, "openssh-server"), (keygenTool, "openssh-client"), (unshare, "util-linux")]
        where !FileManager.default.isExecutableFile(atPath: path) {
            throw SandboxError.missingTool(path: path, package: package)
        }
        let recorded = (try? recordedHosts(layout)) ?? []
        let runningBefore = recorded.filter { sshdPid(layout, $0) != nil }
        let stray = runningBefore.filter { !hosts.contains($0) }
        if !stray.isEmpty { throw SandboxError.otherHostsRunning(running: stray.map { "\($0.name) at \($0.address):\($0.port)" }) }
        let keep = Set(runningBefore)
        for host in hosts where !keep.contains(host) && TestHostCluster.accepts(address: host.address, port: host.port) {
            throw SandboxError.addressTaken(host: host.name, address: host.address, port: host.port)
        }

        do {
            try prepare(hosts: hosts, layout: layout)
        } catch let error as SandboxError {
            throw error
        } catch {
            throw SandboxError.io("cannot prepare the sandbox in \(layout.directory): \(error)")
        }
        let written = try writeSecrets(secrets, layout: layout)
        var started: [SandboxHostSpec] = []
        for host in hosts where !keep.contains(host) {
            try launch(host, layout: layout)
            started.append(host)
        }
        for host in started {
            let ready = Poll.blockingUntil(attempts: 1000) { sshdPid(layout, host) != nil && TestHostCluster.accepts(address: host.address, port: host.port) }
            guard ready else {
                throw SandboxError.didNotStart(host: host.name, address: host.address, port: host.port, log: TestHostCluster.tail(layout.hostFolder(host.name) + "/sshd.log"))
            }
        }
        return SandboxStart(started: started, alreadyRunning: hosts.filter { keep.contains($0) }, secrets: written)
    }

    /// What runs: each recorded host's sshd and the processes started on it.
    public static func status(layout: SandboxLayout) throws -> [SandboxHostStatus] {
        let hosts = try recordedHosts(layout)
        let inside = processesByHost(hosts, layout: layout)
        return hosts.map { host in
            SandboxHostStatus(spec: host, sshdPid: sshdPid(layout, host),
                              accepting: TestHostCluster.accepts(address: host.address, port: host.port),
                              services: inside[host.name] ?? [])
        }
    }

    /// Whether a sandbox was ever started in `layout` (its record exists).
    public static func exists(layout: SandboxLayout) -> Bool {
        FileManager.default.fileExists(atPath: layout.recordFile)
    }

    /// Stops every sshd of the sandbox and every process its hosts started:
    /// the gateway's nginx by its pid file (TERM, then KILL), then everything
    /// else still inside a host's mount namespace (TERM, a bounded wait, KILL).
    /// `purge` then removes the sandbox's folder: host keys, roots, client key, secrets.
    public static func down(layout: SandboxLayout, purge: Bool) throws -> SandboxStop {
        let hosts = (try? recordedHosts(layout)) ?? []
        var sshdStopped = 0
        for host in hosts {
            let listener = TestHost(name: host.name, address: host.address, port: host.port, directory: layout.hostFolder(host.name),
                                    root: layout.hostRoot(host.name), home: "", configFile: "", logFile: "", pidFile: layout.hostFolder(host.name) + "/sshd.pid", hostKeyLine: "")
            guard sshdPid(layout, host) != nil else { continue }
            let tree = TestHostCluster.processTree(of: listener)
            for pid in tree { kill(pid, SIGKILL) }
            TestHostCluster.waitUntilGone(tree)
            try? FileManager.default.removeItem(atPath: listener.pidFile)
            sshdStopped += 1
        }
        for host in hosts { TestHostCluster.stopGateway(root: layout.hostRoot(host.name)) }
        var stopped: [SandboxProcess] = []
        let first = processesByHost(hosts, layout: layout).values.flatMap { $0 }
        for process in first { kill(process.pid, SIGTERM) }
        stopped += first
        TestHostCluster.waitUntilGone(first.map(\.pid))
        let stubborn = processesByHost(hosts, layout: layout).values.flatMap { $0 }
        for process in stubborn { kill(process.pid, SIGKILL) }
        TestHostCluster.waitUntilGone(stubborn.map(\.pid))
        let left = processesByHost(hosts, layout: layout).values.flatMap { $0 }
        guard left.isEmpty else { throw SandboxError.leftRunning(left) }
        if purge {
            do {
                if FileManager.default.fileExists(atPath: layout.directory) { try FileManager.default.removeItem(atPath: layout.directory) }
                try removeKnownHosts(hosts, layout: layout)
            } catch {
                throw SandboxError.io("cannot remove \(layout.directory): \(error)")
            }
        }
        return SandboxStop(sshdStopped: sshdStopped, servicesStopped: stopped, purged: purge)
    }

    // MARK: - Files

    static func prepare(hosts: [SandboxHostSpec], layout: SandboxLayout) throws {
        let files = FileManager.default
        try files.createDirectory(atPath: layout.directory, withIntermediateDirectories: true)
        try files.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        try files.createDirectory(atPath: (layout.identityFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if !files.fileExists(atPath: layout.identityFile) {
            try TestHostCluster.keygen(path: layout.identityFile, comment: "meridian-sandbox-client")
        }
        try files.removeItemIfPresent(layout.authorizedKeysFile)
        try files.copyItem(atPath: layout.identityFile + ".pub", toPath: layout.authorizedKeysFile)
        try enterScriptText.write(toFile: layout.enterScript, atomically: true, encoding: .utf8)
        try files.setAttributes([.posixPermissions: 0o755], ofItemAtPath: layout.enterScript)

        var keyLines: [String] = []
        for host in hosts {
            let folder = layout.hostFolder(host.name)
            for sub in ["/root", "/home"] { try files.createDirectory(atPath: folder + sub, withIntermediateDirectories: true) }
            // The mount point of the host's root: the path must exist on this machine.
            try files.createDirectory(atPath: host.root, withIntermediateDirectories: true)
            let hostKey = folder + "/ssh_host_ed25519_key"
            if !files.fileExists(atPath: hostKey) { try TestHostCluster.keygen(path: hostKey, comment: "\(host.name).sandbox") }
            let keyLine = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            keyLines.append(knownHostsName(host) + " " + keyLine)
            try sshdConfig(host, layout: layout, hostKey: hostKey).write(toFile: folder + "/sshd_config", atomically: true, encoding: .utf8)
        }
        try mergeKnownHosts(keyLines, replacing: Set(hosts.map(knownHostsName)), layout: layout)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(Record(hosts: hosts)).write(to: URL(fileURLWithPath: layout.recordFile))
    }

    struct Record: Codable { var hosts: [SandboxHostSpec] }

    static func recordedHosts(_ layout: SandboxLayout) throws -> [SandboxHostSpec] {
        guard let data = FileManager.default.contents(atPath: layout.recordFile) else {
            throw SandboxError.io("no sandbox was started here (\(layout.recordFile) does not exist): `meridian sandbox up` starts one")
        }
        do {
            return try JSONDecoder().decode(Record.self, from: data).hosts
        } catch {
            throw SandboxError.io("\(layout.recordFile) cannot be read (\(error)): run `meridian sandbox down --purge` and `meridian sandbox up`")
        }
    }

    static func knownHostsName(_ host: SandboxHostSpec) -> String {
        host.port == 22 ? host.address : "[\(host.address)]:\(host.port)"
    }

    /// Replaces the known_hosts lines of the sandbox's hosts, keeping every other line.
    static func mergeKnownHosts(_ lines: [String], replacing names: Set<String>, layout: SandboxLayout) throws {
        let existing = (try? String(contentsOfFile: layout.knownHostsFile, encoding: .utf8)) ?? ""
        let kept = existing.split(separator: "\n").map(String.init).filter { line in
            guard let first = line.split(separator: " ").first else { return false }
            return !names.contains(String(first))
        }
        try FileManager.default.createDirectory(atPath: (layout.knownHostsFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try ((kept + lines).joined(separator: "\n") + "\n").write(toFile: layout.knownHostsFile, atomically: true, encoding: .utf8)
    }

    static func removeKnownHosts(_ hosts: [SandboxHostSpec], layout: SandboxLayout) throws {
        guard FileManager.default.fileExists(atPath: layout.knownHostsFile) else { return }
        try mergeKnownHosts([], replacing: Set(hosts.map(knownHostsName)), layout: layout)
        if (try? String(contentsOfFile: layout.knownHostsFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty == true {
            try FileManager.default.removeItem(atPath: layout.knownHostsFile)
        }
    }

    /// Gives each `env:` secret a random value, keeping values an earlier `up` wrote.
    static func writeSecrets(_ names: [String], layout: SandboxLayout) throws -> [String] {
        var values: [String: String] = [:]
        for line in ((try? String(contentsOfFile: layout.environmentFile, encoding: .utf8)) ?? "").split(separator: "\n") {
            let text = line.hasPrefix("export ") ? line.dropFirst(7) : line[...]
            guard let equals = text.firstIndex(of: "=") else { continue }
            values[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        let sorted = Array(Set(names)).sorted()
        var generator = SystemRandomNumberGenerator()
        var text = "# Secrets the fleet references (env:NAME), for the sandbox only: `. \(layout.environmentFile)` before apply.\n"
        for name in sorted {
            let value = values[name] ?? "sandbox-" + (0..<24).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
            text += "export \(name)=\(value)\n"
        }
        do {
            try text.write(toFile: layout.environmentFile, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: layout.environmentFile)
        } catch {
            throw SandboxError.io("cannot write \(layout.environmentFile): \(error)")
        }
        return sorted
    }

    /// The ForceCommand of every sandbox sshd: the session's command (or the
    /// sftp server) runs in a new mount namespace where `$2` is bound onto `$3`.
    /// Nothing reaches a shell unquoted: the paths and the command are arguments.
    static let enterScriptText = """
        #!/bin/sh
        # meridian sandbox: runs one SSH session of a sandbox host in a private
        # mount namespace where the fleet's root path is the host's own folder.
        # Generated by `meridian sandbox up`; sshd runs it as ForceCommand.
        set -eu
        exec \(unshare) --mount --propagation private /bin/sh -c 'mount --bind "$1" "$2" && exec /bin/sh -c "$3"' enter "$1" "$2" "${SSH_ORIGINAL_COMMAND:-exec /bin/sh -i}"

        """

    static func sshdConfig(_ host: SandboxHostSpec, layout: SandboxLayout, hostKey: String) -> String {
        let folder = layout.hostFolder(host.name)
        let enter = ShellQuoting.commandLine([layout.enterScript, layout.hostRoot(host.name), host.root])
        return """
        # sshd of meridian sandbox host \(host.name) (region \(host.region)); generated by `meridian sandbox up`, loopback only.
        ListenAddress \(host.address)
        Port \(host.port)
        HostKey \(hostKey)
        PidFile \(folder)/sshd.pid
        AuthorizedKeysFile \(layout.authorizedKeysFile)
        \(TestHostCluster.keyOnlyLogin)
        MaxStartups 200
        MaxSessions 200
        AllowTcpForwarding yes
        PrintMotd no
        UseDNS no
        SetEnv HOME=\(folder)/home
        Subsystem sftp \(sftpServer)
        ForceCommand \(enter)
        LogLevel INFO

        """
    }

    // MARK: - Processes

    static func launch(_ host: SandboxHostSpec, layout: SandboxLayout) throws {
        let folder = layout.hostFolder(host.name)
        try? FileManager.default.removeItem(atPath: folder + "/sshd.pid")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: sshd)
        process.arguments = ["-f", folder + "/sshd_config", "-E", folder + "/sshd.log"]
        do {
            try process.run()
        } catch {
            throw SandboxError.io("cannot run \(sshd) for host \(host.name): \(error)")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw SandboxError.didNotStart(host: host.name, address: host.address, port: host.port, log: TestHostCluster.tail(folder + "/sshd.log"))
        }
    }

    /// The host's sshd pid, when its pid file names a live sshd process.
    static func sshdPid(_ layout: SandboxLayout, _ host: SandboxHostSpec) -> Int32? {
        guard let text = try? String(contentsOfFile: layout.hostFolder(host.name) + "/sshd.pid", encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
              commandLine(pid).contains("sshd") else { return nil }
        return pid
    }

    static func commandLine(_ pid: Int32) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
        return String(decoding: data, as: UTF8.self).split(separator: "\0").joined(separator: " ")
    }

    /// Every live process whose mount namespace binds a sandbox host's folder
    /// onto its root: the host's sessions and all they started, whatever
    /// their pid files say. Keyed by host name.
    static func processesByHost(_ hosts: [SandboxHostSpec], layout: SandboxLayout) -> [String: [SandboxProcess]] {
        var marks: [String: (device: String, tail: String, mountPoint: String)] = [:]
        for host in hosts {
            let source = layout.hostRoot(host.name)
            var info = stat()
            guard stat(source, &info) == 0 else { continue }
            let device = UInt64(info.st_dev)
            // glibc's major()/minor() split of a dev_t.
            let major = ((device >> 8) & 0xfff) | ((device >> 32) & 0xffff_f000)
            let minor = (device & 0xff) | ((device >> 12) & 0xffff_ff00)
            // mountinfo names the bind's source relative to its filesystem: compare the part below the sandbox folder.
            marks[host.name] = ("\(major):\(minor)", "/hosts/\(host.name)/root", host.root)
        }
        let sandboxTail = "/" + URL(fileURLWithPath: layout.directory).pathComponents.suffix(2).joined(separator: "/")
        var found: [String: [SandboxProcess]] = [:]
        let me = getpid()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != me, TestHostCluster.isRunning(pid),
                  let text = try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ", maxSplits: 5)
                guard fields.count >= 5 else { continue }
                let device = String(fields[2]), source = String(fields[3]), point = String(fields[4])
                guard let host = marks.first(where: { _, mark in
                    mark.device == device && mark.mountPoint == point && source.hasSuffix(sandboxTail + mark.tail)
                })?.key else { continue }
                found[host, default: []].append(SandboxProcess(pid: pid, command: commandLine(pid)))
                break
            }
        }
        return found.mapValues { $0.sorted { $0.pid < $1.pid } }
    }
}

extension FileManager {
    fileprivate func removeItemIfPresent(_ path: String) throws {
        if fileExists(atPath: path) { try removeItem(atPath: path) }
    }
}
