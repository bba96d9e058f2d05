import Foundation
import GRDB
import MeridianState
import Testing

/// A temporary folder removed when the test's value goes away.
final class TemporaryFolder: Sendable {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/meridian-state-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    var databasePath: String { "\(path)/.meridian/state.db" }
}

/// A clock the test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: StateTime

    init(start: StateTime = StateTime(rawValue: 1_760_000_000_000)) { current = start }

    var now: StateTime { lock.withLock { current } }

    func advance(_ duration: Duration) {
        lock.withLock { current = current.adding(duration) }
    }

    var stateClock: StateClock { StateClock { [self] in self.now } }
}

/// A raw connection to the store's file, the way someone with the sqlite3
/// tool (or a tamperer) would reach it, bypassing the store.
func rawConnection(_ path: String) throws -> DatabaseQueue {
    var configuration = Configuration()
    configuration.busyMode = .timeout(10)
    return try DatabaseQueue(path: path, configuration: configuration)
}

let alice = ProcessIdentity(user: "alice", host: "laptop-1", pid: 4242)
let bob = ProcessIdentity(user: "bob", host: "ci-3", pid: 777)

func startedRun(_ store: some StateStore, _ kind: RunKind = .apply, owner: ProcessIdentity = alice, regions: [String] = ["eu-west"]) async throws -> RunRecord {
    try await store.startRun(RunStart(kind: kind, owner: owner, fleetCommit: "0a1b2c3", planHash: "feedface", regions: regions))
}
