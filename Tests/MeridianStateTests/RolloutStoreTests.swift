import Foundation
import GRDB
import MeridianBasics
@testable import MeridianState
import Testing

/// Rollout records, their journaled and audited transitions, and operators'
/// commands, in SQLite in a temporary folder.
@Suite("Rollouts in the state store")
struct RolloutStoreTests {
    func update(_ phase: String, run: RunID? = nil, terminal: Bool = false, effect: String = "none") -> RolloutUpdate {
        RolloutUpdate(run: run, phase: phase, terminal: terminal, record: Data("{\"phase\":\"\(phase)\"}".utf8), effect: effect,
                      detail: JSONDetail(["reason": "test"]), actor: alice.actor)
    }

    @Test func aRolloutIsRecordedTransitionByTransitionAndAudited() async throws {
        let folder = try TemporaryFolder()
        let clock = ManualClock()
        let store = try await SQLiteStateStore.open(path: folder.databasePath, clock: clock.stateClock)
        let run = try await startedRun(store)
        let started = try await store.startRollout(region: "eu-west", component: "inference", update("installing", run: run.id, effect: "install"))
        #expect(started.phase == "installing" && !started.terminal && started.run == run.id)
        clock.advance(.seconds(2))
        let shifted = try await store.recordRolloutTransition(started.id, update("shifting:0", run: run.id, effect: "set weight 10"))
        #expect(shifted.updatedAt == clock.now && shifted.startedAt == started.startedAt)
        let done = try await store.recordRolloutTransition(started.id, update("promoted", run: run.id, terminal: true, effect: "finish"))
        #expect(try await store.rollout(started.id) == done)

        let transitions = try await store.rolloutTransitions(started.id)
        #expect(transitions.map(\.seq) == [1, 2, 3])
        #expect(transitions.map(\.fromPhase) == [nil, "installing", "shifting:0"])
        #expect(transitions.map(\.toPhase) == ["installing", "shifting:0", "promoted"])
        #expect(transitions[1].effect == "set weight 10" && transitions[1].run == run.id)

        let audit = try await store.auditLog(afterSeq: 0, limit: 10).filter { $0.action == .rolloutTransition }
        #expect(audit.count == 3)
        #expect(audit.allSatisfy { $0.subject == "eu-west" })
        #expect(audit[1].detail.text.contains("\"from\":\"installing\"") && audit[1].detail.text.contains("\"to\":\"shifting:0\""))
        if case .intact = try await store.verifyAudit(anchor: nil) {} else { Issue.record("the audit chain is broken") }

        // A finished rollout is never changed again.
        await #expect(throws: StateStoreError.rolloutFinished(done)) {
            _ = try await store.recordRolloutTransition(started.id, update("aborting"))
        }
        await #expect(throws: StateStoreError.unknownRollout(RolloutID(rawValue: 99))) {
            _ = try await store.recordRolloutTransition(RolloutID(rawValue: 99), update("aborting"))
        }
    }

    @Test func oneUnfinishedRolloutPerComponentAndRegion() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        let first = try await store.startRollout(region: "eu-west", component: "inference", update("installing"))
        await #expect(throws: StateStoreError.rolloutInProgress(first)) {
            _ = try await store.startRollout(region: "eu-west", component: "inference", update("installing"))
        }
        // Another component, or another region, may roll out meanwhile.
        let kb = try await store.startRollout(region: "eu-west", component: "knowledge-base", update("installing"))
        let us = try await store.startRollout(region: "us-east", component: "inference", update("installing"))
        let ended = try await store.recordRolloutTransition(first.id, update("rolled-back", terminal: true))
        let second = try await store.startRollout(region: "eu-west", component: "inference", update("installing"))

        let latest = try await store.latestRollouts(region: nil)
        #expect(latest.map(\.id) == [second.id, kb.id, us.id])
        #expect(try await store.latestRollouts(region: "eu-west").map(\.id) == [second.id, kb.id])
        #expect(try await store.rollout(first.id) == ended)
    }

    @Test func commandsWaitUntilTakenOnceAndAreAudited() async throws {
        let folder = try TemporaryFolder()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        _ = try await store.requestRolloutCommand(subject: "eu-west", command: "promote", actor: bob.actor)
        _ = try await store.requestRolloutCommand(subject: "wave:first", command: "promote", actor: bob.actor)
        _ = try await store.requestRolloutCommand(subject: "eu-west", command: "abort", actor: alice.actor)
        let taken = try await store.takeRolloutCommands(subject: "eu-west")
        #expect(taken.map(\.command) == ["promote", "abort"])
        #expect(taken.map(\.actor) == [bob.actor, alice.actor])
        #expect(try await store.takeRolloutCommands(subject: "eu-west").isEmpty)
        #expect(try await store.takeRolloutCommands(subject: "wave:first").map(\.command) == ["promote"])
        let audit = try await store.auditLog(afterSeq: 0, limit: 10)
        #expect(audit.filter { $0.action == .rolloutCommand }.map(\.subject) == ["eu-west", "wave:first", "eu-west"])
    }

    /// A store made before rollouts existed gains their tables and keeps its data.
    @Test func aFileFromBeforeRolloutsIsMigrated() async throws {
        let folder = try TemporaryFolder()
        try FileManager.default.createDirectory(atPath: (folder.databasePath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let raw = try rawConnection(folder.databasePath)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in try db.execute(sql: SQLiteSchema.v1) }
        try migrator.migrate(raw)
        try await raw.write { db in
            try db.execute(sql: "INSERT INTO runs (kind, owner_user, owner_host, owner_pid, started_at) VALUES ('apply', 'alice', 'laptop-1', 1, 0)")
        }
        try raw.close()
        let store = try await SQLiteStateStore.open(path: folder.databasePath)
        #expect(try await store.appliedMigrations() == ["v1", "v2", "v3"])
        #expect(try await store.run(RunID(rawValue: 1))?.owner.user == "alice")
        _ = try await store.startRollout(region: "eu-west", component: "inference", update("installing"))
    }
}
