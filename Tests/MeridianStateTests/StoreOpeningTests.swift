import Foundation
import GRDB
import MeridianState
import Testing

@Suite("State store opening and migrations")
struct StoreOpeningTests {
    @Test func freshStoreCreatesItsFolderAndReachesTheLatestVersion() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        #expect(FileManager.default.fileExists(atPath: folder.databasePath))
        let applied = try await store.appliedMigrations()
        #expect(applied.last == SQLiteStateStore.currentSchemaVersion)
        #expect(applied == ["v1"])

        let raw = try rawConnection(folder.databasePath)
        let mode = try await raw.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    @Test func reopeningIsIdempotentAndKeepsData() async throws {
        let folder = try TemporaryFolder()
        let first = try await SQLiteStateStore.open(path: folder.databasePath)
        let run = try await startedRun(first)
        _ = try await first.appendAudit(AuditRecord(actor: "alice@laptop-1", action: "test", subject: "eu-west"))

        let second = try await SQLiteStateStore.open(path: folder.databasePath)
        let third = try await SQLiteStateStore.open(path: folder.databasePath)
        #expect(try await third.appliedMigrations() == ["v1"])
        #expect(try await second.run(run.id) == run)
        #expect(try await third.verifyAudit(anchor: nil) == .intact(entries: 1, head: try await first.auditHead()))
    }

    @Test func aFileFromANewerSchemaIsRefused() async throws {
        let folder = try TemporaryFolder()
        _ = try await SQLiteStateStore.open(path: folder.databasePath)
        let raw = try rawConnection(folder.databasePath)
        try await raw.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v2')") }

        let error = await #expect(throws: StateStoreError.self) {
            _ = try await SQLiteStateStore.open(path: folder.databasePath)
        }
        #expect(error == .newerSchema(path: folder.databasePath, unknownMigrations: ["v2"]))
        #expect(error?.description.contains("newer meridian") == true)
        #expect(error?.description.contains(folder.databasePath) == true)
    }

    @Test func aFileThatIsNotADatabaseIsNamedWithTheNextStep() async throws {
        let folder = try TemporaryFolder()
        try FileManager.default.createDirectory(atPath: "\(folder.path)/.meridian", withIntermediateDirectories: true)
        let text = String(repeating: "this is not an SQLite database, just some notes\n", count: 200)
        try text.write(toFile: folder.databasePath, atomically: true, encoding: .utf8)

        let error = await #expect(throws: StateStoreError.self) {
            _ = try await SQLiteStateStore.open(path: folder.databasePath)
        }
        #expect(error == .notADatabase(path: folder.databasePath))
        #expect(error?.description.contains("--state") == true)
        #expect(error?.description.contains("move it aside") == true)
    }

    @Test func aFolderThatCannotBeCreatedIsNamed() async throws {
        let folder = try TemporaryFolder()
        // A regular file where the folder should be.
        try "x".write(toFile: "\(folder.path)/.meridian", atomically: true, encoding: .utf8)
        let error = await #expect(throws: StateStoreError.self) {
            _ = try await SQLiteStateStore.open(path: folder.databasePath)
        }
        guard case .cannotCreateFolder(let path, _) = error else {
            Issue.record("expected cannotCreateFolder, got \(String(describing: error))")
            return
        }
        #expect(path == folder.databasePath)
    }

    @Test func aManifestNeedsAnExistingRun() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        let error = await #expect(throws: StateStoreError.self) {
            _ = try await store.recordManifest(run: RunID(rawValue: 99), region: "eu-west", host: "a", manifest: Data("{}".utf8))
        }
        #expect(error == .unknownRun(RunID(rawValue: 99)))
    }
}
