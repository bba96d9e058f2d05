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
        #expect(applied == ["v1", "v2", "v3"])

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
        #expect(try await third.appliedMigrations() == ["v1", "v2", "v3"])
        #expect(try await second.run(run.id) == run)
        #expect(try await third.verifyAudit(anchor: nil) == .intact(entries: 1, head: try await first.auditHead()))
    }

    @Test func aFileFromANewerSchemaIsRefused() async throws {
        let folder = try TemporaryFolder()
        _ = try await SQLiteStateStore.open(path: folder.databasePath)
        let raw = try rawConnection(folder.databasePath)
        try await raw.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99')") }

        let error = await #expect(throws: StateStoreError.self) {
            _ = try await SQLiteStateStore.open(path: folder.databasePath)
        }
        #expect(error == .newerSchema(path: folder.databasePath, unknownMigrations: ["v99"]))
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

    @Test func aDamagedFileGivesAClearError() async throws {
        let folder = try TemporaryFolder()
        do {
            let store = try SQLiteStateStore(path: folder.databasePath)
            _ = try await startedRun(store)
        }
        // Move everything from the WAL into the main file, then damage the schema page.
        let raw = try rawConnection(folder.databasePath)
        _ = try await raw.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        try raw.close()
        let handle = try #require(FileHandle(forUpdatingAtPath: folder.databasePath))
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 3000))
        try handle.close()

        let error = await #expect(throws: StateStoreError.self) {
            let store = try await SQLiteStateStore.open(path: folder.databasePath)
            _ = try await store.recentRuns(limit: 1)
        }
        switch error {
        case .corrupt(let path, _)?, .notADatabase(let path)?:
            #expect(path == folder.databasePath)
            #expect(error?.description.contains(folder.databasePath) == true)
            #expect(error?.description.contains("move it aside") == true)
        default:
            Issue.record("expected corrupt or notADatabase, got \(String(describing: error))")
        }
    }

    @Test func aLockHeldPastTheBusyTimeoutIsNamed() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath, busyTimeout: 0.3)
        let shell = try SQLiteShell(path: folder.databasePath)
        try await shell.run("BEGIN IMMEDIATE; INSERT INTO audit_head VALUES (1, 0, 'held');")
        let error = await #expect(throws: StateStoreError.self) {
            _ = try await store.appendAudit(AuditRecord(actor: alice.actor, action: "apply", subject: "eu-west"))
        }
        await shell.close()
        #expect(error == .busy(path: folder.databasePath, waitedSeconds: 0.3))
        #expect(error?.description.contains("locked by another meridian process") == true)
        // Once the other process is gone the write goes through.
        _ = try await store.appendAudit(AuditRecord(actor: alice.actor, action: "apply", subject: "eu-west"))
    }

    @Test func storesOpeningAFreshFileTogetherAllSucceed() async throws {
        for _ in 0..<6 {
            let folder = try TemporaryFolder()
            let path = folder.databasePath
            let versions = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<6 {
                    group.addTask { try await SQLiteStateStore.open(path: path).appliedMigrations() }
                }
                var all: [[String]] = []
                for try await versions in group { all.append(versions) }
                return all
            }
            #expect(versions == Array(repeating: ["v1", "v2", "v3"], count: 6))
        }
    }
}
