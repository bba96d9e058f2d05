import Foundation
import Testing
import MeridianTestHosts

/// Residency through the built binary on real gateways: the drift job's
/// residency check, and rollouts under live load for two jurisdictions.
/// Test hosts on 127.0.207.x, 127.0.208.x and 127.0.209.x, ports 19800–19899.
@Suite(.serialized) struct ResidencyCLITests {
    /// The findings of a `drift --format json` report, flattened.
    static func findings(_ run: CLIRun) throws -> [[String: String]] {
        let report = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any] ?? [:]
        let regions = report["regions"] as? [[String: Any]] ?? []
        return regions.flatMap { ($0["findings"] as? [[String: String]]) ?? [] }
    }

    @Test func driftNamesAGatewayWhoseResidencySectionWasEditedToServeDataItMustNot() async throws {
        let fleet = try ResidencyFleet(addressPrefix: "127.0.207", portBase: 19800)
        defer { fleet.tearDown() }
        try fleet.addRelease("1.0.0")
        try fleet.setPlatform("1.0.0", strategy: "blue-green")
        let applied = try fleet.meridian(["apply", "--auto-approve"])
        #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")

        // A clean fleet: every gateway routes as the table says, no residency finding.
        let clean = try fleet.meridian(["drift", "--format", "json"])
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")
        #expect(try Self.findings(clean).isEmpty, "\(clean.stdout)")

        // A residency change in the fleet repository that is not applied is pending, not a violation:
        // the gateways are judged by the table they were applied with.
        try fleet.setRules([("EU", ["EU"]), ("US", ["EU"])])
        let pending = try fleet.meridian(["drift", "--format", "json"])
        #expect(pending.status == 0, "\(pending.stdout)\n\(pending.stderr)")
        #expect(try Self.findings(pending).isEmpty, "\(pending.stdout)")
        #expect(pending.stdout.contains("governance/bundle.json"), "the rule change is not listed as pending: \(pending.stdout)")
        try fleet.setRules([("EU", ["EU"]), ("US", ["US"])])

        // eu-a's residency section edited by hand: US data is served by eu-a's own stack.
        let euA = fleet.host("eu-a")
        let configPath = euA.root + "/router/nginx.conf"
        let original = try String(contentsOfFile: configPath, encoding: .utf8)
        let edited = original.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            line.contains("\"0|0|US\" ") ? line.prefix { $0 == " " } + "\"0|0|US\" local;" : String(line)
        }.joined(separator: "\n")
        #expect(edited != original, "the residency section has no line for unmarked US data")
        try edited.write(toFile: configPath, atomically: true, encoding: .utf8)
        let pid = try String(contentsOfFile: euA.root + "/router/run/nginx.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(kill(pid_t(pid) ?? 0, SIGHUP) == 0, "could not reload eu-a's nginx (pid \(pid))")
        let live = Poll.blockingUntil(attempts: 500) {
            let client = KeepAliveHTTPClient(address: euA.address, port: fleet.gatewayPort)
            defer { client.disconnect() }
            return (try? client.send("GET", "/v1/models", headers: [("X-Data-Residency", "US")]))?.headers["x-meridian-served-by"] == "eu-a"
        }
        #expect(live, "eu-a's gateway does not serve US data after the edit")

        let receiver = try LoopbackHTTPServer(address: euA.address)
        let prometheus = fleet.directory.appendingPathComponent("drift.prom")
        let drifted = try fleet.meridian(["drift", "--format", "json", "--prometheus", prometheus.path, "--notify", "http://\(receiver.address):\(receiver.port)/hook"])
        #expect(drifted.status == 2, "\(drifted.stdout)\n\(drifted.stderr)")
        let found = try Self.findings(drifted)
        let violations = found.filter { $0["kind"] == "residency-violation" }
        #expect(violations.count == 1, "\(found)")
        #expect(violations.first?["region"] == "eu-a" && violations.first?["host"] == euA.name && violations.first?["subject"] == "residency US", "\(violations)")
        #expect(violations.first?["detail"]?.contains("served by eu-a; the routing table says served by us-a") == true, "\(violations)")
        #expect(violations.first?["detail"]?.contains("eu-a is outside the regions allowed for US data (us-a)") == true, "\(violations)")
        // The edit itself is drift too, and the one a remediation can undo.
        #expect(found.contains { $0["kind"] == "gateway-config-modified" && $0["region"] == "eu-a" }, "\(found)")
        let metrics = try String(contentsOf: prometheus, encoding: .utf8)
        #expect(metrics.contains("meridian_drift_findings{region=\"eu-a\",kind=\"residency-violation\"} 1"), "\(metrics)")
        #expect(metrics.contains("meridian_drift_findings{region=\"us-a\",kind=\"residency-violation\"} 0"), "\(metrics)")
        let hooks = receiver.requests
        #expect(hooks.count == 1, "\(hooks.count) webhook deliveries")
        let payload = String(decoding: hooks.first?.body ?? Data(), as: UTF8.self)
        #expect(payload.contains("residency-violation") && payload.contains("residency US"), "\(payload)")

        // With --region the other regions' health is still looked at: us-a is healthy, so the table says us-a.
        let selected = try fleet.meridian(["drift", "--region", "eu-a", "--format", "json"])
        #expect(selected.status == 2, "\(selected.stdout)\n\(selected.stderr)")
        let selectedViolations = try Self.findings(selected).filter { $0["kind"] == "residency-violation" }
        #expect(selectedViolations.count == 1 && selectedViolations.first?["detail"]?.contains("the routing table says served by us-a") == true, "\(selectedViolations)")

        let text = try fleet.meridian(["drift"])
        #expect(text.status == 2)
        #expect(text.stdout.contains("residency-violation  residency US: US data was served by eu-a"), "\(text.stdout)")

        // Not remediable by itself; putting the applied gateway configuration back is.
        let named = try fleet.meridian(["drift", "--remediate", "residency-violation"])
        #expect(named.stdout.contains("NOT FIXED  eu-a/\(euA.name) residency-violation residency US"), "\(named.stdout)\n\(named.stderr)")
        let fixed = try fleet.meridian(["drift", "--remediate", "gateway-config-modified"])
        #expect(fixed.status == 2 && fixed.stdout.contains("fixed  eu-a/\(euA.name) gateway-config-modified"), "\(fixed.stdout)\n\(fixed.stderr)")
        let after = try fleet.meridian(["drift", "--format", "json"])
        #expect(after.status == 0, "\(after.stdout)\n\(after.stderr)")
        #expect(try Self.findings(after).isEmpty, "\(after.stdout)")
    }

    /// How many SSH logins the fleet's sshd processes have accepted so far.
    static func logins(_ fleet: ResidencyFleet) -> Int {
        fleet.cluster.hosts.reduce(0) { total, host in
            total + ((try? String(contentsOfFile: host.logFile, encoding: .utf8)) ?? "").components(separatedBy: "Accepted publickey").count - 1
        }
    }

    @Test func planShowsWhereDataMayGoChangesAndRefusesAJurisdictionLeftWithoutARegionBeforeContactingAHost() async throws {
        let fleet = try ResidencyFleet(addressPrefix: "127.0.209", portBase: 19870)
        defer { fleet.tearDown() }
        try fleet.addRelease("1.0.0")
        try fleet.setPlatform("1.0.0", strategy: "blue-green")
        try fleet.setRules([("EU", ["EU"]), ("US", ["US", "EU"])])
        let applied = try fleet.meridian(["apply", "--auto-approve"])
        #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
        let unchanged = try fleet.meridian(["plan"])
        #expect(!unchanged.stdout.contains("Residency changes"), "\(unchanged.stdout)")

        // US data back to the US only, and a new rule for UK data: a section in text and JSON.
        try fleet.setRules([("EU", ["EU"]), ("UK", ["UK", "EU"]), ("US", ["US"])])
        let text = try fleet.meridian(["plan"])
        #expect(text.status == 0, "\(text.stdout)\n\(text.stderr)")
        let lines = text.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let section = lines.drop { !$0.hasPrefix("Residency changes") }.prefix { !$0.isEmpty }.joined(separator: "\n")
        let json = try fleet.meridian(["plan", "--format", "json"])
        #expect(json.status == 0, "\(json.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any] ?? [:]
        let residency = try JSONSerialization.data(withJSONObject: document["residency"] ?? NSNull(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        var golden = CLIRun(arguments: ["plan", "--fleet", "FLEET", "(its residency section, then the residency member of --format json)"], status: text.status,
                            stdout: section + "\n" + String(decoding: residency, as: UTF8.self) + "\n", stderr: "")
        for (index, host) in fleet.cluster.hosts.enumerated() { golden.stdout = golden.stdout.replacingOccurrences(of: "/\(host.name)", with: "/HOST\(index)") }
        try CLI.expectGolden(golden, "plan-cli/residency-change.txt")

        // A change that leaves a jurisdiction with no allowed region: exit 65, and no host is logged into.
        for (rules, what) in [([("EU", ["EU"]), ("US", ["CH"])], "no region can process US data")] {
            try fleet.setRules(rules)
            let before = Self.logins(fleet)
            let refused = try fleet.meridian(["plan"])
            #expect(refused.status == 65, "\(refused.stdout)\n\(refused.stderr)")
            #expect(refused.stderr.contains(what) || refused.stdout.contains(what), "\(refused.stdout)\n\(refused.stderr)")
            #expect(Self.logins(fleet) == before, "plan logged into a host before refusing the fleet")
        }
        // The only US region removed while US data may only go to the US: the same.
        try fleet.setRules([("EU", ["EU"]), ("US", ["US"])])
        try FileManager.default.removeItem(at: fleet.directory.appendingPathComponent("regions/us-a.yaml"))
        let before = Self.logins(fleet)
        let refused = try fleet.meridian(["plan"])
        #expect(refused.status == 65, "\(refused.stdout)\n\(refused.stderr)")
        #expect((refused.stderr + refused.stdout).contains("no region can process US data"), "\(refused.stdout)\n\(refused.stderr)")
        #expect(Self.logins(fleet) == before, "plan logged into a host before refusing the fleet")
        // The count is real: a valid plan logs into every host.
        try fleet.setRegion("us-a")
        #expect(try fleet.meridian(["plan"]).status == 0)
        #expect(Self.logins(fleet) >= before + ResidencyFleet.regions.count)
    }

    /// The newest rollout record of the region, as `rollout status --format json` prints it.
    static func rolloutPhase(_ fleet: ResidencyFleet, _ region: String) throws -> String? {
        let status = try fleet.meridian(["rollout", "status", region, "--format", "json"])
        let entries = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [[String: Any]] ?? []
        let newest = entries.max { ($0["id"] as? Int ?? 0) < ($1["id"] as? Int ?? 0) }?["record"] as? [String: Any]
        return newest?["phase"] as? String
    }

    /// Runs `step` under a residency load through every gateway for EU and
    /// US data, prints the totals, and expects every request served inside
    /// its allowed set: no violation, and (since an allowed region of each
    /// jurisdiction always serves) no refusal and no failure either.
    /// Returns the totals, so a caller can check which versions took traffic.
    @discardableResult
    static func underLoad(_ fleet: ResidencyFleet, _ name: String, _ step: () async throws -> Void) async throws -> ResidencyLoad.Totals {
        let gateways = ResidencyFleet.regions.map { (address: fleet.host($0.0).address, port: fleet.gatewayPort) }
        let load = ResidencyLoad(gateways: gateways, allowed: ResidencyFleet.allowed)
        #expect(await load.waitFor(60), "\(name): the gateways did not answer before the step")
        try await step()
        // Some traffic after the step too: the state it left routes the same way.
        let after = load.count + 60
        #expect(await load.waitFor(after), "\(name): the gateways did not answer after the step")
        let totals = await load.stop()
        print("\(name): \(totals)")
        #expect(totals.violations.isEmpty, "\(name): \(totals.violations.prefix(5))")
        #expect(totals.refused == 0 && totals.failed.isEmpty, "\(name): refused \(totals.refused), failed \(totals.failed.prefix(5))")
        #expect(totals.requests >= 120)
        return totals
    }

    @Test func aCanaryAnAbortABlueGreenSwitchAndARollbackInOneRegionNeverMoveDataOutsideItsAllowedRegions() async throws {
        let fleet = try ResidencyFleet(addressPrefix: "127.0.208", portBase: 19840)
        defer { fleet.tearDown() }
        for version in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] { try fleet.addRelease(version) }
        try fleet.setPlatform("1.0.0", strategy: "canary")
        let first = try fleet.meridian(["apply", "--auto-approve"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")

        // Each step moved eu-a's own traffic between versions while the load ran.
        var totals = try await Self.underLoad(fleet, "canary in eu-a (50 %, 100 %)") {
            try fleet.setRegion("eu-a", version: "1.1.0")
            let canary = try fleet.meridian(["apply", "--auto-approve"])
            #expect(canary.status == 0, "\(canary.stdout)\n\(canary.stderr)")
            #expect(try Self.rolloutPhase(fleet, "eu-a") == "promoted")
        }
        #expect(totals.versions["eu-a"] == ["1.0.0", "1.1.0"], "\(totals)")

        totals = try await Self.underLoad(fleet, "canary in eu-a aborted at its first step") {
            try fleet.setPlatform("1.0.0", strategy: "canary", steps: [50, 100], pause: "30s")
            try fleet.setRegion("eu-a", version: "1.2.0")
            let log = fleet.directory.appendingPathComponent("apply-abort.log")
            let apply = try fleet.start(["apply", "--auto-approve"], output: log)
            var analysing = false
            for _ in 0..<600 where apply.isRunning && !analysing {
                analysing = (try? Self.rolloutPhase(fleet, "eu-a")) == "analysing:0"
                if !analysing { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(analysing, "the canary never reached its first analysis: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            let abort = try fleet.meridian(["rollout", "abort", "eu-a"])
            #expect(abort.status == 0, "\(abort.stdout)\n\(abort.stderr)")
            #expect(apply.endsWithin(attempts: 6000), "apply did not end within 60 s of the abort")
            #expect(try Self.rolloutPhase(fleet, "eu-a") == "rolled-back")
        }
        #expect(totals.versions["eu-a"] == ["1.1.0", "1.2.0"], "\(totals)")

        totals = try await Self.underLoad(fleet, "blue-green switch in eu-a") {
            try fleet.setPlatform("1.0.0", strategy: "blue-green")
            try fleet.setRegion("eu-a", version: "1.3.0")
            let switched = try fleet.meridian(["apply", "--auto-approve"])
            #expect(switched.status == 0, "\(switched.stdout)\n\(switched.stderr)")
        }
        #expect(totals.versions["eu-a"] == ["1.1.0", "1.3.0"], "\(totals)")

        totals = try await Self.underLoad(fleet, "rollback in eu-a") {
            let back = try fleet.meridian(["rollout", "rollback", "eu-a"])
            #expect(back.status == 0, "\(back.stdout)\n\(back.stderr)")
        }
        #expect(totals.versions["eu-a"] == ["1.1.0", "1.3.0"], "\(totals)")
        #expect(totals.versions["eu-b"] == ["1.0.0"] && totals.versions["us-a"] == ["1.0.0"], "\(totals)")
        // The gateways still route as the table says, and nothing else drifted.
        let drift = try fleet.meridian(["drift", "--format", "json"])
        #expect(drift.status == 0, "\(drift.stdout)\n\(drift.stderr)")
    }
}
