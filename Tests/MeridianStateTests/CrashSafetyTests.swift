import Foundation
import GRDB
import MeridianState
import MeridianTestHosts
import Testing

/// These tests are the evidence docs/state.md cites, so they never skip: a
/// machine without sqlite3 fails them with a message naming scripts/install-deps.
@Suite("Crash safety and concurrency")
struct CrashSafetyTests {
    /// A store with one finished apply, a journal, a manifest and audit entries.
    func baseline(_ store: SQLiteStateStore) async throws -> RunRecord {
        let run = try await startedRun(store)
        let step = try await store.beginStep(StepStart(run: run.id, region: "eu-west", host: "eu-1", step: "write app.yaml"))
        _ = try await store.finishStep(step, outcome: .ok, detail: .empty)
        _ = try await store.recordManifest(run: run.id, region: "eu-west", host: "eu-1", manifest: Data(#"{"revision":1}"#.utf8))
        for index in 1...3 {
            _ = try await store.appendAudit(AuditRecord(actor: alice.actor, action: "apply", subject: "eu-west", detail: JSONDetail(["n": "\(index)"])))
        }
        return try await store.finishRun(run.id, outcome: .succeeded, exitCode: 0, summary: "ok")
    }

    /// Everything a reader and the next run need still works.
    func expectReadableAndWritable(_ path: String, baselineRun: RunRecord, clock: ManualClock) async throws {
        let raw = try rawConnection(path)
        let integrity = try await raw.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
        #expect(integrity == ["ok"])

        let reopened = try await SQLiteStateStore.open(path: path, clock: clock.stateClock)
        #expect(try await reopened.run(baselineRun.id) == baselineRun)
        #expect(try await reopened.verifyAudit(anchor: nil).isIntact)
        #expect(try await reopened.latestManifest(region: "eu-west", host: "eu-1")?.run == baselineRun.id)
        let next = try await startedRun(reopened, owner: bob)
        _ = try await reopened.acquireLeases(regions: ["eu-west"], holder: bob, run: next.id, ttl: .seconds(60))
        _ = try await reopened.appendAudit(AuditRecord(actor: bob.actor, action: "apply", subject: "eu-west"))
        _ = try await reopened.finishRun(next.id, outcome: .succeeded, exitCode: 0, summary: "converged")
        #expect(try await reopened.verifyAudit(anchor: nil).isIntact)
    }

    @Test func killedWithAnOpenTransactionLeavesNoTrace() async throws {
        let folder = try TemporaryFolder()
        let clock = ManualClock()
        let store = try await SQLiteStateStore.open(path: folder.databasePath, clock: clock.stateClock)
        let run = try await baseline(store)
        let head = try await store.auditHead()

        let shell = try SQLiteShell(path: folder.databasePath)
        // A tiny page cache makes SQLite spill the uncommitted pages into the WAL.
        try await shell.run("""
            PRAGMA busy_timeout = 10000;
            PRAGMA cache_size = 2;
            BEGIN IMMEDIATE;
            INSERT INTO runs (kind, owner_user, owner_host, owner_pid, started_at) VALUES ('apply', 'x', 'y', 1, 0);
            INSERT INTO audit_log (seq, time, actor, action, subject, detail, prev_hash, hash) VALUES (4, 0, 'x', 'forged', 's', '{}', 'p', 'h');
            UPDATE audit_head SET seq = 4, hash = 'h';
            INSERT INTO applied_manifests (run_id, region, host, manifest, sha256, applied_at)
                SELECT \(run.id.rawValue), 'eu-west', 'eu-1', randomblob(200000), 'x', value FROM generate_series(1, 40);
            INSERT INTO leases VALUES ('eu-west', 'x', 'y', 1, NULL, 0, 0, 9999999999999);
            """)
        let walSize = (try? FileManager.default.attributesOfItem(atPath: folder.databasePath + "-wal")[.size] as? Int) ?? 0
        #expect(walSize > 1_000_000, "the open transaction should have spilled into the WAL")
        await shell.kill()
        #expect(shell.wasKilled)

        // The store that was open all along sees none of it.
        #expect(try await store.recentRuns(limit: 10) == [run])
        #expect(try await store.auditHead() == head)
        #expect(try await store.manifestHistory(region: "eu-west", host: "eu-1", limit: 100).count == 1)
        #expect(try await store.leases().isEmpty)
        try await expectReadableAndWritable(folder.databasePath, baselineRun: run, clock: clock)
    }

    @Test(arguments: [0, 1, 2, 3])
    func killedInTheMiddleOfALongStatement(growthSteps: Int) async throws {
        let folder = try TemporaryFolder()
        let clock = ManualClock()
        let store = try await SQLiteStateStore.open(path: folder.databasePath, clock: clock.stateClock)
        let run = try await baseline(store)

        let shell = try SQLiteShell(path: folder.databasePath)
        try await shell.run("PRAGMA busy_timeout = 10000; PRAGMA cache_size = 16;")
        let wal = folder.databasePath + "-wal"
        func walSize() -> Int { (try? FileManager.default.attributesOfItem(atPath: wal)[.size] as? Int) ?? 0 }
        let before = walSize()
        // A statement that writes for a long while; it is killed at some point inside it,
        // once it has visibly started: the WAL has grown by 256 KiB, 1 MiB, 2 MiB or 4 MiB.
        shell.send("""
            INSERT INTO applied_manifests (run_id, region, host, manifest, sha256, applied_at)
                SELECT \(run.id.rawValue), 'eu-west', 'eu-1', randomblob(1024), 'x', value FROM generate_series(1, 5000000);

            """)
        let growth = [256 << 10, 1 << 20, 2 << 20, 4 << 20][growthSteps]
        let started = await Poll.until(attempts: 3000) { walSize() >= before + growth || !shell.isRunning }
        #expect(started && shell.isRunning, "the statement never grew the WAL by \(growth) bytes while running (WAL \(walSize()) bytes)")
        await shell.kill()
        #expect(shell.wasKilled, "the statement had finished before the kill")

        #expect(try await store.manifestHistory(region: "eu-west", host: "eu-1", limit: 100).count == 1)
        try await expectReadableAndWritable(folder.databasePath, baselineRun: run, clock: clock)
    }

    @Test func aKilledRunLeavesADetectableRunAStepAndALeaseThatExpires() async throws {
        let folder = try TemporaryFolder()
        let clock = ManualClock()
        let store = try await SQLiteStateStore.open(path: folder.databasePath, clock: clock.stateClock)
        let baselineRun = try await baseline(store)
        let here = ProcessIdentity.current()

        // The child commits what a run writes before a step, as the store would, then dies in the step.
        let shell = try SQLiteShell(path: folder.databasePath)
        let now = clock.now.rawValue
        let expires = clock.now.adding(.seconds(120)).rawValue
        try await shell.run("""
            PRAGMA busy_timeout = 10000;
            BEGIN IMMEDIATE;
            INSERT INTO runs (kind, owner_user, owner_host, owner_pid, started_at) VALUES ('apply', '\(here.user)', '\(here.host)', \(shell.pid), \(now));
            INSERT INTO run_regions VALUES (last_insert_rowid(), 'eu-west');
            INSERT INTO leases SELECT 'eu-west', '\(here.user)', '\(here.host)', \(shell.pid), max(id), \(now), \(now), \(expires) FROM runs;
            INSERT INTO journal (run_id, region, host, step, detail, begun_at) SELECT max(id), 'eu-west', 'eu-1', 'switch gateway to green', '{}', \(now) FROM runs;
            COMMIT;
            """)
        await shell.kill()

        let victim = ProcessIdentity(user: here.user, host: here.host, pid: shell.pid)
        let abandoned = try await store.abandonedRuns()
        #expect(abandoned.map(\.owner) == [victim])
        let steps = try await store.unfinishedSteps(of: nil)
        #expect(steps.map(\.step) == ["switch gateway to green"])

        // The lease holds until it expires, then the next run takes it over on the record.
        await #expect(throws: StateStoreError.self) {
            _ = try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
        }
        clock.advance(.seconds(121))
        let next = try await startedRun(store, owner: bob)
        _ = try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: next.id, ttl: .seconds(60))
        let interrupted = try await store.markInterrupted(abandoned[0].id, by: bob.actor, note: "its process is gone")
        #expect(interrupted.outcome == .interrupted)
        let actions = try await store.auditLog(afterSeq: 3, limit: 10).map(\.action)
        #expect(actions == [.leaseTakeover, .runInterrupted])
        _ = try await store.finishRun(next.id, outcome: .succeeded, exitCode: 0, summary: "converged")
        #expect(try await store.unfinishedRuns().isEmpty)
        #expect(try await store.lastSuccessfulApply(region: "eu-west")?.id == next.id)
        #expect(try await store.run(baselineRun.id) == baselineRun)
    }

