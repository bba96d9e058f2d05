import Foundation
import GRDB
import MeridianPostgresState
import MeridianState
import MeridianTestHosts
import Testing

/// A temporary folder removed when the test's value goes away.
final class TemporaryFolder: Sendable {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/meridian-state-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    var databasePath: String { "\(path)/.meridian/state.db" }
}

/// A clock the test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: StateTime

    init(start: StateTime = StateTime(rawValue: 1_760_000_000_000)) { current = start }

    var now: StateTime { lock.withLock { current } }

    func advance(_ duration: Duration) {
        lock.withLock { current = current.adding(duration) }
    }

    var stateClock: StateClock { StateClock { [self] in self.now } }
}

/// A raw connection to the store's file, the way someone with the sqlite3
/// tool (or a tamperer) would reach it, bypassing the store.
func rawConnection(_ path: String) throws -> DatabaseQueue {
    var configuration = Configuration()
    configuration.busyMode = .timeout(10)
    return try DatabaseQueue(path: path, configuration: configuration)
}

let alice = ProcessIdentity(user: "alice", host: "laptop-1", pid: 4242)
let bob = ProcessIdentity(user: "bob", host: "ci-3", pid: 777)

func startedRun(_ store: some StateStore, _ kind: RunKind = .apply, owner: ProcessIdentity = alice, regions: [String] = ["eu-west"]) async throws -> RunRecord {
    try await store.startRun(RunStart(kind: kind, owner: owner, fleetCommit: "0a1b2c3", planHash: "feedface", regions: regions))
}

/// The backends the contract tests run against: every store test that is
/// not about one backend's own mechanics takes one of these.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// A fresh, empty store location of one backend: a temporary SQLite file,
/// or a new database on the test run's one PostgreSQL server. Each `open()`
/// is a separate store on that location, as a second process would have.
final class StoreFixture: Sendable {
    let backend: Backend
    let folder: TemporaryFolder
    let database: String?
    let server: TestPostgresServer?

    init(_ backend: Backend) throws {
        self.backend = backend
        folder = try TemporaryFolder()
        switch backend {
        case .sqlite:
            server = nil
            database = nil
        case .postgres:
            let shared = try TestPostgresServer.shared()
            server = shared
            database = try shared.createDatabase()
        }
    }

    var location: StateStoreLocation {
        switch backend {
        case .sqlite: return .sqlite(path: folder.databasePath)
        case .postgres: return (try? StateStoreLocation.parse(server!.url(database: database!), relativeTo: URL(fileURLWithPath: "/"))) ?? .sqlite(path: "/nonexistent")
        }
    }

    var urlText: String {
        switch backend {
        case .sqlite: return folder.databasePath
        case .postgres: return server!.url(database: database!)
        }
    }

    func open(clock: ManualClock? = nil) async throws -> any StateStore {
        try await StateStores.open(location, environment: [:], clock: clock?.stateClock)
    }

    /// Runs SQL on the database behind the store's back, as someone with the
    /// sqlite3 or psql tool would, with the append-only guards still on.
    func edit(_ statements: [String]) async throws {
        switch backend {
        case .sqlite:
            let raw = try rawConnection(folder.databasePath)
            try await raw.write { db in for statement in statements { try db.execute(sql: statement) } }
        case .postgres:
            try server!.psql(database!, statements.joined(separator: ";\n"))
        }
    }

    /// The same, after switching the append-only guards off, the way a deliberate tamperer would.
    func tamper(_ statements: [String]) async throws {
        switch backend {
        case .sqlite:
            try await edit(["DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"] + statements)
        case .postgres:
            try await edit(["ALTER TABLE audit_log DISABLE TRIGGER USER"] + statements)
        }
    }
}
