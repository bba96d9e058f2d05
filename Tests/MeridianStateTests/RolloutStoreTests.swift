import Foundation
import GRDB
import MeridianBasics
@testable import MeridianState
import Testing

/// Rollout records, their journaled and audited transitions, and operators'
/// commands: a contract suite, on a temporary SQLite file and on a fresh
/// database of the tests' own PostgreSQL server.
@Suite("Rollouts in the state store")
struct RolloutStoreTests {
    func update(_ phase: String, run: RunID? = nil, terminal: Bool = false, effect: String = "none") -> RolloutUpdate {
        RolloutUpdate(run: run, phase: phase, terminal: terminal, record: Data("{\"phase\":\"\(phase)\"}".utf8), effect: effect,
                      detail: JSONDetail(["reason": "test"]), actor: alice.actor)
    }

    @Test(arguments: Backend.allCases) func aRolloutIsRecordedTransitionByTransitionAndAudited(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
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

    @Test(arguments: Backend.allCases) func oneUnfinishedRolloutPerComponentAndRegion(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
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

    @Test(arguments: Backend.allCases) func commandsWaitUntilTakenOnceAndAreAudited(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
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

    /// Controllers on several machines start the same component's rollout in
    /// one region at the same moment, each through its own store (its own
    /// connections): exactly one starts it, every other is told which one
    /// is unfinished, and the record holds one rollout with one transition.
    @Test(arguments: Backend.allCases) func racingControllersStartOneUnfinishedRollout(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        var stores: [any StateStore] = []
        for _ in 0..<8 { stores.append(try await fixture.open()) }
        let controllers = stores
        for round in 0..<3 {
            let outcomes = await withTaskGroup(of: Result<StoredRollout, any Error>.self) { group in
                for store in controllers {
                    group.addTask {
                        do { return .success(try await store.startRollout(region: "eu-west", component: "inference", self.update("installing"))) }
                        catch { return .failure(error) }
                    }
                }
                var outcomes: [Result<StoredRollout, any Error>] = []
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            let started = outcomes.compactMap { try? $0.get() }
            #expect(started.count == 1, "round \(round): \(started.count) rollouts started")
            guard let winner = started.first else { return }
            for case .failure(let error) in outcomes {
                #expect(error as? StateStoreError == .rolloutInProgress(winner), "round \(round): \(error)")
            }
            let unfinished = try await controllers[0].latestRollouts(region: "eu-west").filter { !$0.terminal }
            #expect(unfinished.map(\.id) == [winner.id])
            #expect(try await controllers[0].rolloutTransitions(winner.id).map(\.seq) == [1])
            // Finished, the next round may start a new one.
            _ = try await controllers[round % controllers.count].recordRolloutTransition(winner.id, update("promoted", terminal: true))
        }
        let audit = try await controllers[0].auditLog(afterSeq: 0, limit: 100)
        #expect(audit.filter { $0.action == .rolloutTransition }.count == 6)
        #expect(try await controllers[0].verifyAudit(anchor: nil).isIntact)
    }

    /// Transitions written at once from several stores each get the next
    /// seq with its own audit entry; commands taken at once go to one taker each.
    @Test(arguments: Backend.allCases) func concurrentTransitionsAndTakersLoseNothingAndDuplicateNothing(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        var stores: [any StateStore] = []
        for _ in 0..<4 { stores.append(try await fixture.open()) }
        let writers = stores
        let rollout = try await writers[0].startRollout(region: "eu-west", component: "inference", update("installing"))
        for index in 0..<12 { _ = try await writers[index % 4].requestRolloutCommand(subject: "eu-west", command: "promote-\(index)", actor: bob.actor) }
        let taken = try await withThrowingTaskGroup(of: [RolloutCommandRecord].self) { group in
            for (index, store) in writers.enumerated() {
                group.addTask {
                    for step in 0..<5 { _ = try await store.recordRolloutTransition(rollout.id, self.update("shifting:\(index).\(step)")) }
                    var taken: [RolloutCommandRecord] = []
                    for _ in 0..<3 { taken += try await store.takeRolloutCommands(subject: "eu-west") }
                    return taken
                }
            }
            var all: [RolloutCommandRecord] = []
            for try await some in group { all += some }
            return all
        }
        let transitions = try await writers[0].rolloutTransitions(rollout.id)
        #expect(transitions.map(\.seq) == Array(1...21))
        // Each transition's from is the phase the one before it wrote.
        #expect(zip(transitions, transitions.dropFirst()).allSatisfy { $1.fromPhase == $0.toPhase })
        #expect(try await writers[0].rollout(rollout.id)?.phase == transitions.last?.toPhase)
        #expect(taken.map(\.command).sorted() == (0..<12).map { "promote-\($0)" }.sorted())
        let audit = try await writers[0].auditLog(afterSeq: 0, limit: 1000)
        #expect(audit.filter { $0.action == .rolloutTransition }.count == 21)
        #expect(audit.filter { $0.action == .rolloutCommand }.count == 12)
        #expect(try await writers[0].verifyAudit(anchor: nil).isIntact)
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
