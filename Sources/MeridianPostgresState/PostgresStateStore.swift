import Foundation
import MeridianBasics
import MeridianState
import PostgresNIO

/// The state store on a shared PostgreSQL database, for a team: several
/// operators and CI runners on several machines. Every method is one
/// transaction on a pooled connection; the rules (leases, drift episodes,
/// abandoned runs, the audit chain) are MeridianState's, shared with SQLite.
/// Leases are rows, decided under a transaction-level advisory lock, plus a
/// session-level advisory marker per region on this store's own lease
/// session, so a holder whose process dies or whose connection drops is seen
/// as gone as soon as the server ends its session (docs/state.md).
/// Invariant: once opened, the database's schema is the newest this build knows.
public final class PostgresStateStore: StateStore {
    public let url: PostgresURL
    public var location: String { url.redacted }
    /// nil: the database's clock decides (the same for every machine); tests inject one.
    let clock: StateClock?
    let sessions: PostgresSessions
    /// One connection kept for the lease markers: they live as long as it does.
    let leaseSession: PostgresSessions

    init(login: PostgresLogin, clock: StateClock?, connections: Int) {
        self.url = login.url
        self.clock = clock
        self.sessions = PostgresSessions(login: login, limit: connections)
        self.leaseSession = PostgresSessions(login: login, limit: 1)
    }

