import Foundation
import MeridianPostgresState
import MeridianState
import Testing

@Suite("Region leases")
struct LeaseTests {
    @Test(arguments: Backend.allCases) func aSecondStoreOnTheSameFileIsRefusedNamingTheHolder(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        // Two pools on one file: two separate sets of SQLite connections, as two processes have.
        let first = try await fixture.open(clock: clock)
        let second = try await fixture.open(clock: clock)
        let run = try await startedRun(first, owner: alice)
        let taken = try await first.acquireLeases(regions: ["eu-west"], holder: alice, run: run.id, ttl: .seconds(120))
        #expect(taken.map(\.region) == ["eu-west"])
        #expect(taken[0].expiresAt == clock.now.adding(.seconds(120)))

        clock.advance(.seconds(30))
        let error = await #expect(throws: StateStoreError.self) {
            _ = try await second.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(120))
        }
        guard case .leaseHeld(let conflict) = error else {
            Issue.record("expected leaseHeld, got \(String(describing: error))")
            return
        }
        #expect(conflict.held == taken)
        let message = conflict.description
        #expect(message.contains("region eu-west is held by alice@laptop-1 pid 4242 (run \(run.id.rawValue))"))
        #expect(message.contains("meridian unlock eu-west"))
        #expect(try await second.leases() == taken)
    }

    @Test(arguments: Backend.allCases) func anExpiredLeaseIsTakenOverOnTheRecord(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let old = try await store.acquireLeases(regions: ["eu-west"], holder: alice, run: nil, ttl: .seconds(60))
        clock.advance(.seconds(59))
        await #expect(throws: StateStoreError.self) {
            _ = try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
        }
        clock.advance(.seconds(1))
        let taken = try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
        #expect(taken.first?.holder == bob)
        #expect(taken.first?.acquiredAt == clock.now)

        let audit = try await store.auditLog(afterSeq: 0, limit: 10)
        #expect(audit.map(\.action) == [.leaseTakeover])
        #expect(audit.first?.actor == "bob@ci-3")
        #expect(audit.first?.subject == "eu-west")
        let detail = try #require(try audit.first?.detail.decode([String: String].self))
        #expect(detail["previousHolder"] == alice.description)
        #expect(detail["expiredAt"] == old[0].expiresAt.description)

        // The old holder finds out when it tries to renew.
        await #expect(throws: StateStoreError.leaseLost(region: "eu-west", holder: alice, current: taken[0])) {
            _ = try await store.renewLeases(regions: ["eu-west"], holder: alice, ttl: .seconds(60))
        }
    }

    @Test(arguments: Backend.allCases) func theSameHolderReacquiresAndRenews(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        let first = try await store.acquireLeases(regions: ["eu-west"], holder: alice, run: nil, ttl: .seconds(60))
        clock.advance(.seconds(20))
        let again = try await store.acquireLeases(regions: ["eu-west", "us-east"], holder: alice, run: nil, ttl: .seconds(60))
        #expect(again.map(\.region) == ["eu-west", "us-east"])
        #expect(again[0].acquiredAt == first[0].acquiredAt)
        #expect(again[0].expiresAt == clock.now.adding(.seconds(60)))

        clock.advance(.seconds(50))
        let renewed = try await store.renewLeases(regions: ["eu-west", "us-east"], holder: alice, ttl: .seconds(60))
        #expect(renewed.allSatisfy { $0.renewedAt == clock.now && $0.expiresAt == clock.now.adding(.seconds(60)) })
        #expect(try await store.auditLog(afterSeq: 0, limit: 10).isEmpty)

        // Someone else's release does nothing; the holder's releases.
        #expect(try await store.releaseLeases(regions: ["eu-west"], holder: bob).isEmpty)
        #expect(try await store.releaseLeases(regions: ["eu-west", "us-east"], holder: alice).count == 2)
        #expect(try await store.leases().isEmpty)
    }

    @Test(arguments: Backend.allCases) func severalRegionsAreTakenAllOrNothing(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let clock = ManualClock()
        let store = try await fixture.open(clock: clock)
        // An expired lease on ap-south would be taken over, but the whole request fails.
        _ = try await store.acquireLeases(regions: ["ap-south"], holder: alice, run: nil, ttl: .seconds(10))
        clock.advance(.seconds(11))
        let held = try await store.acquireLeases(regions: ["us-east"], holder: alice, run: nil, ttl: .seconds(600))

        let error = await #expect(throws: StateStoreError.self) {
            _ = try await store.acquireLeases(regions: ["eu-west", "us-east", "ap-south"], holder: bob, run: nil, ttl: .seconds(60))
        }
        #expect(error == .leaseHeld(LeaseConflict(requested: ["ap-south", "eu-west", "us-east"], held: held)))
        let leases = try await store.leases()
        #expect(leases.map(\.region) == ["ap-south", "us-east"])
        #expect(leases.allSatisfy { $0.holder == alice })
        // The takeover's audit entry went with the rolled-back transaction.
        #expect(try await store.auditLog(afterSeq: 0, limit: 10).isEmpty)
    }

    @Test(arguments: Backend.allCases) func forceReleaseWritesAnAuditEntry(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let store = try await fixture.open()
        let run = try await startedRun(store, owner: alice)
        let lease = try await store.acquireLeases(regions: ["eu-west"], holder: alice, run: run.id, ttl: .seconds(3600))

        let released = try await store.forceReleaseLease(region: "eu-west", by: "bob@ci-3", reason: "the runner was destroyed")
        #expect(released == lease.first)
        #expect(try await store.leases().isEmpty)
        #expect(try await store.forceReleaseLease(region: "eu-west", by: "bob@ci-3", reason: "again") == nil)

        let audit = try await store.auditLog(afterSeq: 0, limit: 10)
        #expect(audit.map(\.action) == [.leaseForceRelease, .leaseForceRelease])
        #expect(audit.map(\.actor) == ["bob@ci-3", "bob@ci-3"])
        let first = try audit[0].detail.decode([String: String].self)
        #expect(first["holder"] == alice.description)
        #expect(first["run"] == String(run.id.rawValue))
        #expect(first["reason"] == "the runner was destroyed")
        #expect(try audit[1].detail.decode([String: String].self)["released"] == "none")
        #expect(try await store.verifyAudit(anchor: nil).isIntact)

        // Now bob can take it.
        _ = try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
    }

    @Test(arguments: Backend.allCases) func manyContendersOnTwoStoresGetExactlyOneWinner(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let first = try await fixture.open()
        let second = try await fixture.open()
        let contenders = (0..<24).map { ProcessIdentity(user: "op\($0)", host: "host\($0 % 3)", pid: Int32(1000 + $0)) }
        let winners = try await withThrowingTaskGroup(of: ProcessIdentity?.self) { group in
            for (index, contender) in contenders.enumerated() {
                let store = index.isMultiple(of: 2) ? first : second
                group.addTask {
                    do {
                        _ = try await store.acquireLeases(regions: ["eu-west", "us-east"], holder: contender, run: nil, ttl: .seconds(600))
                        return contender
                    } catch StateStoreError.leaseHeld {
                        return nil
                    }
                }
            }
            var winners: [ProcessIdentity] = []
            for try await winner in group { if let winner { winners.append(winner) } }
            return winners
        }
        #expect(winners.count == 1)
        let leases = try await first.leases()
        #expect(leases.count == 2)
        #expect(leases.allSatisfy { $0.holder == winners.first })
    }
}
