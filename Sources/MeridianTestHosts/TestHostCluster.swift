import Foundation

/// One sshd test host on a loopback address.
/// Invariant: every path is inside its cluster's directory.
public struct TestHost: Sendable, Hashable, Codable {
    public var name: String
    public var address: String
    public var port: Int
    /// This host's folder: config, keys, pid file, log, home and root.
    public var directory: String
    /// The folder meridian may own on this host (its `root`).
    public var root: String
    /// `SetEnv HOME=` of this host's sshd, so commands skip the real home's shell startup files.
    public var home: String
    public var configFile: String
    public var logFile: String
    public var pidFile: String
    /// `ssh-ed25519 AAAA…`: the host's public key, as pinned in a region file.
    public var hostKeyLine: String
}

/// A failure to set up or control test hosts.
public struct TestHostError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// N real sshd processes, each on its own loopback address with its own host
/// key, root folder, home and log, all accepting one generated user key.
/// Invariant: every process it started is stopped by `stopAll()` or when the
/// cluster is released (unless `detach()` handed them to the caller), and
/// nothing listens outside 127.0.0.0/8.
public final class TestHostCluster: @unchecked Sendable {
    public let directory: String
    /// The private key every host accepts (no passphrase).
    public let identityFile: String
    /// A known_hosts file listing every host's key, by address.
    public let knownHostsFile: String
    public let user: String
    public let hosts: [TestHost]

    /// The `defaults.ssh` block of a meridian.yaml that reaches these hosts
    /// (every line indented by `indent` spaces, the first being `ssh:`).
    public func sshDefaultsYAML(indent: Int = 2, connectTimeout: String = "3s") -> String {
        let margin = String(repeating: " ", count: indent)
        return ["ssh:", "  user: \(user)", "  port: \(hosts[0].port)", "  identity: \(identityFile)", "  agent: false",
                "  known_hosts: \(knownHostsFile)", "  connect_timeout: \(connectTimeout)", "  command_timeout: 30s"]
            .map { margin + $0 + "\n" }.joined()
    }

    private let lock = NSLock()
    private var detached = false
    private let removesDirectory: Bool

    /// Creates and starts `count` hosts at `addressPrefix.firstOctet`,
    /// `addressPrefix.(firstOctet+1)`, … (e.g. 127.0.10.1…). Give each test
    /// suite its own prefix so suites running in parallel never collide.
    /// Without `directory`, a temporary folder is used and removed at the end.
    /// `extraListenAddresses` (e.g. `[::1]:24022`) are added to every host's
    /// sshd, for tests of IPv6 and of names; only sensible with one host.
    /// `extraPorts` makes every host's sshd listen on those ports of its own
    /// address as well (each pair in known_hosts), so N processes can stand
    /// in for N × (1 + extraPorts.count) hosts in scale benchmarks.
    /// `logLevel` is sshd's LogLevel: DEBUG makes each host's log show the
    /// global requests (keepalives) it receives.
    public init(count: Int, addressPrefix: String = "127.0.10", firstOctet: Int = 1, port: Int = 22, directory: String? = nil,
                extraListenAddresses: [String] = [], extraPorts: [Int] = [], logLevel: String = "INFO") throws {
        guard addressPrefix.hasPrefix("127."), addressPrefix.split(separator: ".").count == 3 else {
            throw TestHostError("address prefix \(addressPrefix) must be three loopback octets such as 127.0.10")
        }
        guard count >= 1, firstOctet >= 1, firstOctet + count - 1 <= 254 else {
            throw TestHostError("\(count) hosts from .\(firstOctet) do not fit in \(addressPrefix).1–254")
        }
        let base: String
        if let directory {
            base = URL(fileURLWithPath: directory).standardizedFileURL.path
            removesDirectory = false
        } else {
            base = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-testhosts-\(UUID().uuidString.prefix(8))").path
            removesDirectory = true
        }
        self.directory = base
        let files = FileManager.default
        try files.createDirectory(atPath: base, withIntermediateDirectories: true)
        try files.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)

