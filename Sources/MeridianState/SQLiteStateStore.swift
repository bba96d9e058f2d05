import Dispatch
import Foundation
import GRDB
import MeridianBasics

/// The state store on one SQLite file, through a GRDB `DatabasePool` in WAL
/// mode: readers never wait for the writer, and every write is an IMMEDIATE
/// transaction, so two meridian processes on one file serialize their writes
/// (waiting up to the busy timeout) instead of failing. Invariant: once
/// initialized, the file's schema is the newest this build knows.
public final class SQLiteStateStore: StateStore {
    /// The default place of the state, relative to the fleet repository.
    public static let defaultRelativePath = ".meridian/state.db"

    public let path: String
    public var location: String { path }
    let pool: DatabasePool
    let clock: StateClock
    let busyTimeout: TimeInterval

    /// Opens (creating the file and its folder when missing) and migrates
    /// the store at `path`. This blocks while SQLite opens and migrates; from
    /// async code call `open(path:clock:busyTimeout:)` instead.
    public init(path: String, clock: StateClock = .system, busyTimeout: TimeInterval = 30) throws {
        self.path = path
        self.clock = clock
        self.busyTimeout = busyTimeout

        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw StateStoreError.cannotCreateFolder(path: path, reason: Self.reason(of: error))
            }
        }

        var configuration = Configuration()
        configuration.label = "meridian-state"
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(busyTimeout)
        configuration.journalMode = .wal

        // Opening a fresh file switches it to WAL and migrates it; when other
        // processes do the same at the same moment, SQLite can answer BUSY at
        // once instead of calling the busy handler (a journal-mode change or a
        // read-to-write upgrade). Such an open is retried with a short random
        // pause until the busy timeout has passed.
        let deadline = Date().addingTimeInterval(busyTimeout)
        var opened: DatabasePool?
        while opened == nil {
            do {
                let candidate = try DatabasePool(path: path, configuration: configuration)
                try Self.migrate(candidate, path: path)
                opened = candidate
            } catch let error as DatabaseError where [.SQLITE_BUSY, .SQLITE_LOCKED].contains(error.resultCode) && Date() < deadline {
                usleep(UInt32.random(in: 20_000...120_000))
            } catch {
                throw Self.translate(error, path: path, busyTimeout: busyTimeout)
            }
        }
        pool = opened!
    }

    /// Brings the file to the newest schema, refusing one from a newer build.
    /// The migrator decides what to run before it takes the write lock, so a
    /// process opening a fresh file at the same moment as another can find
    /// its migration already applied and fail; it then decides again, with
    /// the other's migration visible. Each migration is one transaction, so
    /// a failed attempt leaves nothing behind.
    static func migrate(_ pool: DatabasePool, path: String) throws {
        let migrator = SQLiteSchema.migrator()
        var attempt = 1
        while true {
            let applied = try pool.read { db in try migrator.appliedIdentifiers(db) }
            let unknown = applied.filter { !SQLiteSchema.versions.contains($0) }.sorted()
            if !unknown.isEmpty {
                throw StateStoreError.newerSchema(path: path, unknownMigrations: unknown)
            }
            do {
                try migrator.migrate(pool)
                return
            } catch let error as DatabaseError where attempt < SQLiteSchema.versions.count + 1 {
                let nowApplied = try pool.read { db in try migrator.appliedIdentifiers(db) }
                // Nobody else made progress: the failure is ours to report.
                guard nowApplied.count > applied.count else { throw error }
                attempt += 1
            }
        }
    }

    /// Opens the store off the cooperative thread pool (SQLite's open and the
    /// busy wait are blocking calls).
    public static func open(path: String, clock: StateClock = .system, busyTimeout: TimeInterval = 30) async throws -> SQLiteStateStore {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try SQLiteStateStore(path: path, clock: clock, busyTimeout: busyTimeout) })
            }
        }
    }

    /// The migrations this file has received, in the order they ran.
    public func appliedMigrations() async throws -> [String] {
        try await read { db in try SQLiteSchema.migrator().completedMigrations(db) }
    }

    /// The newest schema version this build knows.
    public static var currentSchemaVersion: String { SQLiteSchema.versions.last ?? "" }

    // MARK: Access with error translation

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch {
            throw Self.translate(error, path: path, busyTimeout: busyTimeout)
        }
    }

    /// One IMMEDIATE transaction: all of `body`'s writes or none.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.write(body)
        } catch {
            throw Self.translate(error, path: path, busyTimeout: busyTimeout)
        }
    }

    static func translate(_ error: any Error, path: String, busyTimeout: TimeInterval) -> any Error {
        if error is StateStoreError || error is CancellationError { return error }
        guard let error = error as? DatabaseError else { return error }
        let message = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_NOTADB: return StateStoreError.notADatabase(path: path)
        case .SQLITE_CORRUPT: return StateStoreError.corrupt(path: path, message: message)
        case .SQLITE_BUSY, .SQLITE_LOCKED: return StateStoreError.busy(path: path, waitedSeconds: busyTimeout)
        case .SQLITE_CANTOPEN: return StateStoreError.cannotOpen(path: path, message: message)
        case .SQLITE_READONLY, .SQLITE_PERM: return StateStoreError.readOnly(path: path)
        case .SQLITE_FULL: return StateStoreError.diskFull(path: path)
        default: return StateStoreError.database(path: path, message: message)
        }
    }

    static func reason(of error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
           let posix = POSIXErrorCode(rawValue: Int32(underlying.code)), underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(posix.rawValue))
        }
        return nsError.localizedDescription
    }
}
