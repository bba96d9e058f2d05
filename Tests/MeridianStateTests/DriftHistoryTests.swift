import Foundation
import MeridianPostgresState
import MeridianState
import Testing

@Suite("Drift history")
struct DriftHistoryTests {
    func driftRun(_ store: any StateStore, regions: [String] = ["eu-west", "us-east"]) async throws -> RunID {
        try await store.startRun(RunStart(kind: .drift, owner: bob, regions: regions)).id
    }

    let edited = DriftObservation(kind: "fileChanged", subject: "/srv/meridian/config/inference/app.yaml", detail: JSONDetail(["expected": "aa", "found": "bb"]))
    let stopped = DriftObservation(kind: "componentNotRunning", subject: "knowledge-base")
    let weights = DriftObservation(kind: "gatewayWeights", subject: "inference")

    @Test(arguments: Backend.allCases) func findingsOpenPersistAndClear(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)

        let run1 = try await driftRun(store)
        let t1 = clock.now
        let delta1 = try await store.recordDrift(run: run1, reports: [
            HostDriftReport(region: "eu-west", host: "eu-1", status: .examined(findings: [edited, stopped])),
            HostDriftReport(region: "us-east", host: "us-1", status: .examined(findings: [])),
        ])
        #expect(delta1.appeared.map(\.kind) == ["fileChanged", "componentNotRunning"])
        #expect(delta1.persisting.isEmpty && delta1.cleared.isEmpty)
        #expect(delta1.appeared.allSatisfy { $0.firstSeenAt == t1 && $0.firstSeenRun == run1 && $0.isOpen })

        clock.advance(.seconds(900))
        let run2 = try await driftRun(store)
        let t2 = clock.now
        let changedDetail = DriftObservation(kind: edited.kind, subject: edited.subject, detail: JSONDetail(["expected": "aa", "found": "cc"]))
        let delta2 = try await store.recordDrift(run: run2, reports: [
            HostDriftReport(region: "eu-west", host: "eu-1", status: .examined(findings: [changedDetail])),
            HostDriftReport(region: "us-east", host: "us-1", status: .examined(findings: [weights])),
        ])
        #expect(delta2.appeared.map(\.subject) == ["inference"])
        #expect(delta2.persisting.map(\.subject) == [edited.subject])
        #expect(delta2.persisting.first?.firstSeenAt == t1)
        #expect(delta2.persisting.first?.lastSeenAt == t2)
        #expect(delta2.persisting.first?.detail == changedDetail.detail)
        #expect(delta2.cleared.map(\.subject) == ["knowledge-base"])
        #expect(delta2.cleared.first?.clearedAt == t2)
        #expect(delta2.cleared.first?.clearedRun == run2)

        let euHistory = try await store.driftHistory(region: "eu-west")
        #expect(euHistory.map(\.subject) == [edited.subject, "knowledge-base"])
        #expect(euHistory.map(\.isOpen) == [true, false])
        #expect(try await store.driftHistory(region: "us-east").map(\.subject) == ["inference"])
        #expect(try await store.driftHistory(region: nil).count == 3)
        #expect(try await store.openDriftFindings(region: nil).map(\.subject) == [edited.subject, "inference"])
    }

    @Test(arguments: Backend.allCases) func anUnreachableHostKeepsItsFindings(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        _ = try await store.recordDrift(run: try await driftRun(store), reports: [
            HostDriftReport(region: "eu-west", host: "eu-1", status: .examined(findings: [edited])),
        ])
        clock.advance(.seconds(60))
        let delta = try await store.recordDrift(run: try await driftRun(store), reports: [
            HostDriftReport(region: "eu-west", host: "eu-1", status: .unreachable(reason: "connection refused")),
        ])
        #expect(delta == DriftDelta(appeared: [], persisting: [], cleared: []))
        let open = try await store.openDriftFindings(region: "eu-west")
        #expect(open.map(\.subject) == [edited.subject])

        // A host not in the report at all is not examined either.
        let other = try await store.recordDrift(run: try await driftRun(store), reports: [
            HostDriftReport(region: "eu-west", host: "eu-2", status: .examined(findings: [])),
        ])
        #expect(other.cleared.isEmpty)
        #expect(try await store.openDriftFindings(region: "eu-west").count == 1)
    }

    @Test(arguments: Backend.allCases) func aFindingThatComesBackOpensANewEpisode(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let report = { (findings: [DriftObservation]) in
            [HostDriftReport(region: "eu-west", host: "eu-1", status: .examined(findings: findings))]
        }
        _ = try await store.recordDrift(run: try await driftRun(store), reports: report([stopped]))
        clock.advance(.seconds(60))
        _ = try await store.recordDrift(run: try await driftRun(store), reports: report([]))
        clock.advance(.seconds(60))
        let back = try await store.recordDrift(run: try await driftRun(store), reports: report([stopped]))
        #expect(back.appeared.count == 1)

        let history = try await store.driftHistory(region: "eu-west")
        #expect(history.count == 2)
        #expect(history[0].clearedAt != nil)
        #expect(history[1].isOpen)
        #expect(history[1].firstSeenAt > history[0].clearedAt!)
    }

    @Test(arguments: Backend.allCases) func theSameFindingTwiceInOneReportIsOneFinding(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        let delta = try await store.recordDrift(run: try await driftRun(store), reports: [
            HostDriftReport(region: "eu-west", host: "eu-1", status: .examined(findings: [stopped, stopped])),
        ])
        #expect(delta.appeared.count == 1)
    }

    @Test(arguments: Backend.allCases) func findingsBelongToDriftRuns(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        let apply = try await startedRun(store, .apply)
        await #expect(throws: StateStoreError.notADriftRun(apply)) {
            _ = try await store.recordDrift(run: apply.id, reports: [])
        }
    }
}