    @Test func aWriterWaitsForAnotherProcessesLockInsteadOfFailing() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        let shell = try SQLiteShell(path: folder.databasePath)
        try await shell.run("BEGIN IMMEDIATE; INSERT INTO audit_head VALUES (1, 0, 'held');")
        // Reads go on while the other process holds the write lock. (Read
        // before the append starts: the store's one connection would queue a
        // read behind an append that is waiting for the lock.)
        #expect(try await store.auditHead() == nil)
        let appended = Flag()
        let append = Task {
            let entry = try await store.appendAudit(AuditRecord(actor: alice.actor, action: "apply", subject: "eu-west"))
            appended.set()
            return entry
        }
        // The writer has had time to meet the lock (this pause is not what the
        // test relies on: whenever the append runs, it must not finish before
        // the other process lets go, and must not fail).
        try await Task.sleep(for: .milliseconds(200))
        #expect(!appended.isSet, "the append finished while another process held the write lock")
        await shell.kill()
        let entry = try await append.value
        #expect(entry.seq == 1)
        #expect(try await store.verifyAudit(anchor: nil).isIntact)
    }

    @Test func manyConcurrentWritersOnTwoStoresKeepEveryRecord() async throws {
        let folder = try TemporaryFolder()
        let first = try await SQLiteStateStore.open(path: folder.databasePath)
        let second = try await SQLiteStateStore.open(path: folder.databasePath)
        let writers = 48
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<writers {
                let store = index.isMultiple(of: 2) ? first : second
                group.addTask {
                    let owner = ProcessIdentity(user: "op\(index)", host: "h", pid: Int32(index + 1))
                    let run = try await store.startRun(RunStart(kind: .apply, owner: owner, regions: ["r\(index % 4)"]))
                    let step = try await store.beginStep(StepStart(run: run.id, region: "r\(index % 4)", host: "h\(index)", step: "write"))
                    _ = try await store.appendAudit(AuditRecord(actor: owner.actor, action: "apply", subject: "r\(index % 4)"))
                    _ = try await store.recordManifest(run: run.id, region: "r\(index % 4)", host: "h\(index)", manifest: Data("{\"n\":\(index)}".utf8))
                    _ = try await store.finishStep(step, outcome: .ok, detail: .empty)
                    _ = try await store.finishRun(run.id, outcome: .succeeded, exitCode: 0, summary: "ok")
                }
            }
            try await group.waitForAll()
        }
        #expect(try await first.recentRuns(limit: 1000).count == writers)
        #expect(try await second.unfinishedRuns().isEmpty)
        #expect(try await second.unfinishedSteps(of: nil).isEmpty)
        #expect(try await first.latestManifests(region: nil).count == writers)
        #expect(try await first.verifyAudit(anchor: nil) == .intact(entries: Int64(writers), head: try await second.auditHead()))
    }
}

/// A flag set from one task and read from another.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
