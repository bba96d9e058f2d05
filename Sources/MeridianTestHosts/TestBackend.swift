import Foundation

/// A small HTTP/1.1 backend for gateway tests: a python3 process listening on
/// one loopback address and port, keeping connections alive, answering every
/// GET with 200 and the headers `X-Meridian-Slot` and `X-Meridian-Host` (and
/// the same words in its body), so a test sees which slot of which host served;
/// a POST is read whole and answered the same way.
/// Invariant: it listens only on the loopback address it was given and its
/// process is gone after `stop()` or when the value is released.
public final class TestBackend: @unchecked Sendable {
    public let address: String
    public let port: Int
    public let slot: String
    public let host: String
    private let process: SpawnedProcess

    static let program = """
    import http.server, socket, sys
    address, port, slot, host = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def setup(self):
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's
            # algorithm and the peer's delayed ACK hold the body about 40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        def do_GET(self):
            body = ("%s %s %s\\n" % (host, slot, self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Meridian-Slot", slot)
            self.send_header("X-Meridian-Host", host)
            self.end_headers()
            self.wfile.write(body)
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()
        def log_message(self, *args):
            pass
    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128
    Server((address, port), Handler).serve_forever()
    """

    /// Starts the backend and waits (bounded, about 10 s) until it accepts.
    public init(address: String, port: Int, slot: String, host: String) throws {
        guard address.hasPrefix("127.") else { throw TestHostError("test backends listen on loopback only, not \(address)") }
        self.address = address
        self.port = port
        self.slot = slot
        self.host = host
        let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
        process = try SpawnedProcess([python, "-c", Self.program, address, String(port), slot, host])
        for _ in 0..<1000 {
            if TestHostCluster.accepts(address: address, port: port) { return }
            guard process.isRunning else { break }
            usleep(10_000)
        }
        stop()
        throw TestHostError("the test backend on \(address):\(port) did not start accepting (is python3 installed?)")
    }

    deinit { stop() }

    public func stop() { process.stop() }
}

/// A child process for tests, started with posix_spawn with every signal
/// unblocked and at its default (a test process's threads block some, and
/// blocked signals are inherited), and stopped by TERM, then KILL, waited for
/// with a bounded poll: safe to use from async code, unlike Foundation's
/// `Process.waitUntilExit`.
public final class SpawnedProcess: @unchecked Sendable {
    public let pid: pid_t
    private let lock = NSLock()
    private var reaped = false

    /// `argv[0]` is a path, or a name looked up in PATH.
    public init(_ argv: [String]) throws {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = argv.map { strdup($0) } + [nil]
        defer { for argument in arguments { free(argument) } }
        var child: pid_t = 0
        let status = posix_spawnp(&child, argv[0], &actions, &attributes, arguments, environ)
        guard status == 0 else { throw TestHostError("cannot start \(argv[0]): \(String(cString: strerror(status)))") }
        pid = child
    }

    deinit { stop() }

    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return reapIfExited() == false
    }

    /// TERM, up to about 5 s for it to exit, then KILL; reaps the child.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard reapIfExited() == false else { return }
        kill(pid, SIGTERM)
        for _ in 0..<500 {
            if reapIfExited() { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        reaped = true
    }

    /// Whether the child has exited (and is now reaped); call holding `lock`.
    private func reapIfExited() -> Bool {
        if reaped { return true }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid || result < 0 { reaped = true }
        return reaped
    }
}
