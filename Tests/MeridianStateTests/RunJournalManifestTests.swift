import Foundation
import MeridianBasics
import MeridianPostgresState
import MeridianState
import Testing

@Suite("Runs, journal and applied manifests")
struct RunJournalManifestTests {
    @Test(arguments: Backend.allCases) func aRunIsRecordedRunningThenFinished(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let run = try await store.startRun(RunStart(kind: .apply, owner: alice, fleetCommit: "abc123", planHash: "deadbeef", regions: ["us-east", "eu-west", "eu-west"]))
        #expect(run.isRunning)
        #expect(run.regions == ["eu-west", "us-east"])
        #expect(run.actor == "alice@laptop-1")
        #expect(run.startedAt == clock.now)
        #expect(try await store.unfinishedRuns() == [run])

        clock.advance(.seconds(90))
        let finished = try await store.finishRun(run.id, outcome: .succeeded, exitCode: 0, summary: "3 hosts changed")
        #expect(finished.outcome == .succeeded)
        #expect(finished.exitCode == 0)
        #expect(finished.finishedAt == clock.now)
        #expect(finished.summary == "3 hosts changed")
        #expect(try await store.unfinishedRuns().isEmpty)
        #expect(try await store.run(run.id) == finished)

        await #expect(throws: StateStoreError.runAlreadyFinished(finished)) {
            _ = try await store.finishRun(run.id, outcome: .failed, exitCode: 1, summary: "again")
        }
    }

    @Test(arguments: Backend.allCases) func aRunThatPlansAfterItStartedRecordsItsPlanWhileRunningOnly(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        let run = try await store.startRun(RunStart(kind: .apply, owner: alice, fleetCommit: nil, planHash: nil, regions: ["eu-west"]))
        #expect(run.planHash == nil)
        let planned = try await store.recordPlan(run.id, planHash: "0f1e2d")
        #expect(planned.planHash == "0f1e2d" && planned.isRunning)
        #expect(try await store.run(run.id)?.planHash == "0f1e2d")
        let finished = try await store.finishRun(run.id, outcome: .succeeded, exitCode: 0, summary: "nothing to change")
        #expect(finished.planHash == "0f1e2d")
        await #expect(throws: StateStoreError.runAlreadyFinished(finished)) {
            _ = try await store.recordPlan(run.id, planHash: "other")
        }
    }

    @Test(arguments: Backend.allCases) func recentRunsComeNewestFirst(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        var ids: [RunID] = []
        for kind in [RunKind.plan, .apply, .drift, .rollout] {
            ids.append(try await startedRun(store, kind).id)
        }
        let recent = try await store.recentRuns(limit: 3)
        #expect(recent.map(\.id) == Array(ids.reversed().prefix(3)))
        #expect(recent.map(\.kind) == [.rollout, .drift, .apply])
    }

    @Test(arguments: Backend.allCases) func aRunWhoseProcessDiedIsAbandonedAndCanBeMarkedInterrupted(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        // A pid that certainly existed and is now dead and reaped.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let here = ProcessIdentity.current()
        let dead = ProcessIdentity(user: here.user, host: here.host, pid: child.processIdentifier)
        let elsewhere = ProcessIdentity(user: "carol", host: "some-other-machine", pid: 1234)

        let deadRun = try await startedRun(store, .apply, owner: dead)
        let liveRun = try await startedRun(store, .apply, owner: here)
        let remoteRun = try await startedRun(store, .plan, owner: elsewhere)

        let abandoned = try await store.abandonedRuns()
        #expect(abandoned.map(\.id) == [deadRun.id])
        #expect(try await store.unfinishedRuns().map(\.id) == [deadRun.id, liveRun.id, remoteRun.id])

        let marked = try await store.markInterrupted(deadRun.id, by: here.actor, note: "found abandoned by a later apply")
        #expect(marked.outcome == .interrupted)
        #expect(marked.exitCode == nil)
        #expect(try await store.abandonedRuns().isEmpty)
        let audit = try await store.auditLog(afterSeq: 0, limit: 10)
        #expect(audit.map(\.action) == [.runInterrupted])
        #expect(audit.first?.subject == "run \(deadRun.id.rawValue)")
        #expect(try await store.verifyAudit(anchor: nil).isIntact)
    }

    @Test(arguments: Backend.allCases) func aRunFromAnotherMachineIsAbandonedOnceItsLeaseExpired(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let run = try await startedRun(store, .apply, owner: bob)
        _ = try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: run.id, ttl: .seconds(60))
        #expect(try await store.abandonedRuns().isEmpty)
        clock.advance(.seconds(61))
        #expect(try await store.abandonedRuns().map(\.id) == [run.id])
    }

    @Test(arguments: Backend.allCases) func journalEntriesAreWrittenBeforeAndCompletedAfter(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let run = try await startedRun(store)
        let detail = JSONDetail(["path": "/srv/meridian/config/inference/app.yaml", "sha256": "ab12"])
        let first = try await store.beginStep(StepStart(run: run.id, region: "eu-west", host: "eu-1", step: "write app.yaml", detail: detail))
        let second = try await store.beginStep(StepStart(run: run.id, region: "eu-west", host: "eu-2", step: "write app.yaml", detail: detail))
        #expect(first < second)
        #expect(try await store.unfinishedSteps(of: run.id).map(\.id) == [first, second])

        clock.advance(.milliseconds(1500))
        let done = try await store.finishStep(first, outcome: .ok, detail: JSONDetail(["bytes": "812"]))
        #expect(done.outcome == .ok)
        #expect(done.finishedAt == clock.now)
        #expect(done.detail == detail)
        #expect(done.outcomeDetail == JSONDetail(["bytes": "812"]))

        let journal = try await store.journal(of: run.id)
        #expect(journal.map(\.id) == [first, second])
        #expect(journal[1].isFinished == false)
        #expect(try await store.unfinishedSteps(of: nil).map(\.id) == [second])

        await #expect(throws: StateStoreError.journalEntryAlreadyFinished(done)) {
            _ = try await store.finishStep(first, outcome: .failed, detail: .empty)
        }
        await #expect(throws: StateStoreError.unknownJournalEntry(JournalEntryID(rawValue: 999))) {
            _ = try await store.finishStep(JournalEntryID(rawValue: 999), outcome: .ok, detail: .empty)
        }
        let finishedRun = try await store.finishRun(run.id, outcome: .failed, exitCode: 1, summary: "eu-2 failed")
        await #expect(throws: StateStoreError.runAlreadyFinished(finishedRun)) {
            _ = try await store.beginStep(StepStart(run: run.id, region: "eu-west", host: "eu-1", step: "late"))
        }
    }

    @Test func detailsMustBeJSON() throws {
        #expect(throws: StateStoreError.invalidDetail(text: "{not json")) { try JSONDetail(json: "{not json") }
        #expect(try JSONDetail(json: #"{"a": [1, 2]}"#).text == #"{"a": [1, 2]}"#)
        struct Weights: Codable, Equatable { let blue: Int; let green: Int }
        let encoded = try JSONDetail(encoding: Weights(blue: 90, green: 10))
        #expect(encoded.text == #"{"blue":90,"green":10}"#)
        #expect(try encoded.decode(Weights.self) == Weights(blue: 90, green: 10))
    }

    @Test(arguments: Backend.allCases) func manifestsKeepHistoryAndTheLatestPerHost(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let first = try await startedRun(store, regions: ["eu-west", "us-east"])
        let v1 = Data(#"{"revision":1}"#.utf8)
        let v2 = Data(#"{"revision":2}"#.utf8)
        let a1 = try await store.recordManifest(run: first.id, region: "eu-west", host: "eu-1", manifest: v1)
        _ = try await store.recordManifest(run: first.id, region: "eu-west", host: "eu-2", manifest: v1)
        _ = try await store.recordManifest(run: first.id, region: "us-east", host: "us-1", manifest: v1)
        #expect(a1.sha256 == SHA256.hex(v1))

        clock.advance(.seconds(600))
        let second = try await startedRun(store)
        let a2 = try await store.recordManifest(run: second.id, region: "eu-west", host: "eu-1", manifest: v2)

        #expect(try await store.latestManifest(region: "eu-west", host: "eu-1") == a2)
        #expect(try await store.latestManifest(region: "eu-west", host: "nowhere") == nil)
        #expect(try await store.manifestHistory(region: "eu-west", host: "eu-1", limit: 10) == [a2, a1])
        #expect(try await store.manifestHistory(region: "eu-west", host: "eu-1", limit: 1) == [a2])

        let latestEU = try await store.latestManifests(region: "eu-west")
        #expect(latestEU.map(\.host) == ["eu-1", "eu-2"])
        #expect(latestEU.map(\.manifest) == [v2, v1])
        let latestAll = try await store.latestManifests(region: nil)
        #expect(latestAll.map { "\($0.region)/\($0.host)" } == ["eu-west/eu-1", "eu-west/eu-2", "us-east/us-1"])
    }

    @Test(arguments: Backend.allCases) func statusShowsTheLastSuccessfulApplyAndTheLeaseHolder(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let good = try await startedRun(store, .apply, owner: alice, regions: ["eu-west", "us-east"])
        let goodFinished = try await store.finishRun(good.id, outcome: .succeeded, exitCode: 0, summary: "ok")
        clock.advance(.seconds(10))
        let failed = try await startedRun(store, .apply, owner: bob, regions: ["eu-west"])
        _ = try await store.finishRun(failed.id, outcome: .failed, exitCode: 1, summary: "host unreachable")
        let drift = try await startedRun(store, .drift, owner: bob, regions: ["us-east"])
        _ = try await store.finishRun(drift.id, outcome: .succeeded, exitCode: 0, summary: "clean")
        let rollout = try await startedRun(store, .rollout, owner: bob, regions: ["us-east"])
        let rolloutFinished = try await store.finishRun(rollout.id, outcome: .succeeded, exitCode: 0, summary: "inference 2.1")
        let lease = try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(300))

        #expect(try await store.lastSuccessfulApply(region: "eu-west") == goodFinished)
        let statuses = try await store.regionStatuses(["eu-west", "us-east", "ap-south"])
        #expect(statuses == [
            RegionStatus(region: "eu-west", lastApply: goodFinished, lease: lease.first),
            RegionStatus(region: "us-east", lastApply: rolloutFinished, lease: nil),
            RegionStatus(region: "ap-south", lastApply: nil, lease: nil),
        ])
        #expect(statuses[0].lastApply?.actor == "alice@laptop-1")
        #expect(statuses[0].lastApply?.fleetCommit == "0a1b2c3")
    }

    @Test func stateTimeFormatsAsUTC() {
        #expect(StateTime(rawValue: 0).description == "1970-01-01T00:00:00.000Z")
        #expect(StateTime(rawValue: 1_740_821_400_250).description == "2025-03-01T09:30:00.250Z")
        #expect(StateTime(rawValue: -1).description == "1969-12-31T23:59:59.999Z")
        let date = Date(timeIntervalSince1970: 1_740_821_400.2504)
        #expect(StateTime(date).rawValue == 1_740_821_400_250)
    }
}
