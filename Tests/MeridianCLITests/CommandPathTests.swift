import Foundation
import Testing
import MeridianBasics
import MeridianState
import MeridianTestHosts

/// Every command and documented path through the built binary, against real
/// sshd test hosts on 127.0.86.x–127.0.88.x. Each test shares one cluster
/// between the paths it walks, to keep the suite short.
@Suite(.serialized) struct CommandPathTests {
    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// Makes every host's login shell record, in a folder the hosts share
    /// (they run on this machine), how many remote commands run at once:
    /// each waits (bounded) until `target` are running, stays half a second,
    /// and appends the most it saw. `nil` removes the probe.
    func probeConcurrency(_ cluster: TestHostCluster, target: Int?, in shared: String) throws {
        // A remote command of the previous run may still be finishing.
        let quiet = Poll.blockingUntil { ((try? FileManager.default.contentsOfDirectory(atPath: shared + "/in")) ?? []).isEmpty }
        #expect(quiet, "remote commands of an earlier run are still running")
        try? FileManager.default.removeItem(atPath: shared)
        for host in cluster.hosts {
            let rc = host.home + "/.bashrc"
            guard let target else { try? FileManager.default.removeItem(atPath: rc); continue }
            try FileManager.default.createDirectory(atPath: shared + "/in", withIntermediateDirectories: true)
            try """
            d='\(shared)'; me="\(host.name).$$"
            : > "$d/in/$me"; trap 'rm -f "$d/in/$me"' EXIT
            i=0; full=0; most=0
            while :; do
              n=$(ls "$d/in" | wc -l); [ "$n" -gt "$most" ] && most=$n
              if [ "$n" -ge \(target) ]; then full=$((full + 1)); [ $full -ge 10 ] && break; fi
              i=$((i + 1)); [ $i -le 200 ] || break
              sleep 0.05
            done
            echo "$most" >> "$d/seen"

            """.write(toFile: rc, atomically: true, encoding: .utf8)
        }
    }

    func seen(_ shared: String) -> [Int] {
        (read(shared + "/seen") ?? "").split(separator: "\n").compactMap { Int($0) }
    }

