import Foundation
import MeridianBasics
import MeridianState

/// Where a state store lives, as `--state`, `$MERIDIAN_STATE` or the fleet's
/// `state:` setting names it: a SQLite file path or a PostgreSQL URL.
public enum StateStoreLocation: Hashable, Sendable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresURL)

    /// A `postgresql://` URL, else a file path (made absolute against `base`).
    public static func parse(_ text: String, relativeTo base: URL) throws -> StateStoreLocation {
        if PostgresURL.isPostgresURL(text) {
            switch PostgresURL.parse(text) {
            case .success(let url): return .postgres(url)
            case .failure(let problem): throw StateStoreLocationError(text: text, problem: problem)
            }
        }
        let path = text.hasPrefix("/") ? text : base.appendingPathComponent(text).path
        return .sqlite(path: URL(fileURLWithPath: path).standardizedFileURL.path)
    }

    /// For messages: the path, or the URL without its password.
    public var description: String {
        switch self {
        case .sqlite(let path): return path
        case .postgres(let url): return url.redacted
        }
    }
}

/// A state location that is not a usable PostgreSQL URL.
public struct StateStoreLocationError: Error, Hashable, Sendable, CustomStringConvertible {
    let redacted: String
    public let problem: PostgresURLProblem

    init(text: String, problem: PostgresURLProblem) {
        // Keep a password out of the message even when the URL does not parse.
        if let at = text.lastIndex(of: "@"), let scheme = text.range(of: "://"), scheme.upperBound < at {
            let credentials = text[scheme.upperBound..<at]
            let user = credentials.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
            redacted = String(text[..<scheme.upperBound]) + user + (credentials.contains(":") ? ":***" : "") + String(text[at...])
        } else {
            redacted = text
        }
        self.problem = problem
    }

    public var description: String { "the state store \(redacted) is not a usable PostgreSQL URL: \(problem)" }
}

/// The one factory of state stores: the rest of meridian sees only `any StateStore`.
public enum StateStores {
    /// Opens (creating or migrating) the store at `location`. `password` is
    /// the fleet's resolved `state.password` secret, when it has one.
    public static func open(
        _ location: StateStoreLocation, password: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment, clock: StateClock? = nil
    ) async throws -> any StateStore {
        switch location {
        case .sqlite(let path):
            return try await SQLiteStateStore.open(path: path, clock: clock ?? .system)
        case .postgres(let url):
            let login = PostgresLogin(url: url, secretPassword: password, environment: environment)
            return try await PostgresStateStore.open(login: login, clock: clock)
        }
    }
}
