import Foundation
import MeridianBasics
import MeridianPostgresState
import MeridianState
import MeridianTestHosts
import Testing

/// What only the PostgreSQL store does: leases tied to a live session,
/// the database's clock, copying a SQLite store in, and its refusals.
@Suite("PostgreSQL store")
struct PostgresStoreTests {
    func open(_ fixture: StoreFixture, clock: ManualClock? = nil) async throws -> PostgresStateStore {
        try #require(try await fixture.open(clock: clock) as? PostgresStateStore)
    }

    @Test func aHolderWhoseConnectionEndsLosesItsLeaseAtOnceOnTheRecord() async throws {
        let fixture = try StoreFixture(.postgres)
        let holder = try await open(fixture)
        let other = try await open(fixture)
        let run = try await startedRun(holder, owner: alice)
        _ = try await holder.acquireLeases(regions: ["eu-west", "us-east"], holder: alice, run: run.id, ttl: .seconds(1800))
        await #expect(throws: StateStoreError.self) {
            _ = try await other.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
        }
        // The server ends the holder's session, as it does when its process is SIGKILLed (the kernel closes the socket).
        let sessions = try fixture.server!.psql(fixture.database!, "SELECT count(pg_terminate_backend(session_pid)) FROM (SELECT DISTINCT session_pid FROM leases) s")
        #expect(sessions == "1")
        try await waitUntilHolderIsGone(other, fixture)
        let taken = try await other.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
        #expect(taken.map(\.holder) == [bob])
        let audit = try await other.auditLog(afterSeq: 0, limit: 10)
        #expect(audit.map(\.action) == [.leaseTakeover])
        let detail = try audit[0].detail.decode([String: String].self)
        #expect(detail["previousHolder"] == alice.description)
        #expect(detail["cause"] == "the holder's database session ended")
        // Its run is abandoned now: its lease on us-east names a session that ended.
        #expect(try await other.abandonedRuns().map(\.id) == [run.id])
        // The old holder reconnects and finds out when it renews.
        await #expect(throws: StateStoreError.leaseLost(region: "eu-west", holder: alice, current: taken[0])) {
            _ = try await holder.renewLeases(regions: ["eu-west", "us-east"], holder: alice, ttl: .seconds(60))
        }
        await holder.close()
        await other.close()
    }

    /// A holder whose network path vanishes (no FIN, no RST: its link goes
    /// down) loses its lease once the server's keepalives give up on it, about
    /// 5 + 2 × 3 s, long before its expiry: the clock is held still, so only
    /// the ended session can free it. The server runs in a network namespace
    /// of the test's own, the holder and the other controller on separate links.
    @Test func aHolderWhosePathVanishesLosesItsLeaseWhenTheServerGivesUpOnIt() async throws {
        let namespace = try TestNetworkNamespace(links: 2)
        defer { namespace.remove() }
        let server = try TestPostgresServer(addressOctet: 9, namespace: namespace)
        defer { server.stop() }
        let database = try server.createDatabase(prefix: "vanish")
        func store(overLink link: Int, _ clock: ManualClock) async throws -> PostgresStateStore {
            let url = try PostgresURL.parse("postgresql://meridian@\(namespace.address(link)):\(server.port)/\(database)?sslmode=disable").get()
            return try #require(try await StateStores.open(.postgres(url), environment: [:], clock: clock.stateClock) as? PostgresStateStore)
        }
        let clock = ManualClock()
        let other = try await store(overLink: 0, clock)
        let holder = try await store(overLink: 1, clock)
        _ = try await holder.acquireLeases(regions: ["eu-west"], holder: alice, run: nil, ttl: .seconds(1800))
        await #expect(throws: StateStoreError.self) {
            _ = try await other.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
        }

        try namespace.cut(1)
        let cut = ContinuousClock.now
        var taken: [Lease] = []
        for _ in 0..<240 {
            do {
                taken = try await other.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
                break
            } catch StateStoreError.leaseHeld {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        let waited = ContinuousClock.now - cut
        #expect(taken.map(\.holder) == [bob], "the lease was still held 60 s after its holder's path was cut")
        let audit = try await other.auditLog(afterSeq: 0, limit: 10)
        #expect(audit.map(\.action) == [.leaseTakeover])
        #expect(try audit.first?.detail.decode([String: String].self)["cause"] == "the holder's database session ended")
        if !taken.isEmpty { print("a vanished holder's lease was free \(waited) after its path was cut") }

        try namespace.restore(1)
        await holder.close()
        await other.close()
    }

    @Test func aClosedStoreFreesItsLeasesAndAReleasedOneLeavesNoMarker() async throws {
        let fixture = try StoreFixture(.postgres)
        let first = try await open(fixture)
        let second = try await open(fixture)
        _ = try await first.acquireLeases(regions: ["eu-west"], holder: alice, run: nil, ttl: .seconds(1800))
        await first.close()
        try await waitUntilHolderIsGone(second, fixture)
        _ = try await second.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(1800))
        #expect(try await second.releaseLeases(regions: ["eu-west"], holder: bob).count == 1)
        let markers = try fixture.server!.psql(fixture.database!, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = \(0x4D52_4432) AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        #expect(markers == "0")
        await second.close()
    }

    /// The server notices an ended session at once; polling is bounded.
    func waitUntilHolderIsGone(_ store: PostgresStateStore, _ fixture: StoreFixture) async throws {
        for _ in 0..<400 {
            let alive = try fixture.server!.psql(fixture.database!, """
                SELECT count(*) FROM leases l JOIN pg_locks p ON p.pid = l.session_pid AND p.locktype = 'advisory'
                """)
            if alive == "0" { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        let sessions = (try? fixture.server!.psql(fixture.database!, "SELECT l.session_pid, a.pid, a.state, left(a.query, 60) FROM leases l LEFT JOIN pg_stat_activity a ON a.pid = l.session_pid")) ?? ""
        Issue.record("the holder's session still held its marker after 10 s: \(sessions)")
    }

    @Test func withoutAnInjectedClockTheDatabaseClockDecidesExpiry() async throws {
        let fixture = try StoreFixture(.postgres)
        let store = try await open(fixture)
        let lease = try await store.acquireLeases(regions: ["eu-west"], holder: alice, run: nil, ttl: .milliseconds(1))
        let databaseNow = try fixture.server!.psql(fixture.database!, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
        #expect(abs((Int64(databaseNow) ?? 0) - lease[0].acquiredAt.rawValue) < 60_000)
        #expect(lease[0].expiresAt == lease[0].acquiredAt.adding(.milliseconds(1)))
        // Same session, so the holder counts as connected: only the database clock's expiry frees it.
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await store.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60)).first?.holder == bob)
        await store.close()
    }

    @Test func aSQLiteStoreCopiesInWithItsAuditChainAndTheTargetMustBeEmpty() async throws {
        let source = try StoreFixture(.sqlite)
        let clock = ManualClock()
        let sqlite = try await source.open(clock: clock)
        let apply = try await startedRun(sqlite, owner: alice, regions: ["eu-west", "us-east"])
        let step = try await sqlite.beginStep(StepStart(run: apply.id, region: "eu-west", host: "eu-1", step: "write app.yaml", detail: JSONDetail(["path": "app.yaml"])))
        _ = try await sqlite.finishStep(step, outcome: .ok, detail: .empty)
        _ = try await sqlite.beginStep(StepStart(run: apply.id, region: "us-east", host: "us-1", step: "restart inference"))
        _ = try await sqlite.recordManifest(run: apply.id, region: "eu-west", host: "eu-1", manifest: Data("{\"revision\":1}".utf8))
        _ = try await sqlite.acquireLeases(regions: ["eu-west"], holder: alice, run: apply.id, ttl: .seconds(600))
        _ = try await sqlite.finishRun(apply.id, outcome: .succeeded, exitCode: 0, summary: "ok")
        let drift = try await sqlite.startRun(RunStart(kind: .drift, owner: bob, regions: ["eu-west"]))
        _ = try await sqlite.recordDrift(run: drift.id, reports: [
            HostDriftReport(region: "eu-west", host: "eu-1", status: .examined(findings: [DriftObservation(kind: "fileChanged", subject: "app.yaml")])),
            HostDriftReport(region: "eu-west", host: "eu-2", status: .unreachable(reason: "timed out")),
        ])
        _ = try await sqlite.forceReleaseLease(region: "us-east", by: "bob@ci-3", reason: "test")
        let rollout = try await sqlite.startRollout(region: "eu-west", component: "inference",
                                                    RolloutUpdate(run: apply.id, phase: "installing", terminal: false, record: Data("{}".utf8), effect: "install", actor: alice.actor))
        _ = try await sqlite.recordRolloutTransition(rollout.id, RolloutUpdate(run: apply.id, phase: "shifting:0", terminal: false, record: Data("{}".utf8), effect: "set weight 10", actor: alice.actor))
        _ = try await sqlite.requestRolloutCommand(subject: "eu-west", command: "promote", actor: bob.actor)
        let snapshot = try await sqlite.exportSnapshot()
        #expect(snapshot.audit.count == 4 && snapshot.driftChecks.count == 2 && snapshot.sightings.count == 1)
        #expect(snapshot.rollouts.count == 1 && snapshot.rolloutTransitions.count == 2 && snapshot.rolloutCommands.count == 1)

        let target = try StoreFixture(.postgres)
        let postgres = try await open(target, clock: clock)
        try await postgres.importSnapshot(snapshot, replacing: false)
        #expect(try await postgres.exportSnapshot() == snapshot)
        #expect(try await postgres.verifyAudit(anchor: snapshot.auditHead) == .intact(entries: 4, head: snapshot.auditHead))
        #expect(try await postgres.openDriftFindings(region: "eu-west").map(\.subject) == ["app.yaml"])
        // The copied rollout is still the unfinished one, and its command still waits.
        await #expect(throws: StateStoreError.rolloutInProgress(snapshot.rollouts[0])) {
            _ = try await postgres.startRollout(region: "eu-west", component: "inference",
                                                RolloutUpdate(run: nil, phase: "installing", terminal: false, record: Data("{}".utf8), effect: "install", actor: bob.actor))
        }

        // Copied once; a second copy is refused unless it replaces.
        let refusal = await #expect(throws: StateStoreError.self) { try await postgres.importSnapshot(snapshot, replacing: false) }
        guard case .targetNotEmpty(_, let counts)? = refusal else { Issue.record("expected targetNotEmpty, got \(String(describing: refusal))"); return }
        #expect(counts["runs"] == 2)
        #expect(refusal?.description.contains("--force") == true)
        try await postgres.importSnapshot(snapshot, replacing: true)
        #expect(try await postgres.exportSnapshot() == snapshot)

        // New records continue after the copied ids and chain onto the copied head.
        let next = try await startedRun(postgres, owner: bob)
        #expect(next.id.rawValue == drift.id.rawValue + 1)
        let nextRollout = try await postgres.startRollout(region: "us-east", component: "inference",
                                                          RolloutUpdate(run: next.id, phase: "installing", terminal: false, record: Data("{}".utf8), effect: "install", actor: bob.actor))
        #expect(nextRollout.id.rawValue == rollout.id.rawValue + 1)
        _ = try await postgres.appendAudit(AuditRecord(actor: "bob@ci-3", action: "apply", subject: "eu-west"))
        #expect(try await postgres.verifyAudit(anchor: snapshot.auditHead).isIntact)
        // The copied lease has no session: it is judged by expiry alone.
        await #expect(throws: StateStoreError.self) {
            _ = try await postgres.acquireLeases(regions: ["eu-west"], holder: bob, run: nil, ttl: .seconds(60))
        }
        await postgres.close()
    }

    @Test func anUnreachableServerIsNamedWithoutItsPassword() async throws {
        let server = try TestPostgresServer.shared()
        // A port nothing listens on, on the server's own loopback address.
        let url = try PostgresURL.parse("postgresql://meridian:hunter2@\(server.address):\(server.port + 500)/nothing?sslmode=disable&connect_timeout=5").get()
        let error = await #expect(throws: StateStoreError.self) { _ = try await StateStores.open(.postgres(url), environment: [:]) }
        let message = error?.description ?? ""
        #expect(message.contains("cannot reach the state database postgresql://meridian:***@\(server.address):\(server.port + 500)/nothing"), "\(message)")
        #expect(!message.contains("hunter2"))
        #expect(message.contains("refused"), "\(message)")
    }

    @Test func aTransactionPoolingProxyIsRefusedASessionPoolIsNot() async throws {
        let server = try TestPostgresServer.shared()
        let database = try server.createDatabase(prefix: "bouncer")
        let transactionPort = try server.startPgBouncer(mode: "transaction")
        let url = try PostgresURL.parse("postgresql://meridian@\(server.address):\(transactionPort)/\(database)?sslmode=disable").get()
        let error = await #expect(throws: StateStoreError.self) { _ = try await StateStores.open(.postgres(url), environment: [:]) }
        guard case .sessionNotStable? = error else { Issue.record("expected sessionNotStable, got \(String(describing: error))"); return }
        #expect(error?.description.contains("PgBouncer") == true)

        let sessionPort = try server.startPgBouncer(mode: "session")
        let direct = try PostgresURL.parse("postgresql://meridian@\(server.address):\(sessionPort)/\(database)?sslmode=disable").get()
        let store = try await StateStores.open(.postgres(direct), environment: [:])
        #expect(try await store.verifyAudit(anchor: nil).isIntact)
        await (store as? PostgresStateStore)?.close()
    }

    @Test func aNewerSchemaIsRefused() async throws {
        let fixture = try StoreFixture(.postgres)
        let store = try await open(fixture)
        #expect(try await store.appliedMigrations() == ["v1", "v2", "v3"])
        await store.close()
        try fixture.server!.psql(fixture.database!, "INSERT INTO meridian_migrations (version) VALUES ('v99')")
        let error = await #expect(throws: StateStoreError.self) { _ = try await fixture.open() }
        #expect(error == .newerSchema(path: fixture.location.description, unknownMigrations: ["v99"]))
    }

    /// A database made before rollouts existed (schema v2) gains their tables and keeps its data.
    @Test func aDatabaseFromBeforeRolloutsIsMigrated() async throws {
        let fixture = try StoreFixture(.postgres)
        let store = try await open(fixture)
        let run = try await startedRun(store)
        await store.close()
        try fixture.server!.psql(fixture.database!, "DROP TABLE rollout_commands, rollout_transitions, rollouts; DELETE FROM meridian_migrations WHERE version = 'v3'")
        let reopened = try await open(fixture)
        #expect(try await reopened.appliedMigrations() == ["v1", "v2", "v3"])
        #expect(try await reopened.run(run.id)?.owner == alice)
        let rollout = try await reopened.startRollout(region: "eu-west", component: "inference",
                                                      RolloutUpdate(run: run.id, phase: "installing", terminal: false, record: Data("{}".utf8), effect: "install", actor: alice.actor))
        #expect(try await reopened.rolloutTransitions(rollout.id).map(\.toPhase) == ["installing"])
        await reopened.close()
    }

    @Test func concurrentFirstOpensMigrateOnce() async throws {
        let fixture = try StoreFixture(.postgres)
        let stores = try await withThrowingTaskGroup(of: (any StateStore).self) { group in
            for _ in 0..<6 { group.addTask { try await fixture.open() } }
            var stores: [any StateStore] = []
            for try await store in group { stores.append(store) }
            return stores
        }
        #expect(stores.count == 6)
        #expect(try fixture.server!.psql(fixture.database!, "SELECT count(*) FROM meridian_migrations") == "3")
    }
}

