import Foundation

/// A real PostgreSQL server for tests and benchmarks: Debian's initdb and
/// pg_ctl in a temporary folder, on a loopback address and a port of its own
/// (never the packaged cluster's 5432 or socket folder), run as an
/// unprivileged user since PostgreSQL refuses root. Logins from loopback are
/// trusted; the superuser is `meridian`. Invariant: `stop()` (or releasing
/// the server) stops the server and removes its folder.
public final class TestPostgresServer: @unchecked Sendable {
    public let address: String
    public let port: Int
    public let directory: String
    public let superuser = "meridian"
    /// The operating-system user the server runs as when this process is root.
    public static let serviceUser = "meridian-pg"
    public static let binaries = "/usr/lib/postgresql/15/bin"

    /// Where the server runs when not on this machine's loopback: inside a
    /// test namespace, listening on the namespace's end of every link.
    public let namespace: TestNetworkNamespace?
    private let lock = NSLock()
    private var stopped = false
    private var databaseCounter = 0

    var dataDirectory: String { directory + "/data" }
    var logFile: String { directory + "/server.log" }

    /// One server for the whole test process, started on first use and stopped at exit.
    public static func shared() throws -> TestPostgresServer {
        try sharedLock.withLock {
            if let server = sharedServer { return server }
            let server = try TestPostgresServer(addressOctet: 1)
            sharedServer = server
            atexit { TestPostgresServer.sharedServer?.stop() }
            return server
        }
    }

    nonisolated(unsafe) private static var sharedServer: TestPostgresServer?
    private static let sharedLock = NSLock()

