import Foundation

/// A `postgresql://` (or `postgres://`) connection URL, split into its
/// parts. Invariant: `redacted` never contains the password, so it is the
/// only form messages use.
public struct PostgresURL: Hashable, Sendable, CustomStringConvertible {
    public var user: String?
    public var password: String?
    /// A host name or address; nil when `socketFolder` is used.
    public var host: String?
    public var port: Int
    public var database: String?
    /// `?host=/run/postgresql`: a folder holding the server's Unix socket.
    public var socketFolder: String?
    /// `?sslmode=`: disable, prefer (default) or require.
    public var sslMode: SSLMode
    /// `?connect_timeout=` in seconds.
    public var connectTimeoutSeconds: Int

    public enum SSLMode: String, Hashable, Sendable, CaseIterable {
        case disable, prefer, require
    }

    /// Query parameters this parser understands; anything else is refused so a typo cannot pass silently.
    public static let knownParameters = ["sslmode", "host", "connect_timeout", "application_name"]

    /// Whether `text` looks like a PostgreSQL URL rather than a file path.
    public static func isPostgresURL(_ text: String) -> Bool {
        text.hasPrefix("postgresql://") || text.hasPrefix("postgres://")
    }

    /// Parses `text`, or returns a sentence saying what is wrong with it (never repeating a password).
    public static func parse(_ text: String) -> Result<PostgresURL, PostgresURLProblem> {
        guard isPostgresURL(text) else { return .failure(.notPostgres) }
        guard let components = URLComponents(string: text) else { return .failure(.unparsable) }
        var url = PostgresURL(user: nil, password: nil, host: nil, port: 5432, database: nil, socketFolder: nil, sslMode: .prefer, connectTimeoutSeconds: 10)
        url.user = components.user?.removingPercentEncoding.flatMap { $0.isEmpty ? nil : $0 }
        url.password = components.password?.removingPercentEncoding
        url.host = components.host.flatMap { $0.isEmpty ? nil : $0 }
        if let port = components.port {
            guard (1...65535).contains(port) else { return .failure(.badPort(String(port))) }
            url.port = port
        }
        let path = components.path.removingPercentEncoding ?? components.path
        let name = path.hasPrefix("/") ? String(path.dropFirst()) : path
        if name.contains("/") { return .failure(.badDatabase(name)) }
        url.database = name.isEmpty ? nil : name
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "sslmode":
                guard let mode = SSLMode(rawValue: value) else { return .failure(.badParameter(name: "sslmode", value: value, expected: "disable, prefer or require")) }
                url.sslMode = mode
            case "host":
                guard value.hasPrefix("/") else { return .failure(.badParameter(name: "host", value: value, expected: "an absolute folder holding the server's Unix socket")) }
                url.socketFolder = value
            case "connect_timeout":
                guard let seconds = Int(value), (1...600).contains(seconds) else { return .failure(.badParameter(name: "connect_timeout", value: value, expected: "whole seconds between 1 and 600")) }
                url.connectTimeoutSeconds = seconds
            case "application_name":
                continue
            default:
                return .failure(.unknownParameter(item.name))
            }
        }
        if url.host == nil && url.socketFolder == nil { return .failure(.noHost) }
        return .success(url)
    }

    /// The URL without its password: `postgresql://meridian@db.example:5432/meridian`.
    public var redacted: String {
        var text = "postgresql://"
        if let user { text += user + (password == nil ? "" : ":***") + "@" }
        text += host.map { $0.contains(":") ? "[\($0)]" : $0 } ?? ""
        text += ":\(port)"
        if let database { text += "/\(database)" }
        var parameters: [String] = []
        if let socketFolder { parameters.append("host=\(socketFolder)") }
        if sslMode != .prefer { parameters.append("sslmode=\(sslMode.rawValue)") }
        if !parameters.isEmpty { text += "?" + parameters.joined(separator: "&") }
        return text
    }

    public var description: String { redacted }
}

/// What is wrong with a PostgreSQL URL.
public enum PostgresURLProblem: Error, Hashable, Sendable, CustomStringConvertible {
    case notPostgres
    case unparsable
    case noHost
    case badPort(String)
    case badDatabase(String)
    case badParameter(name: String, value: String, expected: String)
    case unknownParameter(String)

    public var description: String {
        switch self {
        case .notPostgres: return "expected a URL starting with postgresql://"
        case .unparsable: return "the URL does not parse; write it as postgresql://USER@HOST:PORT/DATABASE (percent-encode special characters)"
        case .noHost: return "the URL names no host; write postgresql://USER@HOST:PORT/DATABASE or add ?host=/folder/of/the/socket"
        case .badPort(let port): return "the port \(port) is not between 1 and 65535"
        case .badDatabase(let name): return "\"\(name)\" is not a database name (it holds a '/')"
        case .badParameter(let name, let value, let expected): return "?\(name)=\(value) is not valid: expected \(expected)"
        case .unknownParameter(let name): return "?\(name) is not a parameter meridian knows (known: \(PostgresURL.knownParameters.joined(separator: ", ")))"
        }
    }
}