@Suite("PostgreSQL URLs and logins")
struct PostgresURLTests {
    @Test func partsAreReadAndThePasswordNeverShows() throws {
        let url = try PostgresURL.parse("postgresql://ops:p%40ss@db.example:6432/meridian?sslmode=require&connect_timeout=3").get()
        #expect(url.user == "ops" && url.password == "p@ss" && url.host == "db.example" && url.port == 6432)
        #expect(url.database == "meridian" && url.sslMode == .require && url.connectTimeoutSeconds == 3)
        #expect(url.redacted == "postgresql://ops:***@db.example:6432/meridian?sslmode=require")
        let socket = try PostgresURL.parse("postgres://ops@/meridian?host=/run/postgresql").get()
        #expect(socket.socketFolder == "/run/postgresql" && socket.host == nil)
    }

    @Test func badURLsSayWhat() {
        #expect(PostgresURL.parse("postgresql://ops@db/x?sslmode=maybe") == .failure(.badParameter(name: "sslmode", value: "maybe", expected: "disable, prefer or require")))
        #expect(PostgresURL.parse("postgresql://ops@db/x?pool=3") == .failure(.unknownParameter("pool")))
        #expect(PostgresURL.parse("postgresql:///x") == .failure(.noHost))
        do {
            _ = try StateStoreLocation.parse("postgresql://ops:secret@db/x?pool=1", relativeTo: URL(fileURLWithPath: "/"))
            Issue.record("expected a refusal")
        } catch {
            #expect(!"\(error)".contains("secret"), "\(error)")
            #expect("\(error)".contains("postgresql://ops:***@db/x"), "\(error)")
        }
    }

