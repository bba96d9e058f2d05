import Foundation
import MeridianCLI
import MeridianState
import MeridianTestHosts
import Testing

/// Logging (`--verbose`, `--log-level`), `apply --format json` and
/// `--version`: the built binary against real sshd test hosts on
/// 127.0.150.x–127.0.152.x.
@Suite(.serialized) struct ApplyLoggingTests {
    static let secret = "s3cret-value"

    @Test func logsNameEachConnectionAndCommandAndNeverTheSecret() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.150")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19500)
        defer { fleet.tearDown() }
        let host = cluster.hosts[0]

        let quiet = try fleet.meridian(["plan"])
        #expect(quiet.status == 0, "\(quiet.stdout)\n\(quiet.stderr)")
        #expect(!quiet.stderr.contains("meridian.ssh"), "no log lines without --verbose: \(quiet.stderr)")

        let apply = try fleet.meridian(["apply", "--auto-approve", "--log-level", "trace"])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        // The secret really went to the host, so a leak would have had something to leak.
        #expect(try String(contentsOfFile: host.root + "/config/inference-north/secret.yaml", encoding: .utf8) == "api_key: \(Self.secret)\n")
        #expect(!apply.stderr.contains(Self.secret), "the secret's value is in a log line")
        #expect(!apply.stdout.contains(Self.secret))

        let lines = apply.stderr.split(separator: "\n").map(String.init)
        let connected = lines.filter { $0.contains("debug meridian.ssh: ssh connected") }
        #expect(!connected.isEmpty, "\(apply.stderr)")
        for line in connected {
            #expect(line.contains("region=north") && line.contains("host=host1") && line.contains("address=\(host.address):\(host.port)"), "\(line)")
            #expect(line.range(of: #"handshake_ms=[0-9]+\.[0-9]"#, options: .regularExpression) != nil, "\(line)")
        }
        let commands = lines.filter { $0.contains("debug meridian.ssh: remote command ") }
        #expect(commands.count >= 2, "\(apply.stderr)")
        for line in commands {
            #expect(line.contains("region=north") && line.contains("host=host1"), "\(line)")
            #expect(line.range(of: #" exit=(-?[0-9]+|"signal [A-Z]+") "#, options: .regularExpression) != nil, "\(line)")
            #expect(line.range(of: #" ms=[0-9]+\.[0-9] "#, options: .regularExpression) != nil, "\(line)")
        }
        // Files go in one write batch: its command names the paths, its content travels on stdin (only its size is logged).
        #expect(lines.contains { $0.contains("debug meridian.ssh: remote command ") && $0.contains("stdin_bytes=") })
        #expect(lines.contains { $0.contains("trace meridian.ssh: remote command text") })

        // --verbose is debug: the command lines, not their whole text.
        let verbose = try fleet.meridian(["drift", "--verbose"])
        #expect(verbose.status == 0, "\(verbose.stdout)\n\(verbose.stderr)")
        #expect(verbose.stderr.contains("debug meridian.ssh: remote command "))
        #expect(!verbose.stderr.contains("trace meridian.ssh"))
        #expect(!verbose.stderr.contains(Self.secret))

        let bad = try fleet.meridian(["plan", "--log-level", "loud"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("log-level"), "\(bad.stderr)")
    }

    /// Apply plans from the observation that takes the locks: one login and
    /// one observation per host, never a second look before the changes.
    @Test func applyObservesEachHostOnceAndUnderItsLock() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.152")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19510)
        defer { fleet.tearDown() }
        #expect(try fleet.meridian(["apply", "--auto-approve"]).status == 0)
        func commands(_ run: CLIRun) -> [String] {
            run.stderr.split(separator: "\n").map(String.init).filter { $0.contains("debug meridian.ssh: remote command ") }
        }
        func logins(_ run: CLIRun) -> Int {
            run.stderr.split(separator: "\n").filter { $0.contains("debug meridian.ssh: ssh connected") }.count
        }

        // Nothing to change: the locked observation and the lock's release, and the run says so.
        let idle = try fleet.meridian(["apply", "--auto-approve", "--verbose"])
        #expect(idle.status == 0, "\(idle.stdout)\n\(idle.stderr)")
        #expect(logins(idle) == 1 && commands(idle).count == 2, "\(idle.stderr)")
        #expect(!FileManager.default.fileExists(atPath: cluster.hosts[0].root + "/state/lock"))
        let store = try await SQLiteStateStore.open(path: fleet.statePath)
        let recorded = try #require(try await store.recentRuns(limit: 1).first)
        #expect(recorded.kind == .apply && recorded.outcome == .succeeded && recorded.summary == "nothing to change" && recorded.planHash != nil, "\(recorded)")

