import Foundation
import Testing
import MeridianBasics
import MeridianState
import MeridianTestHosts

/// Blue-green rollouts, waves and the rollout commands: the built binary
/// against real sshd test hosts on 127.0.110.x, ports 19100–19199. Their
/// component has no route, so its traffic split lives in the hosts'
/// manifests only; TrafficRolloutTests moves traffic through nginx.
@Suite(.serialized) struct RolloutIntegrationTests {
    func link(_ host: TestHost, _ component: String, _ slot: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "\(host.root)/slots/\(component)/\(slot)")
    }

    func alive(_ host: TestHost, _ component: String, _ slot: String) -> Bool {
        guard let text = try? String(contentsOfFile: "\(host.root)/run/\(component)-\(slot).pid", encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return false }
        guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true)
    }

    func manifest(_ host: TestHost) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: host.root + "/state/manifest.json"))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    func slots(_ host: TestHost, _ component: String) throws -> (active: String, blue: Int, green: Int) {
        let components = try manifest(host)["components"] as? [String: Any]
        let entry = components?[component] as? [String: Any]
        let blue = (entry?["blue"] as? [String: Any])?["weight"] as? Int ?? -1
        let green = (entry?["green"] as? [String: Any])?["weight"] as? Int ?? -1
        return (entry?["active_slot"] as? String ?? "?", blue, green)
    }

    @Test func blueGreenSwitchesAfterHealthAndSmokeKeepsTheOldSlotForTheGraceAndRollsBackOnCommand() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.110")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19100)
        defer { fleet.tearDown() }
        let host = cluster.hosts[0]
        let component = fleet.component(0)
        let smoke = ["smoke: [{ name: models, path: /v1/models, expect_body: test-model }]"]
        try fleet.setPlatform("1.0.0", strategy: "blue-green", extra: smoke, gracePeriod: "1s")
        let first = try fleet.meridian(["apply", "--auto-approve"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        #expect(first.stdout.contains("(recreate, slot blue"), "a first install has no traffic to move: \(first.stdout)")

        try fleet.setPlatform("2.0.0", strategy: "blue-green", extra: smoke, gracePeriod: "1s")
        let plan = try fleet.meridian(["plan"])
        #expect(plan.stdout.contains("> \(component) 1.0.0 → 2.0.0 (blue-green, slot green"), "\(plan.stdout)")
        let upgrade = try fleet.meridian(["apply", "--auto-approve"])
        #expect(upgrade.status == 0, "\(upgrade.stdout)\n\(upgrade.stderr)")
        #expect(upgrade.stdout.contains("rollout of \(component): health-checking → smoke-testing"), "\(upgrade.stdout)")
        #expect(upgrade.stdout.contains("rollout of \(component): switched → promoted"), "\(upgrade.stdout)")
        #expect(link(host, component, "green") == host.root + "/releases/\(component)/2.0.0")
        #expect(alive(host, component, "green") && !alive(host, component, "blue"))
        let promoted = try slots(host, component)
        #expect(promoted.active == "green" && promoted.green == 100 && promoted.blue == 0)

        // The rollout's weights are what was applied: plan and drift leave them alone.
        let clean = try fleet.meridian(["plan", "--detailed-exitcode"])
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")
        let drift = try fleet.meridian(["drift"])
        #expect(drift.status == 0, "\(drift.stdout)\n\(drift.stderr)")

        let status = try fleet.meridian(["rollout", "status", "north", "--format", "json"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("\"phase\" : \"promoted\""), "\(status.stdout)")
        #expect(status.stdout.contains("\"to_version\" : \"2.0.0\""))

        // After the rollout: back to the previous release, still installed in blue.
        let back = try fleet.meridian(["rollout", "rollback", "north"])
        #expect(back.status == 0, "\(back.stdout)\n\(back.stderr)")
        #expect(back.stdout.contains("\(component) 2.0.0 → 1.0.0: promoted"), "\(back.stdout)")
        #expect(alive(host, component, "blue") && !alive(host, component, "green"))
        let restored = try slots(host, component)
        #expect(restored.active == "blue" && restored.blue == 100)

        // Every transition is in the audit log, and the chain holds.
        let audit = try fleet.meridian(["audit", "verify"])
        #expect(audit.status == 0, "\(audit.stdout)\n\(audit.stderr)")
        let store = try await SQLiteStateStore.open(path: fleet.statePath)
        let transitions = try await store.auditLog(afterSeq: 0, limit: 1000).filter { $0.action == .rolloutTransition }
        #expect(transitions.count >= 8, "\(transitions.count) transitions")
    }

    @Test func anUnhealthyNewSlotNeverTakesTrafficAndApplyExits3() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.111")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19120)
        defer { fleet.tearDown() }
        let host = cluster.hosts[0]
        let component = fleet.component(0)
        try fleet.setPlatform("1.0.0", strategy: "blue-green", gracePeriod: "1s")
        #expect(try fleet.meridian(["apply", "--auto-approve"]).status == 0)
        // A smoke probe the new release cannot pass: the region stays on blue.
        try fleet.setPlatform("2.0.0", strategy: "blue-green", extra: ["smoke: [{ name: missing, path: /nowhere }]"], gracePeriod: "1s")
        let upgrade = try fleet.meridian(["apply", "--auto-approve"])
        #expect(upgrade.status == 3, "\(upgrade.stdout)\n\(upgrade.stderr)")
        #expect(upgrade.stdout.contains("north: ROLLED BACK"), "\(upgrade.stdout)")
        #expect(upgrade.stdout.contains("smoke probes failed"), "\(upgrade.stdout)")
        #expect(alive(host, component, "blue") && !alive(host, component, "green"))
        let kept = try slots(host, component)
        #expect(kept.active == "blue" && kept.blue == 100)
    }

    @Test func wavesRunInOrderAndAnApprovalWaitsForPromote() async throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.112")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north", "south"], portBase: 19140)
        defer { fleet.tearDown() }
        let waves = """
        waves:
          - { name: first, regions: [north] }
          - { name: second, regions: [south], approval: true }

        """
        try fleet.setPlatform("1.0.0", waves: waves)
        let planFile = fleet.directory.appendingPathComponent("plan.json").path
        #expect(try fleet.meridian(["plan", "--out", planFile]).status == 0)
        // A saved plan needs no confirmation; without --auto-approve the second wave waits.
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = ["apply", planFile, "--fleet", fleet.path]
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": FileManager.default.temporaryDirectory.path, "NO_COLOR": "1", "MERIDIAN_TEST_API_KEY": "s3cret-value"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        var waited = false
        for _ in 0..<600 {
            if FileManager.default.fileExists(atPath: cluster.hosts[0].root + "/state/manifest.json") { waited = true; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(waited, "the first wave did not finish")
        try await Task.sleep(for: .milliseconds(500))
        #expect(process.isRunning, "apply did not wait for the second wave's approval")
        #expect(!FileManager.default.fileExists(atPath: cluster.hosts[1].root + "/state/manifest.json"), "the second wave started without approval")
        let promote = try fleet.meridian(["rollout", "promote", "--wave", "second"])
        #expect(promote.status == 0, "\(promote.stdout)\n\(promote.stderr)")
        var ended = false
        for _ in 0..<600 {
            if !process.isRunning { ended = true; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        if !ended { process.terminate() }
        #expect(ended, "apply did not finish after the approval")
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("wave second waits for approval"), "\(text)")
        #expect(FileManager.default.fileExists(atPath: cluster.hosts[1].root + "/state/manifest.json"))
    }

    /// SIGKILL while the rollout waits out its grace period, then `apply`
    /// (nothing left to change on the hosts) carries the rollout on from its record.
    @Test func aRolloutKilledInItsGracePeriodIsCarriedOnByTheNextApply() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.113")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 19160)
        defer { fleet.tearDown() }
        let host = cluster.hosts[0]
        let component = fleet.component(0)
        try fleet.setPlatform("1.0.0", strategy: "blue-green", gracePeriod: "20s")
        #expect(try fleet.meridian(["apply", "--auto-approve"]).status == 0)
        // A grace period long enough that the kill lands in it however loaded the machine is.
        try fleet.setPlatform("2.0.0", strategy: "blue-green", gracePeriod: "8s")
        let log = fleet.directory.appendingPathComponent("grace-apply.log")
        let process = try fleet.start(["apply", "--auto-approve"], output: log)
        // The transition line is printed once the store records the switch.
        let switched = CLI.waitForLines(containing: "→ switched", in: log, of: process)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(switched, "the rollout never reached its grace period:\n\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        // Killed in the grace period: traffic on green, blue still running for a rollback.
        #expect(alive(host, component, "green") && alive(host, component, "blue"))
        #expect(try slots(host, component).green == 100)

        let resumed = try fleet.meridian(["apply", "--auto-approve"])
        #expect(resumed.status == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        #expect(resumed.stdout.contains("Carrying on the unfinished rollouts of north"), "\(resumed.stdout)")
        #expect(resumed.stdout.contains("\(component) 1.0.0 → 2.0.0: promoted"), "\(resumed.stdout)")
        #expect(alive(host, component, "green") && !alive(host, component, "blue"))
        let status = try fleet.meridian(["rollout", "status", "north"])
        #expect(status.stdout.contains("phase:   promoted"), "\(status.stdout)")
    }
}
