import CLibSSH2
import Dispatch
import Foundation

/// One authenticated SSH connection to one host, owning a libssh2 session and
/// its socket. Invariant: every libssh2 call on this session runs on its own
/// serial dispatch queue (never on Swift's cooperative pool), in non-blocking
/// mode with a deadline, so no call can hang longer than its timeout; once the
/// connection breaks or is closed, every later call fails with an `SSHError`.
public final class SSHSession: @unchecked Sendable {
    public let endpoint: SSHEndpoint
    /// The key the host presented, accepted by the host-key policy.
    public private(set) var hostKey: PublicHostKey?

    private let queue: DispatchQueue
    // Confined to `queue`:
    private var session: OpaquePointer?
    private var socketFD: Int32 = -1
    var sftpHandle: OpaquePointer?
    private var brokenReason: String?
    private var keepaliveTimer: DispatchSourceTimer?
    /// Channels given up after a timeout whose close the server has not confirmed yet.
    var lingeringChannels: [OpaquePointer] = []
    /// The cancellation of the task whose call runs on the queue now.
    private var currentCall: CallCancellation?

    private init(endpoint: SSHEndpoint) {
        self.endpoint = endpoint
        queue = DispatchQueue(label: "meridian.ssh.\(endpoint.region).\(endpoint.hostName)")
    }

    deinit {
        keepaliveTimer?.cancel()
        if let sftpHandle { libssh2_sftp_shutdown(sftpHandle) }
        if let session { libssh2_session_free(session) }
        if socketFD >= 0 { Glibc.close(socketFD) }
    }

    var place: SSHPlace { endpoint.place }

    /// Connects, verifies the host key against the endpoint's policy and
    /// authenticates, all within `endpoint.connectTimeout`.
    public static func open(_ endpoint: SSHEndpoint) async throws -> SSHSession {
        LibSSH2.ensureInitialized()
        let session = SSHSession(endpoint: endpoint)
        let start = ContinuousClock.now
        do {
            try await session.onQueue { try session.establish(verifyAndAuthenticate: true) }
        } catch {
            var metadata = SSHLog.place(endpoint)
            metadata["ms"] = SSHLog.milliseconds(since: start)
            metadata["error"] = .string("\(error)")
            SSHLog.logger.debug("ssh connection failed", metadata: metadata)
            throw error
        }
        var metadata = SSHLog.place(endpoint)
        metadata["handshake_ms"] = SSHLog.milliseconds(since: start)
        metadata["user"] = .string(endpoint.user)
        SSHLog.logger.debug("ssh connected", metadata: metadata)
        return session
    }

    /// Connects and completes the key exchange only, returning the host's key
    /// without checking it against any policy and without authenticating:
    /// what `meridian trust` shows before it records a key.
    public static func scanHostKey(_ endpoint: SSHEndpoint) async throws -> PublicHostKey {
        LibSSH2.ensureInitialized()
        let session = SSHSession(endpoint: endpoint)
        try await session.onQueue { try session.establish(verifyAndAuthenticate: false) }
        let key = session.hostKey
        await session.close()
        guard let key else { throw SSHError(.handshakeFailed(reason: "the server sent no host key"), at: endpoint.place) }
        return key
    }

    /// Says goodbye to the server (briefly bounded) and frees the session.
    /// Closing twice is harmless.
    public func close() async {
        _ = try? await onQueue { self.teardown(graceful: true) }
        SSHLog.logger.trace("ssh closed", metadata: SSHLog.place(endpoint))
    }

    // MARK: - Queue and waiting