        // A change: still one observation (the plan's, with the lock), then the steps.
        try fleet.writeRegion(0, "north", maxTokens: 321, version: nil)
        let changed = try fleet.meridian(["apply", "--auto-approve", "--verbose"])
        #expect(changed.status == 0, "\(changed.stdout)\n\(changed.stderr)")
        let observations = commands(changed).filter { $0.contains(#"command="sh -s""#) }
        #expect(logins(changed) == 1 && observations.count == 1, "\(changed.stderr)")
        #expect(try String(contentsOfFile: cluster.hosts[0].root + "/config/inference-north/server.yaml", encoding: .utf8).contains("max_tokens: 321"))
        #expect(!FileManager.default.fileExists(atPath: cluster.hosts[0].root + "/state/lock"))
    }

    struct Event {
        var name: String
        var fields: [String: Any]
    }

    func events(_ run: CLIRun) throws -> [Event] {
        try run.stdout.split(separator: "\n").map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
            #expect(object["time"] is String, "\(line)")
            return Event(name: try #require(object["event"] as? String, "no event in \(line)"), fields: object)
        }
    }

    @Test func applyFormatJSONWritesOneEventPerLine() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.151")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19520)
        defer { fleet.tearDown() }

        let unconfirmed = try fleet.meridian(["apply", "--format", "json"])
        #expect(unconfirmed.status == 64, "\(unconfirmed.stdout)\n\(unconfirmed.stderr)")
        #expect(unconfirmed.stderr.contains("--auto-approve"))

        let planFile = fleet.directory.appendingPathComponent("plan.json").path
        #expect(try fleet.meridian(["plan", "--out", planFile]).status == 0)
        let apply = try fleet.meridian(["apply", planFile, "--format", "json"])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        let stream = try events(apply)
        #expect(stream.first?.name == "plan")
        #expect(stream.first?.fields["has_changes"] as? Bool == true)
        #expect(stream.first?.fields["format_version"] as? Int == 1)
        #expect(stream.last?.name == "apply_finished")
        #expect(stream.last?.fields["exit_code"] as? Int == 0)
        #expect(stream.filter { $0.name == "apply_finished" || $0.name == "apply_refused" }.count == 1)
        #expect(stream.contains { $0.name == "host_observed" && $0.fields["host"] as? String == "host1" })
        let started = stream.filter { $0.name == "step_started" }.compactMap { $0.fields["step"] as? String }
        let done = stream.filter { $0.name == "step_done" }.compactMap { $0.fields["step"] as? String }
        #expect(!started.isEmpty)
        #expect(started == done, "every step that started finished: \(started) vs \(done)")
        #expect(started.contains { $0.contains("secret.yaml") })
        #expect(stream.contains { $0.name == "host_done" && $0.fields["region"] as? String == "north" })
        let summary = try #require(stream.first { $0.name == "region_summary" })
        #expect(summary.fields["result"] as? String == "applied")
        #expect(summary.fields["hosts_changed"] as? Int == 1)
        #expect(!apply.stdout.contains(Self.secret))

        // The same plan again is stale: refused, and the stream still ends with one closing line.
        let again = try fleet.meridian(["apply", planFile, "--format", "json"])
        #expect(again.status == 1)
        let refused = try events(again)
        #expect(refused.last?.name == "apply_refused")
        #expect((refused.last?.fields["error"] as? String)?.contains("stale") == true, "\(again.stdout)")
        #expect(refused.last?.fields["exit_code"] as? Int == 1)

        // Nothing to change: no run, one closing line.
        let nothing = try fleet.meridian(["apply", "--auto-approve", "--format", "json"])
        #expect(nothing.status == 0, "\(nothing.stdout)\n\(nothing.stderr)")
        let quiet = try events(nothing)
        #expect(quiet.map(\.name) == ["plan", "apply_finished"])
        #expect(quiet.last?.fields["run"] is NSNull)
    }

    @Test func versionIsPrinted() throws {
        let run = try CLI.run(["--version"])
        #expect(run.status == 0)
        #expect(run.stdout == MeridianVersion.current + "\n")
    }
}
