import Foundation
import MeridianTestHosts
import Testing

/// The built binary with its state in PostgreSQL: controllers racing for a
/// region, the database stopped mid-apply, a SQLite store moved over, and an
/// unreachable server — real sshd test hosts on 127.0.146.x and real PostgreSQL servers.
@Suite(.serialized) struct PostgresStateCLITests {
    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    func meridian(_ fleet: ApplyTestFleet, _ arguments: [String], state: String) throws -> CLIRun {
        try CLI.run(arguments + ["--fleet", fleet.path], environment: ["MERIDIAN_TEST_API_KEY": "s3cret-value", "MERIDIAN_STATE": state])
    }

    func start(_ fleet: ApplyTestFleet, _ arguments: [String], state: String, output: URL) throws -> Process {
        try CLI.start(arguments + ["--fleet", fleet.path], environment: ["MERIDIAN_TEST_API_KEY": "s3cret-value", "MERIDIAN_STATE": state], output: output)
    }

    @Test func eightControllersRacingForOneRegionLetExactlyOneApply() async throws {
        let server = try TestPostgresServer.shared()
        let state = server.url(database: try server.createDatabase(prefix: "race"))
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.146", firstOctet: 1)
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19400)
        defer { fleet.tearDown() }

        let outputs = (0..<8).map { fleet.directory.appendingPathComponent("race-\($0).log") }
        let processes = try outputs.map { try start(fleet, ["apply", "--auto-approve"], state: state, output: $0) }
        for process in processes { process.waitUntilExit() }
        let logs = outputs.map { read($0.path) ?? "" }
        let statuses = processes.map(\.terminationStatus)
        let applied = logs.filter { $0.contains("north: applied, 1 of 1 host changed") }
        #expect(applied.count == 1, "\(zip(statuses, logs).map { "exit \($0)\n\($1)" }.joined(separator: "\n---\n"))")
        #expect(statuses.filter { $0 == 0 }.count == 1)
        #expect(statuses.filter { $0 == 4 }.count == 7, "\(statuses)")
        for (status, log) in zip(statuses, logs) where status == 4 {
            // The holder: user, host, pid and run.
            #expect(log.contains("region north is held by ") && log.contains(" pid ") && log.contains("(run "), "\(log)")
        }
        let verify = try meridian(fleet, ["audit", "verify"], state: state)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let clean = try meridian(fleet, ["plan", "--detailed-exitcode"], state: state)
        #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
    }

    @Test func postgresStoppedMidApplyStopsAtAStepAndTheNextApplyConverges() async throws {
        let server = try TestPostgresServer(addressOctet: 3)
        defer { server.stop() }
        let state = server.url(database: try server.createDatabase(prefix: "fault"))
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.146", firstOctet: 2)
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19410)
        defer { fleet.tearDown() }
        // Version 2.0.0 listens only 4 s after it starts, so the upgrade's
        // health check keeps the apply running however loaded the machine is.
        try fleet.setPlatform("1.0.0", startDelay: "2.0.0=4")
        let root = cluster.hosts[0].root
        let first = try meridian(fleet, ["apply", "--auto-approve"], state: state)
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        let configFile = root + "/config/inference-north/server.yaml"
        let old = read(configFile)
        let database = try #require(state.split(separator: "/").last?.split(separator: "?").first.map(String.init))
        
        try fleet.writeRegion(0, "north", maxTokens: 777, version: "2.0.0")
        let log = fleet.directory.appendingPathComponent("fault.log")
        let process = try start(fleet, ["apply", "--auto-approve"], state: state, output: log)
        // The store is stopped while the run waits for 2.0.0 to listen.
        let reached = CLI.waitForLines(containing: "start inference-north (blue) — ok", in: log, of: process)
        try server.halt(mode: "fast")
        process.waitUntilExit()
        let output = read(log.path) ?? ""
        #expect(reached, "the apply ended before starting 2.0.0: \(output)")
        #expect(process.terminationStatus == 1, "\(output)")
        #expect(output.contains("lost the connection to the state database postgresql://meridian@\(server.address):\(server.port)/\(database)"), "\(output)")

        // Whole files only.
        let now = read(configFile)
        #expect(now == old || now == "region: north\nport: \(fleet.port(0))\nmax_tokens: 777\n")
        for version in ["1.0.0", "2.0.0"] {
            let release = root + "/releases/inference-north/\(version)"
            if FileManager.default.fileExists(atPath: release) {
                #expect(read(release + "/VERSION") == version + "\n")
            }
        }

        // While it is down: a clear error, exit 1, no password.
        let down = try meridian(fleet, ["status"], state: state)
        #expect(down.status == 1)
        #expect(down.stderr.contains("cannot reach the state database postgresql://meridian@\(server.address)"), "\(down.stderr)")

        try server.start()
        let converge = try meridian(fleet, ["apply", "--auto-approve"], state: state)
        #expect(converge.status == 0, "\(converge.stdout)\n\(converge.stderr)")
        #expect(read(configFile) == "region: north\nport: \(fleet.port(0))\nmax_tokens: 777\n")
        let clean = try meridian(fleet, ["plan", "--detailed-exitcode"], state: state)
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")
        let verify = try meridian(fleet, ["audit", "verify"], state: state)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(try server.psql(database, "SELECT count(*) FROM runs WHERE outcome IS NULL") == "0")
    }

    @Test func stateMigrateMovesTheFleetsSQLiteStoreIntoPostgres() async throws {
        let server = try TestPostgresServer.shared()
        let state = server.url(database: try server.createDatabase(prefix: "migrate"))
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.146", firstOctet: 3)
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19420)
        defer { fleet.tearDown() }
        let apply = try fleet.meridian(["apply", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        _ = try fleet.meridian(["unlock", "north", "--reason", "so the log has two entries"])

        let migrate = try fleet.meridian(["state", "migrate", "--to", state])
        #expect(migrate.status == 0, "\(migrate.stdout)\n\(migrate.stderr)")
        #expect(migrate.stdout.contains("audit_log: 2 copied"), "\(migrate.stdout)")
        #expect(migrate.stdout.contains("audit log intact: 2 entries"), "\(migrate.stdout)")
        let again = try fleet.meridian(["state", "migrate", "--to", state])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already holds records") && again.stderr.contains("--force"), "\(again.stderr)")
        let forced = try fleet.meridian(["state", "migrate", "--to", state, "--force"])
        #expect(forced.status == 0, "\(forced.stdout)\n\(forced.stderr)")

        // The copy carries on where the file left off.
        let verify = try meridian(fleet, ["audit", "verify"], state: state)
        #expect(verify.status == 0 && verify.stdout.contains("2 entries"), "\(verify.stdout)\(verify.stderr)")
        let status = try meridian(fleet, ["status"], state: state)
        #expect(status.status == 0 && !status.stdout.contains("never"), "\(status.stdout)\(status.stderr)")
        let clean = try meridian(fleet, ["plan", "--detailed-exitcode"], state: state)
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")

        // docs/operations.md: a pg_dump of the store, restored into a new database, verifies and shows the same status.
        let database = String(state.split(separator: "/").last?.split(separator: "?").first ?? "")
        let dump = fleet.directory.appendingPathComponent("state.dump").path
        let connection = ["-h", server.address, "-p", String(server.port), "-U", server.superuser]
        #expect(try Self.tool("/usr/bin/pg_dump", ["-Fc", "-f", dump] + connection + [database]) == 0, "pg_dump failed")
        let restoredDatabase = try server.createDatabase(prefix: "restored")
        #expect(try Self.tool("/usr/bin/pg_restore", ["--no-owner", "-d", restoredDatabase] + connection + [dump]) == 0, "pg_restore failed")
        let restored = server.url(database: restoredDatabase)
        let restoredVerify = try meridian(fleet, ["audit", "verify"], state: restored)
        #expect(restoredVerify.status == 0 && restoredVerify.stdout.contains("2 entries"), "\(restoredVerify.stdout)\(restoredVerify.stderr)")
        let before = try meridian(fleet, ["status", "--format", "json"], state: state)
        let after = try meridian(fleet, ["status", "--format", "json"], state: restored)
        let withoutTime = { (text: String) in text.split(separator: "\n").filter { !$0.contains("\"generated_at\"") } }
        #expect(after.status == 0 && withoutTime(after.stdout) == withoutTime(before.stdout), "\(after.stdout)\(after.stderr)")
    }

    /// Runs a PostgreSQL client tool; its exit status.
    static func tool(_ path: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// The rollout engine on the shared store, and a controller SIGKILLed in
    /// the middle of it: the next apply does not wait out the lease's 30
    /// minutes; it marks the dead run interrupted and frees its lease, on the
    /// record, and carries the rollout on; then a rollback on command. Every
    /// transition is journaled with its audit entry.
    @Test func aRolloutWhoseControllerIsKilledIsCarriedOnInPostgres() async throws {
        let server = try TestPostgresServer.shared()
        let database = try server.createDatabase(prefix: "rollout")
        let state = server.url(database: database)
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.146", firstOctet: 5)
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19440)
        defer { fleet.tearDown() }
        let component = fleet.component(0)
        try fleet.setPlatform("1.0.0", strategy: "blue-green", gracePeriod: "20s")
        let first = try meridian(fleet, ["apply", "--auto-approve"], state: state)
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")

        // A grace period long enough to be seen by polling on a loaded machine.
        try fleet.setPlatform("2.0.0", strategy: "blue-green", gracePeriod: "8s")
        let log = fleet.directory.appendingPathComponent("killed.log")
        let process = try start(fleet, ["apply", "--auto-approve"], state: state, output: log)
        var switched = false
        for _ in 0..<2400 where process.isRunning {
            if (try? server.psql(database, "SELECT count(*) FROM rollouts WHERE phase = 'switched'")) == "1" { switched = true; break }
            try await Task.sleep(for: .milliseconds(25))
        }
        // The lease names the holder's database session, whose marker lock says it is still there.
        let holderGone = """
            SELECT count(*) FROM leases l WHERE l.region = 'north' AND l.session_pid IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM pg_locks p WHERE p.locktype = 'advisory' AND p.pid = l.session_pid AND p.classid = \(0x4D52_4432)::int8::oid)
            """
        #expect(try server.psql(database, holderGone) == "0")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(switched, "the rollout never reached its grace period: \(read(log.path) ?? "")")
        // SIGKILLed: the kernel closes its socket, the server ends its session, and the lease is seen as free.
        var freed = false
        for _ in 0..<200 {
            if try server.psql(database, holderGone) == "1" { freed = true; break }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(freed, "the killed holder's session still held its marker after 200 polls")
        let killedRun = try server.psql(database, "SELECT max(run_id) FROM rollouts")

        let resumed = try meridian(fleet, ["apply", "--auto-approve"], state: state)
        #expect(resumed.status == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        #expect(resumed.stdout.contains("\(component) 1.0.0 → 2.0.0: promoted"), "\(resumed.stdout)")
        // On the record: the killed run interrupted, its lease released for the next.
        #expect(try server.psql(database, "SELECT outcome FROM runs WHERE id = \(killedRun)") == "interrupted")
        #expect(try server.psql(database, "SELECT count(*) FROM audit_log WHERE action = 'run.interrupted' AND subject = 'run \(killedRun)'") == "1")
        let release = try server.psql(database, "SELECT detail FROM audit_log WHERE action = 'lease.force-release' AND subject = 'north'")
        #expect(release.contains("held by interrupted run \(killedRun)"), "\(release)")
        let clean = try meridian(fleet, ["plan", "--detailed-exitcode"], state: state)
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")

        let status = try meridian(fleet, ["rollout", "status", "north", "--format", "json"], state: state)
        #expect(status.status == 0 && status.stdout.contains("\"phase\" : \"promoted\""), "\(status.stdout)\(status.stderr)")
        let back = try meridian(fleet, ["rollout", "rollback", "north"], state: state)
        #expect(back.status == 0, "\(back.stdout)\n\(back.stderr)")
        #expect(back.stdout.contains("\(component) 2.0.0 → 1.0.0: promoted"), "\(back.stdout)")

        // Every transition row has its audit entry, and nothing is left unfinished.
        let transitions = Int(try server.psql(database, "SELECT count(*) FROM rollout_transitions")) ?? 0
        #expect(transitions >= 8, "\(transitions) transitions")
        #expect(try server.psql(database, "SELECT count(*) FROM audit_log WHERE action = 'rollout.transition'") == String(transitions))
        #expect(try server.psql(database, "SELECT count(*) FROM rollouts WHERE NOT terminal") == "0")
        let verify = try meridian(fleet, ["audit", "verify"], state: state)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test func theFleetsStateSettingIsUsedAndAClearPasswordIsRefused() throws {
        let server = try TestPostgresServer.shared()
        let database = try server.createDatabase(prefix: "setting")
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.146", firstOctet: 4)
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19430)
        defer { fleet.tearDown() }
        let settings = fleet.directory.appendingPathComponent("meridian.yaml")
        let original = try String(contentsOf: settings, encoding: .utf8)
        try (original + "\nstate:\n  url: postgresql://meridian@\(server.address):\(server.port)/\(database)?sslmode=disable\n  password: env:MERIDIAN_TEST_PG_PASSWORD\n")
            .write(to: settings, atomically: true, encoding: .utf8)
        // The secret is unset: the store says so and exits 1.
        let unset = try fleet.meridian(["audit", "verify"])
        #expect(unset.status == 1 && unset.stderr.contains("MERIDIAN_TEST_PG_PASSWORD"), "\(unset.stderr)")
        let verify = try CLI.run(["audit", "verify", "--fleet", fleet.path], environment: ["MERIDIAN_TEST_PG_PASSWORD": "unused-with-trust"])
        #expect(verify.status == 0 && verify.stdout.contains("0 entries"), "\(verify.stdout)\(verify.stderr)")
        #expect(try server.psql(database, "SELECT count(*) FROM meridian_migrations") == "3")

        try (original + "\nstate: postgresql://meridian:hunter2@\(server.address):\(server.port)/\(database)\n").write(to: settings, atomically: true, encoding: .utf8)
        let validate = try fleet.meridian(["validate"])
        #expect(validate.status == 65)
        #expect(validate.stdout.contains("password in clear") || validate.stderr.contains("password in clear"), "\(validate.stdout)\(validate.stderr)")
        #expect(!(validate.stdout + validate.stderr).contains("hunter2"))
    }
}
