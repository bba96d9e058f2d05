import Foundation
import MeridianState
import Testing

/// The rules both backends call, as pure functions.
@Suite("Shared state rules")
struct SharedRulesTests {
    let now = StateTime(rawValue: 1_760_000_000_000)

    func lease(_ holder: ProcessIdentity, expiresIn seconds: Int64) -> Lease {
        Lease(region: "eu-west", holder: holder, run: RunID(rawValue: 7), acquiredAt: StateTime(rawValue: now.rawValue - 1000),
              renewedAt: StateTime(rawValue: now.rawValue - 1000), expiresAt: StateTime(rawValue: now.rawValue + seconds * 1000))
    }

    @Test func aLiveUnexpiredHolderIsRefusedAGoneOneIsTakenOver() {
        let held = lease(alice, expiresIn: 600)
        for presence in [HolderPresence.unknown, .connected] {
            #expect(LeaseRules.decide(region: "eu-west", current: held, presence: presence, holder: bob, run: nil, now: now, ttl: .seconds(60)) == .refuse(held))
        }
        let decision = LeaseRules.decide(region: "eu-west", current: held, presence: .gone, holder: bob, run: nil, now: now, ttl: .seconds(60))
        guard case .takeOver(let taken, let previous, .holderDisconnected) = decision else {
            Issue.record("expected a takeover, got \(decision)")
            return
        }
        #expect(taken.holder == bob && taken.acquiredAt == now && previous == held)
        let record = LeaseRules.takeoverRecord(taken, previous: previous, cause: .holderDisconnected)
        #expect(record.action == .leaseTakeover && record.actor == bob.actor)
        // Expiry wins over presence: an expired lease goes whoever is connected.
        let expired = lease(alice, expiresIn: 0)
        guard case .takeOver(_, _, .expired) = LeaseRules.decide(region: "eu-west", current: expired, presence: .connected, holder: bob, run: nil, now: now, ttl: .seconds(60)) else {
            Issue.record("expected an expiry takeover")
            return
        }
    }

    @Test func theHolderExtendsKeepingItsStart() {
        let held = lease(alice, expiresIn: 5)
        #expect(LeaseRules.decide(region: "eu-west", current: held, presence: .connected, holder: alice, run: nil, now: now, ttl: .seconds(60))
            == .extend(Lease(region: "eu-west", holder: alice, run: nil, acquiredAt: held.acquiredAt, renewedAt: now, expiresAt: now.adding(.seconds(60)))))
        #expect(LeaseRules.renew(region: "eu-west", current: held, holder: bob, now: now, ttl: .seconds(60)) == .failure(.leaseLost(region: "eu-west", holder: bob, current: held)))
    }

    @Test func abandonedRunsNeedEvidence() {
        func run(_ id: Int64, host: String, pid: Int32) -> RunRecord {
            RunRecord(id: RunID(rawValue: id), kind: .apply, owner: ProcessIdentity(user: "u", host: host, pid: pid), fleetCommit: nil, planHash: nil,
                      regions: ["eu-west"], startedAt: now, finishedAt: nil, outcome: nil, exitCode: nil, summary: nil)
        }
        let candidates = [
            UnfinishedRunEvidence(run: run(1, host: "here", pid: 10), leaseExpired: false),
            UnfinishedRunEvidence(run: run(2, host: "here", pid: 11), leaseExpired: false),
            UnfinishedRunEvidence(run: run(3, host: "there", pid: 12), leaseExpired: false),
            UnfinishedRunEvidence(run: run(4, host: "there", pid: 13), leaseExpired: true),
            UnfinishedRunEvidence(run: run(5, host: "there", pid: 14), leaseExpired: false, leaseHolderGone: true),
        ]
        let abandoned = RunRules.abandoned(candidates, thisHost: "here") { $0 == 10 }
        #expect(abandoned.map(\.id.rawValue) == [2, 4, 5])
    }

    @Test func driftChangesRefreshOpenAndClear() {
        let open = [
            DriftFindingRecord(id: 9, region: "eu", host: "h", kind: "fileChanged", subject: "a", detail: .empty, firstSeenAt: now, firstSeenRun: RunID(rawValue: 1),
                               lastSeenAt: now, lastSeenRun: RunID(rawValue: 1), clearedAt: nil, clearedRun: nil),
            DriftFindingRecord(id: 4, region: "eu", host: "h", kind: "fileChanged", subject: "b", detail: .empty, firstSeenAt: now, firstSeenRun: RunID(rawValue: 1),
                               lastSeenAt: now, lastSeenRun: RunID(rawValue: 1), clearedAt: nil, clearedRun: nil),
        ]
        let seenA = DriftObservation(kind: "fileChanged", subject: "a", detail: JSONDetail(["n": "2"]))
        let newC = DriftObservation(kind: "componentNotRunning", subject: "c")
        #expect(DriftRules.changes(for: .examined(findings: [seenA, newC, newC]), open: open) == [.refresh(episode: 9, seenA), .open(newC), .clear(episode: 4)])
        #expect(DriftRules.changes(for: .unreachable(reason: "down"), open: open) == [])
    }

    @Test func aRolloutStartsOnceChangesUntilTerminalAndJournalsEachChange() throws {
        let update = RolloutUpdate(run: RunID(rawValue: 3), phase: "installing", terminal: false, record: Data("{}".utf8), effect: "install",
                                   detail: JSONDetail(["why": "new version"]), actor: "alice@laptop-1")
        let started = RolloutRules.started(id: RolloutID(rawValue: 5), region: "eu", component: "inference", update, at: now)
        #expect(throws: StateStoreError.rolloutInProgress(started)) { try RolloutRules.checkMayStart(unfinished: started) }
        try RolloutRules.checkMayStart(unfinished: nil)

        let later = StateTime(rawValue: now.rawValue + 2000)
        var next = update
        next.phase = "promoted"
        next.terminal = true
        let done = try RolloutRules.advanced(started, next, at: later)
        #expect(done.phase == "promoted" && done.terminal && done.startedAt == now && done.updatedAt == later)
        #expect(throws: StateStoreError.rolloutFinished(done)) { _ = try RolloutRules.advanced(done, update, at: later) }

        let first = RolloutRules.transition(started, lastSeq: nil, from: nil, update, at: now)
        let second = RolloutRules.transition(done, lastSeq: 1, from: "installing", next, at: later)
        #expect(first.seq == 1 && second.seq == 2 && second.fromPhase == "installing" && second.toPhase == "promoted")
        let record = RolloutRules.transitionRecord(done, second, actor: "alice@laptop-1")
        #expect(record.action == .rolloutTransition && record.subject == "eu")
        #expect(try record.detail.decode([String: String].self) == [
            "rollout": "5", "component": "inference", "from": "installing", "to": "promoted", "effect": "install", "run": "3", "detail": #"{"why":"new version"}"#,
        ])
    }

    @Test func commandsAreTakenOnceOldestFirst() {
        func command(_ id: Int64, taken: StateTime?) -> RolloutCommandRecord {
            RolloutCommandRecord(id: id, subject: "eu", command: "promote", actor: "bob@ci-3", requestedAt: now, takenAt: taken)
        }
        let later = StateTime(rawValue: now.rawValue + 1)
        let taken = RolloutRules.taken([command(7, taken: nil), command(2, taken: nil), command(4, taken: now)], at: later)
        #expect(taken == [command(2, taken: later), command(7, taken: later)])
    }
}