    /// Connects, checks that the server keeps one session per connection
    /// (refusing a transaction-pooling proxy), and migrates the schema.
    public static func open(login: PostgresLogin, clock: StateClock? = nil, connections: Int = 4) async throws -> PostgresStateStore {
        let store = PostgresStateStore(login: login, clock: clock, connections: connections)
        do {
            try await store.checkSessionIsStable()
            try await PostgresSchema.migrate(store.sessions, location: store.location)
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    /// Closes every connection; the lease markers go with the lease session.
    public func close() async {
        await sessions.close()
        await leaseSession.close()
    }

    /// The migrations this database has received, in the order they ran.
    public func appliedMigrations() async throws -> [String] {
        try await PostgresSchema.appliedMigrations(sessions)
    }

    public static var currentSchemaVersion: String { PostgresSchema.versions.last ?? "" }

    /// Behind transaction pooling, two statements on one client connection can
    /// reach two server sessions, and a session lock outlives the client that
    /// took it. Three statements in a row must see one backend, and a session
    /// lock taken in one must be visible as this backend's in the next.
    func checkSessionIsStable() async throws {
        let location = self.location
        let leasePID = try await leaseSession.withConnection { connection in
            var pids: [Int64] = []
            for _ in 0..<3 {
                for try await pid in try await connection.query("SELECT pg_backend_pid()::int8", logger: PostgresSessions.logger).decode(Int64.self) {
                    pids.append(pid)
                }
            }
            guard Set(pids).count == 1, let pid = pids.first else {
                throw StateStoreError.sessionNotStable(location: location, detail: "consecutive statements ran in server sessions \(pids.map(String.init).joined(separator: ", "))")
            }
            try await connection.execute("SELECT pg_advisory_lock_shared(\(PostgresSchema.lockClass), 0)")
            let holder = try await connection.record(
                """
                SELECT pid::int8 AS pid FROM pg_locks
                WHERE locktype = 'advisory' AND classid = \(PostgresSchema.lockClass)::int8::oid AND objid = 0 AND objsubid = 2 AND pid = pg_backend_pid()
                """,
                location: location
            )
            try await connection.execute("SELECT pg_advisory_unlock_shared(\(PostgresSchema.lockClass), 0)")
            guard try holder?.int("pid") == pid else {
                throw StateStoreError.sessionNotStable(location: location, detail: "a session lock taken by one statement was not held by the session of the next")
            }
            return pid
        }
        // Two connections open at once are two server sessions, unless a pool
        // hands the idle session of one to the other (PgBouncer reuses the
        // most recently released server connection first).
        let otherPID = try await sessions.withConnection { connection in
            try await connection.record("SELECT pg_backend_pid()::int8 AS pid", location: location)?.int("pid")
        }
        if otherPID == leasePID {
            throw StateStoreError.sessionNotStable(location: location, detail: "two connections of this process were served by the same server session \(leasePID)")
        }
    }

    /// The current time: the injected clock, else the database's (read inside the caller's transaction).
    func now(_ connection: PostgresConnection) async throws -> StateTime {
        if let clock { return clock.now() }
        let row = try await connection.record("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8 AS now", location: location)
        return StateTime(rawValue: try row?.int("now") ?? 0)
    }

    func lock(_ connection: PostgresConnection, _ id: Int32) async throws {
        try await connection.execute("SELECT pg_advisory_xact_lock(\(PostgresSchema.lockClass), \(id))")
    }

    func read<T: Sendable>(_ body: @Sendable @escaping (PostgresConnection) async throws -> T) async throws -> T {
        try await sessions.withConnection(body)
    }

    func write<T: Sendable>(_ body: @Sendable @escaping (PostgresConnection) async throws -> T) async throws -> T {
        try await sessions.transaction(body)
    }

    // MARK: Runs

    public func startRun(_ start: RunStart) async throws -> RunRecord {
        try await write { c in
            let now = try await self.now(c)
            guard let row = try await c.record(
                """
                INSERT INTO runs (kind, owner_user, owner_host, owner_pid, fleet_commit, plan_hash, started_at)
                VALUES (\(start.kind.rawValue), \(start.owner.user), \(start.owner.host), \(Int64(start.owner.pid)), \(start.fleetCommit), \(start.planHash), \(now.rawValue))
                RETURNING id
                """, location: self.location) else { throw StateStoreError.database(path: self.location, message: "INSERT returned no id") }
            let id = try row.int("id")
            for region in start.regions {
                try await c.execute("INSERT INTO run_regions (run_id, region) VALUES (\(id), \(region))")
            }
            return try await self.fetchRun(c, RunID(rawValue: id))
        }
    }

    public func finishRun(_ id: RunID, outcome: RunOutcome, exitCode: Int32, summary: String) async throws -> RunRecord {
        try await write { c in
            let now = try await self.now(c)
            let run = try await self.fetchRun(c, id, forUpdate: true)
            try RunRules.checkRunning(run)
            try await c.execute("UPDATE runs SET finished_at = \(now.rawValue), outcome = \(outcome.rawValue), exit_code = \(Int64(exitCode)), summary = \(summary) WHERE id = \(id.rawValue)")
            return try await self.fetchRun(c, id)
        }
    }

    public func recordPlan(_ id: RunID, planHash: String) async throws -> RunRecord {
        try await write { c in
            try RunRules.checkRunning(try await self.fetchRun(c, id, forUpdate: true))
            try await c.execute("UPDATE runs SET plan_hash = \(planHash) WHERE id = \(id.rawValue)")
            return try await self.fetchRun(c, id)
        }
    }

    public func run(_ id: RunID) async throws -> RunRecord? {
        try await read { c in
            try await c.record("SELECT \(unescaped: PostgresRecord.runColumns) FROM runs WHERE id = \(id.rawValue)", location: self.location)?.run()
        }
    }

    public func recentRuns(limit: Int) async throws -> [RunRecord] {
        try await read { c in
            try await c.records("SELECT \(unescaped: PostgresRecord.runColumns) FROM runs ORDER BY id DESC LIMIT \(Int64(limit))", location: self.location).map { try $0.run() }
        }
    }

    public func unfinishedRuns() async throws -> [RunRecord] {
        try await read { c in
            try await c.records("SELECT \(unescaped: PostgresRecord.runColumns) FROM runs WHERE outcome IS NULL ORDER BY id", location: self.location).map { try $0.run() }
        }
    }

    public func abandonedRuns() async throws -> [RunRecord] {
        let evidence = try await read { c in
            let now = try await self.now(c)
            return try await c.records(
                """
                SELECT \(unescaped: PostgresRecord.runColumns),
                       EXISTS (SELECT 1 FROM leases WHERE leases.run_id = runs.id AND expires_at <= \(now.rawValue)) AS lease_expired,
                       EXISTS (SELECT 1 FROM leases WHERE leases.run_id = runs.id AND \(unescaped: Self.holderGoneCondition)) AS lease_holder_gone
                FROM runs WHERE outcome IS NULL ORDER BY id
                """, location: self.location
            ).map { UnfinishedRunEvidence(run: try $0.run(), leaseExpired: try $0.bool("lease_expired"), leaseHolderGone: try $0.bool("lease_holder_gone")) }
        }
        return RunRules.abandoned(evidence, thisHost: RunRules.thisHost)
    }

    public func markInterrupted(_ id: RunID, by actor: String, note: String) async throws -> RunRecord {
        try await write { c in
            let now = try await self.now(c)
            let run = try await self.fetchRun(c, id, forUpdate: true)
            try RunRules.checkRunning(run)
            try await c.execute("UPDATE runs SET finished_at = \(now.rawValue), outcome = \(RunOutcome.interrupted.rawValue), summary = \(note) WHERE id = \(id.rawValue)")
            _ = try await self.appendAudit(c, RunRules.interruptedRecord(run, by: actor, note: note), at: now)
            return try await self.fetchRun(c, id)
        }
    }

    func fetchRun(_ c: PostgresConnection, _ id: RunID, forUpdate: Bool = false) async throws -> RunRecord {
        let lock = forUpdate ? " FOR UPDATE" : ""
        guard let row = try await c.record("SELECT \(unescaped: PostgresRecord.runColumns) FROM runs WHERE id = \(id.rawValue)\(unescaped: lock)", location: location) else {
            throw StateStoreError.unknownRun(id)
        }
        return try row.run()
    }

    // MARK: Journal

    public func beginStep(_ step: StepStart) async throws -> JournalEntryID {
        try await write { c in
            let now = try await self.now(c)
            try RunRules.checkRunning(try await self.fetchRun(c, step.run))
            let row = try await c.record(
                """
                INSERT INTO journal (run_id, region, host, step, detail, begun_at)
                VALUES (\(step.run.rawValue), \(step.region), \(step.host), \(step.step), \(step.detail.text), \(now.rawValue)) RETURNING id
                """, location: self.location)
            return JournalEntryID(rawValue: try row?.int("id") ?? 0)
        }
    }

    public func finishStep(_ id: JournalEntryID, outcome: StepOutcome, detail: JSONDetail) async throws -> JournalEntry {
        try await write { c in
            let now = try await self.now(c)
            let entry = try await self.fetchJournalEntry(c, id, forUpdate: true)
            guard !entry.isFinished else { throw StateStoreError.journalEntryAlreadyFinished(entry) }
            try await c.execute("UPDATE journal SET finished_at = \(now.rawValue), outcome = \(outcome.rawValue), outcome_detail = \(detail.text) WHERE id = \(id.rawValue)")
            return try await self.fetchJournalEntry(c, id)
        }
    }

    public func journal(of run: RunID) async throws -> [JournalEntry] {
        try await read { c in
            try await c.records("SELECT * FROM journal WHERE run_id = \(run.rawValue) ORDER BY id", location: self.location).map { try $0.journalEntry() }
        }
    }

    public func unfinishedSteps(of run: RunID?) async throws -> [JournalEntry] {
        try await read { c in
            if let run {
                return try await c.records("SELECT * FROM journal WHERE outcome IS NULL AND run_id = \(run.rawValue) ORDER BY id", location: self.location).map { try $0.journalEntry() }
            }
            return try await c.records("SELECT * FROM journal WHERE outcome IS NULL ORDER BY id", location: self.location).map { try $0.journalEntry() }
        }
    }

    func fetchJournalEntry(_ c: PostgresConnection, _ id: JournalEntryID, forUpdate: Bool = false) async throws -> JournalEntry {
        let lock = forUpdate ? " FOR UPDATE" : ""
        guard let row = try await c.record("SELECT * FROM journal WHERE id = \(id.rawValue)\(unescaped: lock)", location: location) else {
            throw StateStoreError.unknownJournalEntry(id)
        }
        return try row.journalEntry()
    }

    // MARK: Applied manifests

    public func recordManifest(run: RunID, region: String, host: String, manifest: Data) async throws -> AppliedManifest {
        let hash = SHA256.hex(manifest)
        return try await write { c in
            let now = try await self.now(c)
            _ = try await self.fetchRun(c, run)
            let row = try await c.record(
                """
                INSERT INTO applied_manifests (run_id, region, host, manifest, sha256, applied_at)
                VALUES (\(run.rawValue), \(region), \(host), \(manifest), \(hash), \(now.rawValue)) RETURNING id
                """, location: self.location)
            return AppliedManifest(id: try row?.int("id") ?? 0, run: run, region: region, host: host, manifest: manifest, sha256: hash, appliedAt: now)
        }
    }

    public func latestManifest(region: String, host: String) async throws -> AppliedManifest? {
        try await manifestHistory(region: region, host: host, limit: 1).first
    }

    public func latestManifests(region: String?) async throws -> [AppliedManifest] {
        try await read { c in
            if let region {
                return try await c.records(
                    """
                    SELECT DISTINCT ON (region, host) * FROM applied_manifests WHERE region = \(region)
                    ORDER BY region, host, id DESC
                    """, location: self.location).map { try $0.manifest() }
            }
            return try await c.records(
                "SELECT DISTINCT ON (region, host) * FROM applied_manifests ORDER BY region, host, id DESC",
                location: self.location).map { try $0.manifest() }
        }
    }

    public func manifestHistory(region: String, host: String, limit: Int) async throws -> [AppliedManifest] {
        try await read { c in
            try await c.records(
                "SELECT * FROM applied_manifests WHERE region = \(region) AND host = \(host) ORDER BY id DESC LIMIT \(Int64(limit))",
                location: self.location).map { try $0.manifest() }
        }
    }

    // MARK: Status

    public func lastSuccessfulApply(region: String) async throws -> RunRecord? {
        try await read { c in try await self.fetchLastSuccessfulApply(c, region: region) }
    }

    public func regionStatuses(_ regions: [String]) async throws -> [RegionStatus] {
        try await read { c in
            var statuses: [RegionStatus] = []
            for region in regions {
                let lease = try await c.record("SELECT * FROM leases WHERE region = \(region)", location: self.location)?.lease()
                statuses.append(RegionStatus(region: region, lastApply: try await self.fetchLastSuccessfulApply(c, region: region), lease: lease))
            }
            return statuses
        }
    }

    func fetchLastSuccessfulApply(_ c: PostgresConnection, region: String) async throws -> RunRecord? {
        let kinds = RunKind.allCases.filter(\.changesHosts).map(\.rawValue)
        return try await c.record(
            """
            SELECT \(unescaped: PostgresRecord.runColumns) FROM runs JOIN run_regions ON run_regions.run_id = runs.id
            WHERE run_regions.region = \(region) AND runs.outcome = 'succeeded' AND runs.kind = ANY(\(kinds))
            ORDER BY runs.finished_at DESC, runs.id DESC LIMIT 1
            """, location: location)?.run()
    }
}