    /// Starts a server at 127.0.77.`addressOctet`+(a number from this process id)
    /// so test processes running side by side do not collide.
    /// With `address`, the server listens there instead; with `directory`, it lives there (kept after `detach()`).
    /// With `namespace`, the server runs inside it, on the namespace's end of each link (`address` is link 0's).
    public init(addressOctet: Int, address fixedAddress: String? = nil, directory fixedDirectory: String? = nil, namespace: TestNetworkNamespace? = nil) throws {
        let spread = Int(getpid() % 50) * 4
        self.namespace = namespace
        address = namespace?.address(0) ?? fixedAddress ?? "127.0.77.\(min(254, addressOctet + spread))"
        guard address.hasPrefix("127.") || namespace != nil else { throw TestHostError("the test PostgreSQL server listens on loopback only, not \(address)") }
        port = 15432 + addressOctet
        directory = fixedDirectory ?? FileManager.default.temporaryDirectory.appendingPathComponent("meridian-pg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            try Self.prepareServiceUser(owning: directory)
            try runAsService(Self.binaries + "/initdb", ["-D", dataDirectory, "-U", superuser, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"])
            if let namespace {
                // Connections from this side of the namespace's links are the test's own.
                let rules = try FileHandle(forWritingTo: URL(fileURLWithPath: dataDirectory + "/pg_hba.conf"))
                try rules.seekToEnd()
                try rules.write(contentsOf: Data("host all all \(namespace.hostNetwork) trust\n".utf8))
                try rules.close()
            }
            try start()
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    deinit { if !isDetached { stop() } }

    private var isDetached: Bool { lock.withLock { detached } }
    private var detached = false

    /// Leaves the server running when this value goes away (for scripts); `stop(directory:)` ends it.
    public func detach() { lock.withLock { detached = true } }

    /// Stops a detached server by its folder and removes the folder.
    public static func stop(directory: String) throws {
        let data = directory + "/data"
        if FileManager.default.fileExists(atPath: data + "/postmaster.pid") {
            try run(binaries + "/pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", "60", "stop"], asService: true)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `postgresql://meridian@ADDRESS:PORT/DATABASE?sslmode=disable`
    public func url(database: String, user: String? = nil) -> String {
        "postgresql://\(user ?? superuser)@\(address):\(port)/\(database)?sslmode=disable"
    }

    /// A new, empty database with a name unique in this server.
    public func createDatabase(prefix: String = "t") throws -> String {
        let name: String = lock.withLock {
            databaseCounter += 1
            return "\(prefix)_\(getpid())_\(databaseCounter)"
        }
        try psql("postgres", "CREATE DATABASE \(name)")
        return name
    }

    /// Runs SQL through psql as the superuser and returns what it printed (unaligned, tuples only).
    @discardableResult
    public func psql(_ database: String, _ sql: String) throws -> String {
        try Self.run("/usr/bin/psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", address, "-p", String(port), "-U", superuser, "-d", database, "-c", sql], asService: false)
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    public func start() throws {
        let listen = namespace.map { namespace in (0..<namespace.links).map(namespace.address).joined(separator: ",") } ?? address
        let options = "-c listen_addresses=\(listen) -p \(port) -k \(directory) -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try Self.run(Self.binaries + "/pg_ctl", ["-D", dataDirectory, "-l", logFile, "-o", options, "-w", "-t", "60", "start"], asService: true, inside: namespace)
        lock.withLock { stopped = false }
    }

    /// Stops the server at once, cutting every connection (`-m immediate` is a crash to PostgreSQL; `fast` a clean stop).
    public func halt(mode: String = "fast") throws {
        try runAsService(Self.binaries + "/pg_ctl", ["-D", dataDirectory, "-m", mode, "-w", "-t", "60", "stop"])
    }

    /// Starts PgBouncer in front of the server on the next port, pooling in
    /// `mode` (`session`, `transaction` or `statement`), and returns its port
    /// (the server's port + 1000, 1001 or 1002).
    /// It stops with the server.
    public func startPgBouncer(mode: String) throws -> Int {
        let bouncerPort = port + 1000 + (["transaction", "session", "statement"].firstIndex(of: mode) ?? 3)
        let folder = directory + "/pgbouncer-\(mode)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let config = """
            [databases]
            * = host=\(address) port=\(port) user=\(superuser)
            [pgbouncer]
            listen_addr = \(address)
            listen_port = \(bouncerPort)
            auth_type = any
            pool_mode = \(mode)
            default_pool_size = 4
            unix_socket_dir =
            logfile = \(folder)/pgbouncer.log
            pidfile = \(folder)/pgbouncer.pid
            ignore_startup_parameters = extra_float_digits,application_name

            """
        try config.write(toFile: folder + "/pgbouncer.ini", atomically: true, encoding: .utf8)
        try Self.prepareServiceUser(owning: folder)
        try runAsService("/usr/sbin/pgbouncer", ["-d", folder + "/pgbouncer.ini"])
        for _ in 0..<500 {
            if TestHostCluster.accepts(address: address, port: bouncerPort),
               let text = try? String(contentsOfFile: folder + "/pgbouncer.pid", encoding: .utf8),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 {
                lock.withLock { bouncers.append(pid) }
                return bouncerPort
            }
            usleep(10_000)
        }
        throw TestHostError("pgbouncer did not start accepting on \(address):\(bouncerPort): \((try? String(contentsOfFile: folder + "/pgbouncer.log", encoding: .utf8)) ?? "")")
    }

    private var bouncers: [pid_t] = []

    func stopPgBouncers() {
        for pid in lock.withLock({ bouncers }) { kill(pid, SIGKILL) }
    }

    /// Stops the server and removes its folder.
    public func stop() {
        let already = lock.withLock { () -> Bool in
            defer { stopped = true }
            return stopped
        }
        if !already {
            stopPgBouncers()
            try? halt(mode: "immediate")
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The tail of the server's log, for messages.
    public var logTail: String {
        ((try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "").split(separator: "\n").suffix(15).joined(separator: "\n")
    }

    // MARK: - Running as the service user

    static func prepareServiceUser(owning folder: String) throws {
        guard geteuid() == 0 else { return }
        if getpwnam(serviceUser) == nil {
            try run("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", serviceUser], asService: false)
        }
        try run("/bin/chown", ["-R", "\(serviceUser):", folder], asService: false)
    }

    func runAsService(_ tool: String, _ arguments: [String]) throws {
        try Self.run(tool, arguments, asService: true)
    }

    /// Runs a tool to completion (as the service user when this process is root); throws with its output when it fails.
    /// posix_spawn and waitpid rather than Foundation's Process: its exit
    /// monitoring can stall while test threads are busy, and a pipe would stay
    /// open in the server that pg_ctl starts, so output goes to a file.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], asService: Bool, inside namespace: TestNetworkNamespace? = nil) throws -> String {
        let local = asService && geteuid() == 0 ? ["/usr/sbin/runuser", "-u", serviceUser, "--", tool] + arguments : [tool] + arguments
        let argv = namespace?.command(local) ?? local
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-pg-run-\(UUID().uuidString.prefix(8)).out").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var environment = ProcessInfo.processInfo.environment
        environment["LC_ALL"] = "C.UTF-8"
        environment.removeValue(forKey: "PGPASSWORD")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of this process may live on in a daemon it starts (pgbouncer -d,
        // the server): an inherited client socket would keep a closed connection's session open.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(name), fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
        }
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, cEnvironment)
        guard spawned == 0 else { throw TestHostError("cannot start \(argv[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let exited = (status & 0x7f) == 0
        let code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            throw TestHostError("\(tool) \(arguments.joined(separator: " ")) exited with \(exited ? code : -1): \(text)")
        }
        return text
    }
}