        identityFile = base + "/id_ed25519"
        knownHostsFile = base + "/known_hosts"
        user = ProcessInfo.processInfo.environment["USER"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.currentUserName()
        if !files.fileExists(atPath: identityFile) {
            try Self.keygen(path: identityFile, comment: "meridian-test-user")
        }
        let authorizedKeys = base + "/authorized_keys"
        try files.copyItem(atPath: identityFile + ".pub", toPath: authorizedKeys, replacingIfNeeded: true)

        var made: [TestHost] = []
        for index in 0..<count {
            let address = "\(addressPrefix).\(firstOctet + index)"
            let name = "host\(index + 1)"
            let folder = "\(base)/hosts/\(name)"
            try files.createDirectory(atPath: folder + "/root", withIntermediateDirectories: true)
            try files.createDirectory(atPath: folder + "/home", withIntermediateDirectories: true)
            let hostKey = folder + "/ssh_host_ed25519_key"
            if !files.fileExists(atPath: hostKey) { try Self.keygen(path: hostKey, comment: name) }
            let keyLine = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8)
                .split(separator: " ").prefix(2).joined(separator: " ")
            let host = TestHost(
                name: name, address: address, port: port, directory: folder, root: folder + "/root", home: folder + "/home",
                configFile: folder + "/sshd_config", logFile: folder + "/sshd.log", pidFile: folder + "/sshd.pid", hostKeyLine: keyLine)
            try Self.config(host: host, hostKey: hostKey, authorizedKeys: authorizedKeys, extraListenAddresses: extraListenAddresses,
                            extraPorts: extraPorts, logLevel: logLevel)
                .write(toFile: host.configFile, atomically: true, encoding: .utf8)
            made.append(host)
        }
        hosts = made
        var knownHostLines: [String] = []
        for host in made {
            for port in [host.port] + extraPorts {
                let name = port == 22 ? host.address : "[\(host.address)]:\(port)"
                knownHostLines.append(name + " " + host.hostKeyLine)
            }
        }
        let knownHosts = knownHostLines.joined(separator: "\n") + "\n"
        try knownHosts.write(toFile: knownHostsFile, atomically: true, encoding: .utf8)
        try Self.describe(self).write(toFile: base + "/cluster.json", atomically: true, encoding: .utf8)