    /// Runs `body` on the session's queue. When the calling task is
    /// cancelled (SIGTERM, a drift job stopping), the waits inside `body`
    /// notice within `cancellationSlice` and throw `CancellationError`: a
    /// stopping command never waits out a connect or command timeout.
    func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let call = CallCancellation()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                queue.async {
                    self.currentCall = call
                    defer { self.currentCall = nil }
                    continuation.resume(with: Result { try body() })
                }
            }
        } onCancel: {
            call.cancel()
        }
    }

    struct TimedOut: Error {}

    /// How long a wait runs before it looks at its task's cancellation again.
    static let cancellationSlice = 100

    /// Throws `CancellationError` when the task of the call running now was
    /// cancelled; the session is then broken (libssh2 may be mid-exchange).
    func checkCancelled() throws {
        guard currentCall?.isCancelled == true else { return }
        markBroken("its command was cancelled")
        throw CancellationError()
    }

    /// Blocks this session's queue until the socket is ready in the direction
    /// libssh2 is waiting for, or throws `TimedOut` at `deadline`. Sends due
    /// keepalives meanwhile, so long commands keep the connection alive.
    func waitSocket(until deadline: ContinuousClock.Instant) throws {
        try checkCancelled()
        let now = ContinuousClock.now
        guard now < deadline else { throw TimedOut() }
        var waitMillis = min(Self.millis(deadline - now), Self.cancellationSlice)
        if let session, endpoint.keepaliveInterval != nil {
            var next: Int32 = 0
            if libssh2_keepalive_send(session, &next) == 0, next > 0 {
                waitMillis = min(waitMillis, Int(next) * 1000)
            }
        }
        let directions = session.map { libssh2_session_block_directions($0) } ?? LibSSH2.blockInbound
        var events: Int16 = 0
        if directions & LibSSH2.blockInbound != 0 { events |= Int16(POLLIN) }
        if directions & LibSSH2.blockOutbound != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        var descriptor = pollfd(fd: socketFD, events: events, revents: 0)
        _ = poll(&descriptor, 1, Int32(clamping: max(1, waitMillis)))
    }

    static func millis(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Repeats a non-blocking libssh2 call until it stops answering EAGAIN.
    func retry(until deadline: ContinuousClock.Instant, _ call: () -> Int32) throws -> Int32 {
        while true {
            let code = call()
            if code != LibSSH2.eagain { return code }
            try waitSocket(until: deadline)
        }
    }

    /// Repeats a non-blocking libssh2 call that returns a pointer, until it
    /// returns one or fails with something other than EAGAIN (returned as code).
    func retryPointer(until deadline: ContinuousClock.Instant, _ call: () -> OpaquePointer?) throws -> Result<OpaquePointer, LibSSH2Failure> {
        while true {
            if let pointer = call() { return .success(pointer) }
            let code = session.map { libssh2_session_last_errno($0) } ?? -1
            if code != LibSSH2.eagain { return .failure(LibSSH2Failure(code: code, message: lastErrorMessage())) }
            try waitSocket(until: deadline)
        }
    }

    struct LibSSH2Failure: Error {
        var code: Int32
        var message: String
    }

    func lastErrorMessage() -> String {
        guard let session else { return "" }
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        _ = libssh2_session_last_error(session, &message, &length, 0)
        guard let message, length > 0 else { return "" }
        return String(cString: message)
    }

    /// The error for a failed libssh2 call: a broken socket is a dropped
    /// connection (and marks the session unusable), anything else keeps its code.
    func failure(_ operation: String, code: Int32, message: String? = nil) -> SSHError {
        let text = message ?? lastErrorMessage()
        if LibSSH2.isSocketFailure(code) {
            let reason = "\(LibSSH2.codeName(code))\(text.isEmpty ? "" : ": \(text)")"
            brokenReason = reason
            return SSHError(.connectionDropped(during: operation, reason: reason), at: place)
        }
        return SSHError(.library(operation: operation, code: code, codeName: LibSSH2.codeName(code), message: text), at: place)
    }

    /// Throws when the session cannot carry another request.
    func requireUsable() throws -> OpaquePointer {
        if let brokenReason {
            throw SSHError(.connectionDropped(during: "an earlier request", reason: brokenReason), at: place)
        }
        guard let session else { throw SSHError(.sessionClosed, at: place) }
        return session
    }

    func markBroken(_ reason: String) { brokenReason = reason }

    /// Whether the session can still carry a request, as far as can be told
    /// without a round trip: not broken or closed, and its socket shows no
    /// hang-up, error or end of stream (a server that went away).
    public func looksAlive() async -> Bool {
        (try? await onQueue { () -> Bool in
            guard self.brokenReason == nil, self.session != nil, self.socketFD >= 0 else { return false }
            var probe = pollfd(fd: self.socketFD, events: Int16(POLLIN), revents: 0)
            guard poll(&probe, 1, 0) >= 0 else { return false }
            if probe.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 { return false }
            guard probe.revents & Int16(POLLIN) != 0 else { return true }
            var byte: UInt8 = 0
            return recv(self.socketFD, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) != 0
        }) ?? false
    }

    // MARK: - Establishing

    private func establish(verifyAndAuthenticate: Bool) throws {
        let deadline = ContinuousClock.now + endpoint.connectTimeout
        let timeoutSeconds = Self.seconds(endpoint.connectTimeout)
        socketFD = try connectSocket(deadline: deadline)

        guard let session = libssh2_session_init_ex(nil, nil, nil, nil) else {
            throw SSHError(.library(operation: "libssh2_session_init", code: -6, codeName: LibSSH2.codeName(-6), message: "out of memory"), at: place)
        }
        self.session = session
        libssh2_session_set_blocking(session, 0)
        // curve25519 first: the cheapest key exchange both sides have; ed25519
        // host keys first: the cheapest signature to verify.
        _ = libssh2_session_method_pref(session, 0, "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512")
        _ = libssh2_session_method_pref(session, 1, "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa")

        let handshake: Int32
        do {
            handshake = try retry(until: deadline) { libssh2_session_handshake(session, socketFD) }
        } catch is TimedOut {
            throw SSHError(.connectTimeout(seconds: timeoutSeconds, stage: "SSH handshake"), at: place)
        }
        guard handshake == 0 else {
            let text = lastErrorMessage()
            throw SSHError(.handshakeFailed(reason: "\(LibSSH2.codeName(handshake))\(text.isEmpty ? "" : ": \(text)")"), at: place)
        }

        var keyLength = 0
        var keyType: Int32 = 0
        guard let rawKey = libssh2_session_hostkey(session, &keyLength, &keyType), keyLength > 0 else {
            throw SSHError(.handshakeFailed(reason: "the server sent no host key"), at: place)
        }
        let key = PublicHostKey(blob: rawKey.withMemoryRebound(to: UInt8.self, capacity: keyLength) { Array(UnsafeBufferPointer(start: $0, count: keyLength)) })
        hostKey = key
        guard verifyAndAuthenticate else { return }

        try HostKeyVerifier(endpoint: endpoint).verify(key, hostKeyType: keyType, rawKey: rawKey, length: keyLength)
        do {
            try authenticate(session: session, deadline: deadline)
        } catch is TimedOut {
            throw SSHError(.connectTimeout(seconds: timeoutSeconds, stage: "authentication"), at: place)
        }
        if let interval = endpoint.keepaliveInterval {
            startKeepalives(session: session, interval: interval)
        }
    }

    /// A non-blocking TCP connect to each resolved address in turn.
    private func connectSocket(deadline: ContinuousClock.Instant) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(endpoint.address, String(endpoint.port), &hints, &list)
        guard resolved == 0, let first = list else {
            throw SSHError(.unreachable(reason: "cannot resolve \(endpoint.address): \(String(cString: gai_strerror(resolved)))"), at: place)
        }
        defer { freeaddrinfo(list) }
        var reasons: [String] = []
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard fd >= 0 else { reasons.append(String(cString: strerror(errno))); continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var noDelay: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return fd }
            guard errno == EINPROGRESS else {
                reasons.append(String(cString: strerror(errno)))
                Glibc.close(fd)
                continue
            }
            var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var ready: Int32 = 0
            while ready == 0 {
                do { try checkCancelled() } catch { Glibc.close(fd); throw error }
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else { break }
                ready = poll(&descriptor, 1, Int32(clamping: max(1, min(Self.millis(remaining), Self.cancellationSlice))))
                if ready < 0 && errno == EINTR { ready = 0 }
            }
            if ready <= 0 {
                Glibc.close(fd)
                throw SSHError(.connectTimeout(seconds: Self.seconds(endpoint.connectTimeout), stage: "TCP connect"), at: place)
            }
            var socketError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &length)
            if socketError == 0 { return fd }
            reasons.append(String(cString: strerror(socketError)))
            Glibc.close(fd)
        }
        throw SSHError(.unreachable(reason: reasons.isEmpty ? "no address" : reasons.joined(separator: "; ")), at: place)
    }

    private func authenticate(session: OpaquePointer, deadline: ContinuousClock.Instant) throws {
        let user = endpoint.user
        var tried: [String] = []
        let passphrase = endpoint.passphraseVariable.flatMap { ProcessInfo.processInfo.environment[$0] }
        for privateKey in endpoint.identityFiles {
            guard FileManager.default.isReadableFile(atPath: privateKey) else {
                tried.append("\(privateKey) (not readable)")
                continue
            }
            let publicKey = privateKey + ".pub"
            let hasPublic = FileManager.default.fileExists(atPath: publicKey)
            let code = try retry(until: deadline) {
                libssh2_userauth_publickey_fromfile_ex(
                    session, user, UInt32(user.utf8.count), hasPublic ? publicKey : nil, privateKey, passphrase)
            }
            if code == 0 { return }
            if LibSSH2.isSocketFailure(code) { throw failure("authentication", code: code) }
            tried.append("\(privateKey) (\(LibSSH2.codeName(code)))")
        }
        if endpoint.useAgent {
            if try authenticateWithAgent(session: session, deadline: deadline, tried: &tried) { return }
        }
        throw SSHError(.authRefused(user: user, tried: tried), at: place)
    }

    private func authenticateWithAgent(session: OpaquePointer, deadline: ContinuousClock.Instant, tried: inout [String]) throws -> Bool {
        guard let agent = libssh2_agent_init(session) else {
            tried.append("ssh-agent (cannot initialise)")
            return false
        }
        defer {
            _ = libssh2_agent_disconnect(agent)
            libssh2_agent_free(agent)
        }
        if let socketPath = endpoint.agentSocket { libssh2_agent_set_identity_path(agent, socketPath) }
        guard libssh2_agent_connect(agent) == 0 else {
            tried.append("ssh-agent (cannot connect to \(endpoint.agentSocket ?? ProcessInfo.processInfo.environment["SSH_AUTH_SOCK"] ?? "no SSH_AUTH_SOCK"))")
            return false
        }
        guard libssh2_agent_list_identities(agent) == 0 else {
            tried.append("ssh-agent (cannot list identities)")
            return false
        }
        var previous: UnsafeMutablePointer<libssh2_agent_publickey>?
        var offered = 0
        while true {
            var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
            let next = libssh2_agent_get_identity(agent, &identity, previous)
            guard next == 0, let identity else { break }
            previous = identity
            offered += 1
            let code = try retry(until: deadline) { libssh2_agent_userauth(agent, endpoint.user, identity) }
            if code == 0 { return true }
            if LibSSH2.isSocketFailure(code) { throw failure("authentication", code: code) }
            let comment = identity.pointee.comment.map { String(cString: $0) } ?? "unnamed"
            tried.append("agent key \(comment)")
        }
        if offered == 0 { tried.append("ssh-agent (holds no keys)") }
        return false
    }

    private func startKeepalives(session: OpaquePointer, interval: Duration) {
        let seconds = max(1, Int(Self.seconds(interval)))
        libssh2_keepalive_config(session, 1, UInt32(seconds))
        // Between requests nothing polls the socket, so a timer on the
        // session's own queue sends the keepalives that are due.
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + .seconds(seconds), repeating: .seconds(seconds))
        timer.setEventHandler { [weak self] in
            guard let self, let session = self.session, self.brokenReason == nil else { return }
            var next: Int32 = 0
            let code = libssh2_keepalive_send(session, &next)
            if code != 0, code != LibSSH2.eagain, LibSSH2.isSocketFailure(code) {
                self.brokenReason = "keepalive failed: \(LibSSH2.codeName(code))"
            }
        }
        timer.resume()
        keepaliveTimer = timer
    }

    private func teardown(graceful: Bool) {
        keepaliveTimer?.cancel()
        keepaliveTimer = nil
        let deadline = ContinuousClock.now + .seconds(1)
        if let sftpHandle {
            if graceful, brokenReason == nil { _ = try? retry(until: deadline) { libssh2_sftp_shutdown(sftpHandle) } }
            self.sftpHandle = nil
        }
        if let session {
            if graceful, brokenReason == nil {
                _ = try? retry(until: deadline) { libssh2_session_disconnect_ex(session, 11, "meridian closes the session", "") }
            }
            libssh2_session_free(session)
            self.session = nil
        }
        if socketFD >= 0 {
            Glibc.close(socketFD)
            socketFD = -1
        }
    }
}

/// Whether the task behind one queued call was cancelled; set from the
/// task's cancellation handler, read by the waits on the session's queue.
final class CallCancellation: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false

    var isCancelled: Bool { lock.withLock { cancelled } }
    func cancel() { lock.withLock { cancelled = true } }
}