    @Test func regionsParallelismAuditAndUnlock() async throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.86")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north", "south"], portBase: 18960)
        defer { fleet.tearDown() }
        let north = cluster.hosts[0], south = cluster.hosts[1]

        // --parallelism: hosts observed one at a time, or two at once.
        let shared = cluster.directory + "/concurrency"
        try probeConcurrency(cluster, target: 1, in: shared)
        let one = try fleet.meridian(["plan", "--parallelism", "1"])
        #expect(one.status == 0, "\(one.stdout)\n\(one.stderr)")
        #expect(seen(shared) == [1, 1], "plan --parallelism 1 ran remote commands at once: \(seen(shared))")
        try probeConcurrency(cluster, target: 2, in: shared)
        let two = try fleet.meridian(["plan", "--parallelism", "2"])
        #expect(two.status == 0, "\(two.stderr)")
        #expect(seen(shared) == [2, 2], "plan --parallelism 2 should observe both hosts at once: \(seen(shared))")
        try probeConcurrency(cluster, target: 1, in: shared)
        let driftOne = try fleet.meridian(["drift", "--parallelism", "1"])
        #expect(seen(shared) == [1, 1], "drift --parallelism 1: \(seen(shared)) \(driftOne.stdout)")
        try probeConcurrency(cluster, target: nil, in: shared)

        // --region on plan, apply, status and drift.
        let plan = try fleet.meridian(["plan", "--region", "north", "--detailed-exitcode"])
        #expect(plan.status == 2, "\(plan.stderr)")
        #expect(plan.stdout.contains("Region north") && !plan.stdout.contains("Region south"), "\(plan.stdout)")
        let typo = try fleet.meridian(["plan", "--region", "nort"])
        #expect(typo.status == 64)
        #expect(typo.stderr.contains("did you mean \"north\"?"), "\(typo.stderr)")
        let apply = try fleet.meridian(["apply", "--auto-approve", "--region", "north"])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        #expect(apply.stdout.contains("north: applied, 1 of 1 host changed") && !apply.stdout.contains("south:"), "\(apply.stdout)")
        #expect(read(north.root + "/config/inference-north/server.yaml") != nil)
        #expect(!FileManager.default.fileExists(atPath: south.root + "/config"), "--region north changed south")
        let status = try fleet.meridian(["status", "--region", "north"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("inference-north 1.0.0 (blue)") && !status.stdout.contains("south"), "\(status.stdout)")
        try "region: north\nport: 18960\nmax_tokens: 1\n".write(toFile: north.root + "/config/inference-north/server.yaml", atomically: true, encoding: .utf8)
        let drifted = try fleet.meridian(["drift", "--region", "north"])
        #expect(drifted.status == 2, "\(drifted.stdout)\n\(drifted.stderr)")
        #expect(drifted.stdout.contains("file-modified  config/inference-north/server.yaml"), "\(drifted.stdout)")
        let elsewhere = try fleet.meridian(["drift", "--region", "south"])
        #expect(!elsewhere.stdout.contains("file-modified"), "drift --region south looked at north: \(elsewhere.stdout)")

        // audit list and verify, with and without an anchor.
        let list = try fleet.meridian(["audit", "list"])
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains("apply") && list.stdout.contains("north"), "\(list.stdout)")
        let last = try fleet.meridian(["audit", "list", "--last", "1", "--format", "json"])
        let entries = try JSONSerialization.jsonObject(with: Data(last.stdout.utf8)) as? [[String: Any]]
        #expect(entries?.count == 1, "\(last.stdout)")
        let verified = try fleet.meridian(["audit", "verify"])
        #expect(verified.status == 0, "\(verified.stderr)")
        let anchor = try #require(verified.stdout.split(separator: "\n").first { $0.hasPrefix("Record this anchor") }?.split(separator: " ").last.map(String.init))
        #expect(try fleet.meridian(["audit", "verify", "--anchor", anchor]).status == 0)
        let seq = anchor.split(separator: ":")[0]
        let forged = try fleet.meridian(["audit", "verify", "--anchor", "\(seq):\(String(repeating: "0", count: 64))"])
        #expect(forged.status == 1, "a wrong anchor must fail: \(forged.stdout)")
        #expect(try fleet.meridian(["audit", "verify", "--anchor", "not-an-anchor"]).status == 64)

        // unlock: a dead run's lease released by hand, on the record.
        let store = try await SQLiteStateStore.open(path: fleet.statePath)
        _ = try await store.acquireLeases(regions: ["south"], holder: ProcessIdentity(user: "ana", host: "ci-runner-3", pid: 4242), run: nil, ttl: .seconds(600))
        let blocked = try fleet.meridian(["apply", "--auto-approve", "--region", "south"])
        #expect(blocked.status == 4, "\(blocked.stderr)")
        let unlocked = try fleet.meridian(["unlock", "south", "--reason", "its runner is gone"])
        #expect(unlocked.status == 0, "\(unlocked.stderr)")
        #expect(unlocked.stdout.contains("Released south: it was held by ana@ci-runner-3"), "\(unlocked.stdout)")
        #expect(try fleet.meridian(["unlock", "south"]).stdout.contains("south was not locked."))
        #expect(try fleet.meridian(["unlock"]).status == 64)
        let record = try fleet.meridian(["audit", "list", "--last", "5"])
        #expect(record.stdout.contains("its runner is gone"), "\(record.stdout)")
        let after = try fleet.meridian(["apply", "--auto-approve", "--region", "south"])
        #expect(after.status == 0, "\(after.stdout)\n\(after.stderr)")
        #expect(try fleet.meridian(["audit", "verify", "--anchor", anchor]).status == 0, "the chain still extends the anchor")
    }

    @Test func applyRefusesWhatItMustAndFailsAHealthCheckAlone() throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.87")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 18980)
        defer { fleet.tearDown() }
        let host = cluster.hosts[0]
        let server = host.root + "/config/inference-north/server.yaml"

        // An unavailable secret: named, never guessed, nothing written in its place.
        let noSecret = try fleet.meridian(["apply", "--auto-approve"], secret: false)
        #expect(noSecret.status == 1, "\(noSecret.stdout)\n\(noSecret.stderr)")
        #expect((noSecret.stdout + noSecret.stderr).contains("the environment variable MERIDIAN_TEST_API_KEY is not set"), "\(noSecret.stdout)\n\(noSecret.stderr)")
        #expect(!FileManager.default.fileExists(atPath: host.root + "/config/inference-north/secret.yaml"))
        let first = try fleet.meridian(["apply", "--auto-approve"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")

        // Another run's lock on the host: exit 4, nothing changed.
        try fleet.writeRegion(0, "north", maxTokens: 7, version: nil)
        let now = Int(Date().timeIntervalSince1970)
        try "holder=ops@other-runner\nrun=99\npid=1\nstarted=\(now)\nexpires=\(now + 600)\n".write(toFile: host.root + "/state/lock", atomically: true, encoding: .utf8)
        let locked = try fleet.meridian(["apply", "--auto-approve"])
        #expect(locked.status == 4, "\(locked.stdout)\n\(locked.stderr)")
        #expect(locked.stdout.contains("north: LOCKED") && locked.stdout.contains("held by ops@other-runner"), "\(locked.stdout)")
        #expect(read(server)?.contains("max_tokens: 100") == true)
        try FileManager.default.removeItem(atPath: host.root + "/state/lock")

        // A saved plan goes stale when a fleet file changes.
        let planFile = fleet.directory.appendingPathComponent("saved.json").path
        #expect(try fleet.meridian(["plan", "--out", planFile]).status == 0)
        try fleet.writeRegion(0, "north", maxTokens: 8, version: nil)
        let staleFile = try fleet.meridian(["apply", planFile])
        #expect(staleFile.status == 1)
        #expect(staleFile.stderr.contains("the saved plan is stale: fleet files changed since the plan was made: regions/north.yaml"), "\(staleFile.stderr)")

        // … and when the fleet repository's commit changes.
        func git(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            process.arguments = ["-C", fleet.path, "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false"] + arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "git \(arguments)")
        }
        try git(["init", "-q"])
        try git(["add", "-A"])
        try git(["commit", "-qm", "fleet"])
        #expect(try fleet.meridian(["plan", "--out", planFile]).status == 0)
        try git(["commit", "-q", "--allow-empty", "-m", "another"])
        let staleCommit = try fleet.meridian(["apply", planFile])
        #expect(staleCommit.status == 1)
        #expect(staleCommit.stderr.contains("the fleet repository is at"), "\(staleCommit.stderr)")
        #expect(read(server)?.contains("max_tokens: 100") == true, "a stale plan changed the host")
        try FileManager.default.removeItem(at: fleet.directory.appendingPathComponent(".git"))

        // A freeze window refuses plan and apply of a change (validate does not report it).
        let day: TimeInterval = 86_400
        let style = Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!)
        try """
        governance:
          - id: test-freeze
            kind: freeze-window
            from: \(Date().addingTimeInterval(-day).formatted(style))
            to: \(Date().addingTimeInterval(day).formatted(style))
            reason: Test freeze.

        """.write(to: fleet.directory.appendingPathComponent("policies/freeze.yaml"), atomically: true, encoding: .utf8)
        try fleet.writeRegion(0, "north", maxTokens: 9, version: nil, policies: ["residency", "freeze"])
        #expect(try fleet.meridian(["validate"]).status == 0)
        let frozenPlan = try fleet.meridian(["plan", "--out", planFile])
        #expect(frozenPlan.status == 65, "\(frozenPlan.stdout)\n\(frozenPlan.stderr)")
        #expect(frozenPlan.stderr.contains("changes to region north are frozen") && frozenPlan.stderr.contains("Test freeze."), "\(frozenPlan.stderr)")
        let frozenApply = try fleet.meridian(["apply", "--auto-approve"])
        #expect(frozenApply.status == 65, "\(frozenApply.stdout)\n\(frozenApply.stderr)")
        #expect(frozenApply.stderr.contains("changes to region north are frozen"))
        #expect(read(server)?.contains("max_tokens: 100") == true, "a frozen region was changed")
        try FileManager.default.removeItem(at: fleet.directory.appendingPathComponent("policies/freeze.yaml"))
        try fleet.writeRegion(0, "north", maxTokens: 100, version: nil)

        // A failing health check during an upgrade fails the region, with the check named.
        try fleet.setPlatform("2.0.0", health: "/no-such-health")
        let unhealthy = try fleet.meridian(["apply", "--auto-approve"])
        #expect(unhealthy.status == 1, "\(unhealthy.stdout)\n\(unhealthy.stderr)")
        #expect(unhealthy.stdout.contains("north: FAILED"), "\(unhealthy.stdout)")
        #expect(unhealthy.stdout.contains("/no-such-health"), "\(unhealthy.stdout)")
    }

    @Test func driftRemediatesAllAndStopsOnSIGTERMPartWay() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.88")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19000)
        defer { fleet.tearDown() }
        let host = cluster.hosts[0]
        #expect(try fleet.meridian(["apply", "--auto-approve"]).status == 0)

        // --remediate all fixes every remediable kind found.
        let server = host.root + "/config/inference-north/server.yaml"
        let applied = read(server)
        try "region: north\nport: 19000\nmax_tokens: 1\n".write(toFile: server, atomically: true, encoding: .utf8)
        try "{}".write(toFile: host.root + "/governance/bundle.json", atomically: false, encoding: .utf8)
        let found = try fleet.meridian(["drift"])
        #expect(found.status == 2, "\(found.stdout)")
        let fixed = try fleet.meridian(["drift", "--remediate", "all"])
        #expect(fixed.stdout.contains("fixed") && !fixed.stdout.contains("NOT FIXED"), "\(fixed.stdout)\n\(fixed.stderr)")
        #expect(read(server) == applied)
        let clean = try fleet.meridian(["drift"])
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")

        // SIGTERM while a run is in flight (the host is paused and the login
        // waits up to 60 s for it, so the run cannot finish first).
        try fleet.setPlatform("1.0.0", connectTimeout: "60s")
        cluster.pause(host)
        defer { cluster.resume(host) }
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = ["drift", "--fleet", fleet.path]
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": FileManager.default.temporaryDirectory.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let store = try await SQLiteStateStore.open(path: fleet.statePath)
        let running = try await Poll.until { try await store.recentRuns(limit: 1).first.map { $0.kind == .drift && $0.isRunning } ?? false }
        #expect(running, "the drift run was never recorded as started")
        kill(process.processIdentifier, SIGTERM)
        #expect(process.endsWithin(), "drift did not stop on SIGTERM within 20 s")
        #expect(process.terminationReason == .exit && process.terminationStatus == 1, "\(process.terminationReason) \(process.terminationStatus)")
        let last = try #require(try await store.recentRuns(limit: 1).first)
        #expect(last.kind == .drift && last.outcome == .interrupted, "\(last)")
    }
}
