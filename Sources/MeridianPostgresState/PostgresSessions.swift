import Foundation
import MeridianState
import PostgresNIO

/// A bounded set of connections to one server. A caller borrows one
/// connection for the whole of one call (one transaction), so no two
/// transactions share a session; a broken connection is closed and a later
/// caller opens a fresh one. Invariant: at most `limit` connections are open.
actor PostgresSessions {
    private let login: PostgresLogin
    private let limit: Int
    private var idle: [PostgresConnection] = []
    private var open = 0
    /// Callers waiting for a connection; resumed with one, or with nil to open a new one themselves.
    private var waiters: [CheckedContinuation<PostgresConnection?, Never>] = []
    private var nextID = 1
    private var closed = false
    /// Once a connection worked, a failing reconnect means the server went away mid-run.
    private var everConnected = false

    static let logger: Logger = {
        var logger = Logger(label: "meridian.state.postgres")
        logger.logLevel = .critical
        return logger
    }()

    init(login: PostgresLogin, limit: Int) {
        self.login = login
        self.limit = max(1, limit)
    }

    /// A store dropped without `close()` still closes its connections (and so
    /// ends its lease session); each stays referenced until its close completes.
    deinit {
        for connection in idle {
            connection.close().whenComplete { _ in _ = connection }
        }
    }

    var location: String { login.url.redacted }

    /// Runs `body` on a borrowed connection; a connection that broke is not returned to the set.
    func withConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await borrow()
        do {
            let value = try await body(connection)
            give(back: connection)
            return value
        } catch {
            give(back: connection.isClosed ? nil : connection)
            throw PostgresErrors.translate(error, location: location)
        }
    }

    /// One transaction: `BEGIN`, `body`, `COMMIT`; any error rolls back.
    func transaction<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in
            try await connection.query("BEGIN", logger: Self.logger)
            do {
                let value = try await body(connection)
                try await connection.query("COMMIT", logger: Self.logger)
                return value
            } catch {
                if !connection.isClosed { _ = try? await connection.query("ROLLBACK", logger: Self.logger) }
                throw error
            }
        }
    }

    /// Closes every idle connection; borrowed ones close when given back.
    func close() async {
        closed = true
        let connections = idle
        idle = []
        open -= connections.count
        for connection in connections { try? await connection.close() }
    }

    private func borrow() async throws -> PostgresConnection {
        while let connection = idle.popLast() {
            if !connection.isClosed { return connection }
            open -= 1
        }
        if open < limit {
            open += 1
            return try await connectCounted()
        }
        let handed = await withCheckedContinuation { waiters.append($0) }
        if let handed { return handed }
        return try await connectCounted()
    }

    /// Opens a connection for a slot already counted in `open`; gives the slot back on failure.
    private func connectCounted() async throws -> PostgresConnection {
        do {
            let id = nextID
            nextID += 1
            let connection = try await Self.connect(login, id: id)
            everConnected = true
            return connection
        } catch StateStoreError.unreachable(let location, let reason) where everConnected {
            give(back: nil)
            throw StateStoreError.connectionLost(location: location, reason: reason)
        } catch {
            give(back: nil)
            throw error
        }
    }

    private func give(back connection: PostgresConnection?) {
        if !waiters.isEmpty {
            let waiter = waiters.removeFirst()
            // A broken connection hands its slot on: the waiter opens a new one.
            waiter.resume(returning: connection)
            return
        }
        if let connection, !closed {
            idle.append(connection)
        } else {
            open -= 1
            if let connection { Task { try? await connection.close() } }
        }
    }

    /// Opens one connection and sets the session up: UTC, bounded statements,
    /// and TCP timeouts short enough that the server notices a vanished
    /// client (and frees its session's locks) within about 11 seconds:
    /// keepalives for an idle connection, and a user timeout for one whose
    /// last reply was still unacknowledged when the path went (keepalives
    /// never start while data waits for its ACK; retransmission alone would
    /// keep the session for about 15 minutes).
    static func connect(_ login: PostgresLogin, id: Int) async throws -> PostgresConnection {
        let url = login.url
        var configuration: PostgresConnection.Configuration
        let tls: PostgresConnection.Configuration.TLS
        switch url.sslMode {
        case .disable:
            tls = .disable
        case .prefer:
            tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require:
            tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        if let folder = url.socketFolder {
            configuration = PostgresConnection.Configuration(
                unixSocketPath: "\(folder)/.s.PGSQL.\(url.port)", username: login.user, password: login.password, database: login.database
            )
        } else {
            configuration = PostgresConnection.Configuration(
                host: url.host ?? "localhost", port: url.port, username: login.user, password: login.password, database: login.database, tls: tls
            )
        }
        configuration.options.connectTimeout = .seconds(Int64(url.connectTimeoutSeconds))
        configuration.options.additionalStartupParameters = [("application_name", "meridian")]
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
        } catch {
            throw StateStoreError.unreachable(location: url.redacted, reason: PostgresErrors.reason(error))
        }
        do {
            for setting in ["SET TIME ZONE 'UTC'", "SET statement_timeout = '120s'", "SET tcp_keepalives_idle = 5",
                            "SET tcp_keepalives_interval = 2", "SET tcp_keepalives_count = 3", "SET tcp_user_timeout = 11000"] {
                try await connection.query(PostgresQuery(unsafeSQL: setting), logger: logger)
            }
        } catch {
            try? await connection.close()
            throw PostgresErrors.translate(error, location: url.redacted)
        }
        return connection
    }
}

/// Turns postgres-nio's errors into the store's sentences; never shows a password.
enum PostgresErrors {
    static func translate(_ error: any Error, location: String) -> any Error {
        if error is StateStoreError || error is CancellationError { return error }
        if let error = error as? PSQLError {
            switch error.code {
            case .server:
                let state = error.serverInfo?[.sqlState] ?? ""
                let message = error.serverInfo?[.message] ?? "\(error.code)"
                // 57P01..57P03: the server is shutting down or restarting; 08xxx: connection failures.
                if state.hasPrefix("57P") || state.hasPrefix("08") {
                    return StateStoreError.connectionLost(location: location, reason: message)
                }
                return StateStoreError.database(path: location, message: "\(message) (SQLSTATE \(state))")
            case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown, .messageDecodingFailure:
                return StateStoreError.connectionLost(location: location, reason: reason(error))
            default:
                return StateStoreError.database(path: location, message: reason(error))
            }
        }
        return StateStoreError.database(path: location, message: reason(error))
    }

    /// A short reason for a failure, from the server's message or the socket error.
    static func reason(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            if let underlying = error.underlying { return reason(underlying) }
            switch error.code {
            case .serverClosedConnection: return "the server closed the connection"
            case .clientClosedConnection: return "the connection was closed"
            case .connectionError: return "the connection failed"
            default: return "\(error.code)"
            }
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? ChannelError {
            switch error {
            case .connectTimeout: return "the connection timed out"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOConnectionError {
            return error.connectionErrors.first.map { reason($0.error) } ?? "cannot resolve or connect to \(error.host)"
        }
        return "\(error)"
    }
}