        do {
            for host in made { try launch(host) }
            for host in made { try waitUntilAccepting(host) }
        } catch {
            stopAll()
            throw error
        }
    }

    deinit {
        if !detached {
            stopAll()
            if removesDirectory { try? FileManager.default.removeItem(atPath: directory) }
        }
    }

    /// Leaves the processes running when this object goes away (for by-hand use);
    /// `TestHostCluster.stopAll(inDirectory:)` stops them later.
    public func detach() {
        lock.lock()
        detached = true
        lock.unlock()
    }

    public func host(named name: String) -> TestHost? { hosts.first { $0.name == name } }

    // MARK: - Faults

    /// SIGKILLs the host's sshd and every session process under it: new
    /// connections are refused and open ones drop.
    public func kill(_ host: TestHost) {
        let tree = Self.processTree(of: host)
        for pid in tree { Foundation.kill(pid, SIGKILL) }
        // kill(2) returns before the process is gone; until it is, its
        // listening socket still accepts into the backlog, and a test would
        // see a handshake failure instead of a refused connection.
        Self.waitUntilGone(tree)
        try? FileManager.default.removeItem(atPath: host.pidFile)
    }

    /// Waits (bounded, about 5 s) until every pid has exited (gone or a zombie).
    static func waitUntilGone(_ pids: [pid_t]) {
        for _ in 0..<500 {
            if !pids.contains(where: isRunning) { return }
            usleep(10_000)
        }
    }

    /// Whether `pid` is alive and not a zombie (a killed process its parent has not reaped yet runs no more).
    public static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        // The state follows the parenthesised command name.
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }

    /// SIGSTOPs the host's sshd and its sessions: TCP still connects (the
    /// kernel accepts into the backlog) but nothing answers.
    public func pause(_ host: TestHost) {
        for pid in Self.processTree(of: host) { Foundation.kill(pid, SIGSTOP) }
    }

    public func resume(_ host: TestHost) {
        for pid in Self.processTree(of: host) { Foundation.kill(pid, SIGCONT) }
    }

    /// Starts a killed host again with the same key and folders.
    public func restart(_ host: TestHost) throws {
        kill(host)
        try launch(host)
        try waitUntilAccepting(host)
    }

    /// Kills the session processes serving open connections but leaves the
    /// listener: open connections drop, new ones succeed.
    public func dropConnections(_ host: TestHost) {
        guard let listener = Self.pid(of: host) else { return }
        for pid in Self.processTree(of: host) where pid != listener { Foundation.kill(pid, SIGKILL) }
    }

    public func stopAll() {
        for host in hosts {
            kill(host)
            Self.stopGateway(root: host.root)
        }
    }

    /// Stops the nginx that gateway steps started under `root` (its master's
    /// pid file is `<root>/router/run/nginx.pid`): TERM, then KILL to its
    /// process group (the master leads it) when it has not gone within about 5 s.
    public static func stopGateway(root: String) {
        let pidFile = root + "/router/run/nginx.pid"
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
              let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
              command.hasPrefix("nginx: master") else { return }
        let group = getpgid(pid)
        let workers = ((try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? "")
            .split(separator: " ").compactMap { pid_t($0) }
        Foundation.kill(pid, SIGTERM)
        waitUntilGone([pid] + workers)
        if group == pid { Foundation.kill(-group, SIGKILL) }
        for worker in workers { Foundation.kill(worker, SIGKILL) }
        waitUntilGone([pid] + workers)
        try? FileManager.default.removeItem(atPath: pidFile)
    }

    /// Stops every host recorded in a cluster directory made by an earlier
    /// (detached) cluster, e.g. by `meridian-testhosts up`.
    public static func stopAll(inDirectory directory: String) throws -> Int {
        let hostsFolder = directory + "/hosts"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: hostsFolder)) ?? []
        var stopped = 0
        for name in names {
            let host = TestHost(name: name, address: "", port: 0, directory: "\(hostsFolder)/\(name)", root: "", home: "",
                                configFile: "", logFile: "", pidFile: "\(hostsFolder)/\(name)/sshd.pid", hostKeyLine: "")
            let tree = processTree(of: host)
            if !tree.isEmpty { stopped += 1 }
            for pid in tree { Foundation.kill(pid, SIGKILL) }
            waitUntilGone(tree)
            try? FileManager.default.removeItem(atPath: host.pidFile)
            stopGateway(root: "\(hostsFolder)/\(name)/root")
        }
        return stopped
    }

    /// The hosts recorded in a cluster directory's `cluster.json`.
    public static func hosts(inDirectory directory: String) throws -> [TestHost] {
        struct Recorded: Codable { var hosts: [TestHost] }
        let path = directory + "/cluster.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TestHostError("\(path) not found: no test hosts were started with --dir \(directory)")
        }
        return try JSONDecoder().decode(Recorded.self, from: data).hosts
    }

    /// Sends `signal` to a recorded host's sshd and its session processes
    /// (SIGKILL, SIGSTOP, SIGCONT); returns how many processes got it.
    @discardableResult
    public static func send(_ signal: Int32, to host: TestHost) -> Int {
        let tree = processTree(of: host)
        for pid in tree { Foundation.kill(pid, signal) }
        return tree.count
    }

    // MARK: - Processes

    private func launch(_ host: TestHost) throws {
        try? FileManager.default.removeItem(atPath: host.pidFile)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/sshd")
        process.arguments = ["-f", host.configFile, "-E", host.logFile]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestHostError("sshd for \(host.name) at \(host.address):\(host.port) exited with \(process.terminationStatus); log: \(Self.tail(host.logFile))")
        }
    }

    /// Waits (bounded, about 10 s) until the pid file exists and the port accepts.
    private func waitUntilAccepting(_ host: TestHost) throws {
        for _ in 0..<1000 {
            if Self.pid(of: host) != nil, Self.accepts(address: host.address, port: host.port) { return }
            usleep(10_000)
        }
        let log = Self.tail(host.logFile)
        let hint = log.contains("Address already in use")
            ? " (another process holds the address: perhaps a test host left by a run that crashed; `meridian-testhosts down --dir DIR` stops those of a kept directory)"
            : ""
        throw TestHostError("sshd for \(host.name) at \(host.address):\(host.port) did not start accepting; log: \(log)\(hint)")
    }

    static func pid(of host: TestHost) -> pid_t? {
        guard let text = try? String(contentsOfFile: host.pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
              Foundation.kill(pid, 0) == 0 else { return nil }
        return pid
    }

    /// The listener and all its descendants, read from /proc.
    static func processTree(of host: TestHost) -> [pid_t] {
        guard let root = pid(of: host) else { return [] }
        var result: [pid_t] = []
        var pending = [root]
        while let pid = pending.popLast(), result.count < 10_000 {
            result.append(pid)
            let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
            pending.append(contentsOf: children.split(separator: " ").compactMap { pid_t($0) })
        }
        return result
    }

    /// Whether something accepts TCP connections at `address` (IPv4, or IPv6 when it holds a colon) and `port`.
    public static func accepts(address: String, port: Int) -> Bool {
        let family = address.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        func connectTo<Address>(_ socketAddress: inout Address) -> Bool {
            withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<Address>.size)) == 0 }
            }
        }
        if family == AF_INET6 {
            var socketAddress = sockaddr_in6()
            socketAddress.sin6_family = sa_family_t(AF_INET6)
            socketAddress.sin6_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET6, address, &socketAddress.sin6_addr) == 1 else { return false }
            return connectTo(&socketAddress)
        }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, address, &socketAddress.sin_addr) == 1 else { return false }
        return connectTo(&socketAddress)
    }

    static func keygen(path: String, comment: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        process.arguments = ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestHostError("ssh-keygen failed for \(path)") }
    }

    static func config(host: TestHost, hostKey: String, authorizedKeys: String, extraListenAddresses: [String], extraPorts: [Int] = [], logLevel: String = "INFO") -> String {
        """
        # sshd for meridian test host \(host.name); generated, loopback only.
        ListenAddress \(host.address)
        \(extraListenAddresses.map { "ListenAddress \($0)" }.joined(separator: "\n"))
        \(([host.port] + extraPorts).map { "Port \($0)" }.joined(separator: "\n"))
        HostKey \(hostKey)
        PidFile \(host.pidFile)
        AuthorizedKeysFile \(authorizedKeys)
        \(keyOnlyLogin)
        MaxStartups 1000
        MaxSessions 1000
        AllowTcpForwarding yes
        PrintMotd no
        UseDNS no
        SetEnv HOME=\(host.home)
        Subsystem sftp internal-sftp
        LogLevel \(logLevel)

        """
    }

    /// Public-key logins only, root included, with keys in a scratch folder (no PAM, no mode checks).
    static let keyOnlyLogin = """
        PermitRootLogin prohibit-password
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        StrictModes no
        """

    static func tail(_ path: String) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no log)"
        return text.split(separator: "\n").suffix(5).joined(separator: " | ")
    }

    static func currentUserName() -> String {
        guard let entry = getpwuid(getuid()) else { return "root" }
        return String(cString: entry.pointee.pw_name)
    }

    static func describe(_ cluster: TestHostCluster) throws -> String {
        struct Description: Codable {
            var identityFile: String
            var knownHostsFile: String
            var user: String
            var hosts: [TestHost]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(Description(identityFile: cluster.identityFile, knownHostsFile: cluster.knownHostsFile, user: cluster.user, hosts: cluster.hosts))
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

extension FileManager {
    fileprivate func copyItem(atPath source: String, toPath destination: String, replacingIfNeeded: Bool) throws {
        if replacingIfNeeded, fileExists(atPath: destination) { try removeItem(atPath: destination) }
        try copyItem(atPath: source, toPath: destination)
    }
}

extension TestHostCluster {
    /// SIGKILLs every slot process whose pid file is under a host's `root/run/`,
    /// for a test's clean-up: slot processes are detached and outlive the sshd that started them.
    public func stopSlotProcesses() {
        for host in hosts {
            let run = host.root + "/run"
            for name in (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? [] where name.hasSuffix(".pid") {
                if let text = try? String(contentsOfFile: run + "/" + name, encoding: .utf8),
                   let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 {
                    Foundation.kill(-pid, SIGKILL)
                    Foundation.kill(pid, SIGKILL)
                }
            }
        }
    }
}