    @Test func thePasswordComesFromTheSecretThenTheEnvironmentThenThePasswordFile() throws {
        let folder = try TemporaryFolder()
        let file = folder.path + "/pgpass"
        try "# comment\nother:5432:*:ops:wrong\ndb.example:6432:meri\\:dian:ops:from-file\n*:*:*:*:fallback\n".write(toFile: file, atomically: true, encoding: .utf8)
        let url = try PostgresURL.parse("postgresql://ops@db.example:6432/meri:dian").get()
        #expect(PostgresLogin(url: url, secretPassword: "from-secret", environment: ["PGPASSWORD": "env", "PGPASSFILE": file]).password == "from-secret")
        #expect(PostgresLogin(url: url, environment: ["PGPASSWORD": "env", "PGPASSFILE": file]).password == "env")
        #expect(PostgresLogin(url: url, environment: ["PGPASSFILE": file]).password == "from-file")
        let elsewhere = try PostgresURL.parse("postgresql://ops@db2:5432/x").get()
        #expect(PostgresLogin(url: elsewhere, environment: ["PGPASSFILE": file]).password == "fallback")
        let bare = try PostgresURL.parse("postgresql://db2/x").get()
        #expect(PostgresLogin(url: bare, environment: ["PGUSER": "runner", "PGPASSFILE": "/nonexistent"]).user == "runner")
        #expect(PostgresLogin(url: bare, environment: ["PGPASSFILE": "/nonexistent"]).password == nil)
    }
}
