import Foundation
import Testing
import MeridianTestHosts

/// The local sandbox on the example fleet's own addresses (127.0.R.H:2222),
/// run by the built meridian on a copy of the example fleet, and the
/// quick-start walkthrough against it. The sandbox's addresses are fixed, so
/// these tests run one at a time and no other test uses 127.0.1–5.x.
@Suite(.serialized) struct SandboxTests {
    /// Every host of the example fleet: region file, address.
    static let hosts = [
        ("eu-west-gw", "127.0.1.1"), ("eu-west-inf-1", "127.0.1.2"), ("eu-west-inf-2", "127.0.1.3"), ("eu-west-kb", "127.0.1.4"),
        ("eu-central-1", "127.0.2.1"), ("uk-south-1", "127.0.3.1"), ("us-east-1", "127.0.4.1"), ("ap-southeast-1", "127.0.5.1"),
    ]

    /// A copy of the example fleet (and the stack its artifacts link to) in a fresh folder.
    static func exampleFleetCopy() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-sandbox-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for item in ["meridian.yaml", "regions", "policies", "templates", "artifacts", "stack", "scripts"] {
            try FileManager.default.copyItem(at: CLI.repositoryRoot.appendingPathComponent(item), to: folder.appendingPathComponent(item))
        }
        return folder
    }

    /// Runs `body` on a fresh copy of the example fleet once the sandbox's addresses are free;
    /// afterwards stops and removes whatever sandbox it left and the copy.
    static func withSandboxFleet(_ body: (URL) throws -> Void) throws {
        try requireAddressesFree()
        let fleet = try exampleFleetCopy()
        defer {
            _ = try? CLI.run(["sandbox", "down", "--purge", "--fleet", fleet.path])
            _ = try? CLI.run(["sandbox", "down", "--purge", "--fleet", fleet.path + "/walkthrough"])
            try? FileManager.default.removeItem(at: fleet)
        }
        try body(fleet)
    }

    /// Fails the test, naming who holds them, when the sandbox's addresses are taken before it starts.
    static func requireAddressesFree() throws {
        let taken = hosts.filter { TestHostCluster.accepts(address: $0.1, port: 2222) }.map { "\($0.1):2222" }
        try #require(taken.isEmpty, "sandbox addresses already in use (a sandbox running elsewhere? `meridian sandbox down` in its fleet): \(taken)")
    }

    /// The first `routes verify` matrix in the walkthrough's output: gateway → probe label → cell.
    static func verifyMatrix(in text: String) -> [String: [String: String]]? {
        let lines = text.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "$ meridian routes verify"), start + 1 < lines.count else { return nil }
        func cells(_ line: String) -> [String] {
            line.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        let header = cells(lines[start + 1])
        guard header.first == "GATEWAY" else { return nil }
        var matrix: [String: [String: String]] = [:]
        for line in lines[(start + 2)...].prefix(while: { $0.contains("/") && !$0.hasPrefix("healthy:") }) {
            let row = cells(line)
            guard row.count == header.count else { return nil }
            matrix[row[0]] = Dictionary(uniqueKeysWithValues: zip(header.dropFirst(), row.dropFirst()))
        }
        return matrix
    }

    static func nothingListens() -> [String] {
        var listening: [String] = []
        for (_, address) in hosts {
            for port in [2222, 8080, 8101, 8102, 8201, 8202] where TestHostCluster.accepts(address: address, port: port) {
                listening.append("\(address):\(port)")
            }
        }
        return listening
    }

    @Test func upRunsEveryHostAndDownLeavesNothingRunning() throws {
        try Self.withSandboxFleet(upRunsEveryHostAndDownLeavesNothingRunning)
    }

    func upRunsEveryHostAndDownLeavesNothingRunning(_ fleet: URL) throws {
        let args = ["--fleet", fleet.path]

        let before = try CLI.run(["sandbox", "status"] + args)
        #expect(before.status == 1 && before.stdout.contains("No sandbox here"), "\(before.stdout)\(before.stderr)")

        let up = try CLI.run(["sandbox", "up"] + args)
        try #require(up.status == 0, "\(up.stdout)\n\(up.stderr)")
        #expect(up.stdout.contains("Started 8 sandbox host(s)"), "\(up.stdout)")
        #expect(up.stdout.contains("/srv/meridian = \(fleet.path)/.meridian/sandbox/hosts/eu-west-gw/root"), "\(up.stdout)")
        for (_, address) in Self.hosts { #expect(TestHostCluster.accepts(address: address, port: 2222), "\(address):2222 does not accept") }

        // The client key and the pinned host keys where meridian.yaml points; the secret outside the fleet files.
        #expect(FileManager.default.fileExists(atPath: fleet.path + "/.meridian/sandbox/id_ed25519"))
        let knownHosts = try String(contentsOfFile: fleet.path + "/.meridian/known_hosts", encoding: .utf8)
        #expect(knownHosts.split(separator: "\n").count == 8 && knownHosts.contains("[127.0.1.4]:2222 ssh-ed25519 "), "\(knownHosts)")
        let env = try String(contentsOfFile: fleet.path + "/.meridian/sandbox/env", encoding: .utf8)
        let secret = try #require(env.split(separator: "\n").first { $0.hasPrefix("export MERIDIAN_EU_WEST_TOKEN=") }.map { String($0.split(separator: "=")[1]) })
        #expect(secret.count > 20)
        let mode = try FileManager.default.attributesOfItem(atPath: fleet.path + "/.meridian/sandbox/env")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(up.stdout.contains("MERIDIAN_EU_WEST_TOKEN") && !up.stdout.contains(secret))

        // Twice: nothing started, said so.
        let again = try CLI.run(["sandbox", "up"] + args)
        #expect(again.status == 0 && again.stdout.contains("already up: all 8 hosts were running; nothing started"), "\(again.stdout)\(again.stderr)")

        // meridian uses it as real servers.
        let check = try CLI.run(["hosts", "check"] + args)
        #expect(check.status == 0, "\(check.stdout)\n\(check.stderr)")
        #expect(check.stdout.contains("8 of 8 hosts ok."), "\(check.stdout)")
        let plan = try CLI.run(["plan", "--detailed-exitcode"] + args)
        #expect(plan.status == 2, "\(plan.stdout)\n\(plan.stderr)")
        for region in ["eu-west", "eu-central", "uk-south", "us-east", "ap-southeast"] { #expect(plan.stdout.contains("Region \(region)"), "\(plan.stdout)") }

        // One region applied: the gateway's nginx and the services run inside the host, in its own root.
        let apply = try CLI.run(["apply", "--auto-approve", "--region", "uk-south"] + args, environment: ["MERIDIAN_EU_WEST_TOKEN": secret])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        let ukRoot = fleet.path + "/.meridian/sandbox/hosts/uk-south-1/root"
        #expect(FileManager.default.fileExists(atPath: ukRoot + "/config/inference/server.yaml"))
        #expect(!FileManager.default.fileExists(atPath: fleet.path + "/.meridian/sandbox/hosts/us-east-1/root/config"), "uk-south's apply wrote into us-east's root")
        #expect(TestHostCluster.accepts(address: "127.0.3.1", port: 8080), "uk-south's gateway does not listen")
        let status = try CLI.run(["sandbox", "status"] + args)
        #expect(status.status == 0 && status.stdout.contains("8 of 8 hosts up."), "\(status.stdout)\(status.stderr)")
        let ukLine = status.stdout.split(separator: "\n").first { $0.hasPrefix("uk-south") }.map(String.init) ?? ""
        #expect(ukLine.contains("nginx") && ukLine.contains("slot blue :8101") && ukLine.contains("slot blue :8201"), "\(status.stdout)")
        let servicePids = try [ukRoot + "/run/inference-blue.pid", ukRoot + "/router/run/nginx.pid"].map {
            try #require(Int32(try String(contentsOfFile: $0, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        }

        // A crash that left hosts behind: one sshd gone, the others kept.
        let pid = try #require(Int32(try String(contentsOfFile: fleet.path + "/.meridian/sandbox/hosts/us-east-1/sshd.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGKILL)
        #expect(Poll.blockingUntil { !TestHostCluster.accepts(address: "127.0.4.1", port: 2222) }, "us-east-1's sshd did not go")
        let partial = try CLI.run(["sandbox", "status"] + args)
        #expect(partial.status == 1 && partial.stdout.contains("7 of 8 hosts up."), "\(partial.stdout)")
        let recovered = try CLI.run(["sandbox", "up"] + args)
        #expect(recovered.status == 0 && recovered.stdout.contains("Kept 7 host(s) still running from an earlier start") && recovered.stdout.contains("started the other 1"), "\(recovered.stdout)\(recovered.stderr)")
        #expect(TestHostCluster.accepts(address: "127.0.4.1", port: 2222))

        // down: every sshd, the gateway and the services gone.
        let down = try CLI.run(["sandbox", "down"] + args)
        #expect(down.status == 0, "\(down.stdout)\n\(down.stderr)")
        #expect(down.stdout.contains("Stopped 8 sshd(s)"), "\(down.stdout)")
        #expect(Self.nothingListens().isEmpty, "still listening after down: \(Self.nothingListens())")
        for pid in servicePids { #expect(!TestHostCluster.isRunning(pid), "process \(pid) of uk-south-1 still runs") }
        let after = try CLI.run(["sandbox", "status"] + args)
        #expect(after.status == 1 && after.stdout.contains("0 of 8 hosts up."), "\(after.stdout)")

        // --purge removes the hosts' folders and keys; the fleet files never held the secret.
        let purge = try CLI.run(["sandbox", "down", "--purge"] + args)
        #expect(purge.status == 0 && !FileManager.default.fileExists(atPath: fleet.path + "/.meridian/sandbox"), "\(purge.stdout)\(purge.stderr)")
        let grep = Process()
        grep.executableURL = URL(fileURLWithPath: "/bin/grep")
        grep.arguments = ["-rqF", secret, fleet.path]
        try grep.run()
        grep.waitUntilExit()
        #expect(grep.terminationStatus == 1, "the sandbox's secret was written into the fleet folder")
    }

    @Test func refusesATakenAddressAndAnOrdinaryUser() throws {
        try Self.withSandboxFleet(refusesATakenAddressAndAnOrdinaryUser)
    }

    func refusesATakenAddressAndAnOrdinaryUser(_ fleet: URL) throws {
        // Something else listens where uk-south-1 must.
        let squatter = try TestHostCluster(count: 1, addressPrefix: "127.0.3", port: 2222)
        let up = try CLI.run(["sandbox", "up", "--fleet", fleet.path])
        #expect(up.status == 1, "\(up.stdout)\(up.stderr)")
        #expect(up.stderr.contains("127.0.3.1:2222, where host uk-south-1 must listen, is taken by a process that is not this sandbox's sshd"), "\(up.stderr)")
        #expect(!TestHostCluster.accepts(address: "127.0.1.1", port: 2222), "a refused up started hosts")
        squatter.stopAll()

        // An ordinary user is told what the sandbox needs.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fleet.path)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid", "65534", "--regid", "65534", "--clear-groups", CLI.executable.path, "sandbox", "up", "--fleet", fleet.path]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 1)
        #expect(message.contains("the sandbox needs root") && message.contains("sudo meridian sandbox up"), "\(message)")
    }

    /// The README's first quick-start command runs `scripts/walkthrough` after the build: here it runs
    /// against a fresh copy of the example fleet with the built meridian, every step checked by its exit code.
    @Test func theQuickStartWalkthroughRunsAgainstTheSandbox() throws {
        try Self.withSandboxFleet(theQuickStartWalkthroughRunsAgainstTheSandbox)
    }

    func theQuickStartWalkthroughRunsAgainstTheSandbox(_ fleet: URL) throws {
        let process = Process()
        // Bounded: timeout(1) stops the walkthrough and everything it started after 8 minutes (exit 124).
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        let work = fleet.appendingPathComponent("walkthrough")
        process.arguments = ["-k", "10", "480", "/bin/bash", CLI.repositoryRoot.path + "/scripts/walkthrough", CLI.executable.path, work.path]
        process.currentDirectoryURL = fleet
        process.environment = ["PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": FileManager.default.temporaryDirectory.path, "NO_COLOR": "1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let started = Date()
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        print("walkthrough took \(Int(Date().timeIntervalSince(started))) s")
        #expect(process.terminationStatus == 0, "walkthrough failed (exit \(process.terminationStatus); 124: it ran past 8 minutes):\n\(text)")
        var position = text.startIndex
        for command in ["$ meridian sandbox up", "$ . .meridian/sandbox/env", "$ meridian validate", "$ meridian hosts check",
                        "$ meridian plan --region uk-south", "$ meridian plan --out first-deploy.plan > first-deploy.txt",
                        "Plan: 42 to create", "$ meridian apply --auto-approve first-deploy.plan", "— wave canary: eu-central", "— wave europe: eu-west, uk-south",
                        "— wave rest: us-east, ap-southeast", "$ meridian status", "$ meridian drift", "file-modified", "(exit 2, as expected)",
                        "$ meridian drift --remediate file-modified", "fixed  uk-south/uk-south-1 file-modified", "$ meridian drift", "No drift: 8 hosts in 5 regions match",
                        "$ kill $(cat .meridian/sandbox/hosts/eu-west-{inf-1,inf-2,kb}/root/run/*.pid .meridian/sandbox/hosts/ap-southeast-1/root/run/*.pid)",
                        "$ meridian routes verify", "healthy: eu-central, uk-south, us-east; not healthy: ap-southeast, eu-west", "30 checks, 0 violations",
                        "$ meridian drift --remediate component-down", "fixed  ap-southeast/ap-southeast-1 component-down knowledge-base (blue)",
                        "fixed  eu-west/eu-west-inf-1 component-down inference (blue)", "(exit 2, as expected)",
                        "grace_period: 5s", "$ meridian apply --auto-approve", "$ meridian drift", "No drift: 8 hosts in 5 regions match", "$ meridian apply --auto-approve --region eu-central",
                        "$ meridian rollout status eu-central", "phase:   promoted",
                        "$ meridian apply --auto-approve --region eu-central", "eu-central: ROLLED BACK", "(exit 3, as expected)",
                        "$ meridian rollout status eu-central", "phase:   rolled-back", "$ meridian audit verify", "$ meridian status --refresh",
                        "Walkthrough done in", "sandbox down"] {
            guard let found = text.range(of: command, range: position..<text.endIndex) else {
                Issue.record("the walkthrough did not print \(command) after what came before:\n\(text)")
                return
            }
            position = found.upperBound
        }
        // The matrix with eu-west's and ap-southeast's stacks stopped: from every gateway, EU data are
        // served by eu-central, the other EU region, and SG data are refused, their only region being down.
        let matrix = try #require(Self.verifyMatrix(in: text), "no routes verify matrix in:\n\(text)")
        #expect(matrix.keys.sorted() == ["ap-southeast/ap-southeast-1", "eu-central/eu-central-1", "eu-west/eu-west-gw", "uk-south/uk-south-1", "us-east/us-east-1"], "\(matrix)")
        for (gateway, cells) in matrix {
            #expect(cells["EU"] == "✓ eu-central" && cells["SG"] == "✓ refused (no-healthy-region)", "\(gateway): \(cells)")
            #expect(cells["US"] == "✓ us-east" && cells["(none)"] == "✓ refused (missing-residency)", "\(gateway): \(cells)")
            #expect(cells["UK"] == (gateway.hasPrefix("eu-central/") ? "✓ eu-central" : "✓ uk-south"), "\(gateway): \(cells)")
        }

        // `meridian status` on the deployed sandbox: JSON from the store, an open drift finding, --watch, --refresh.
        let args = ["--fleet", work.path]
        try "max_tokens: 2\n".write(toFile: work.path + "/.meridian/sandbox/hosts/eu-central-1/root/config/knowledge-base/server.yaml", atomically: true, encoding: .utf8)
        let drift = try CLI.run(["drift"] + args)
        #expect(drift.status == 2, "\(drift.stdout)\(drift.stderr)")
        let json = try CLI.run(["status", "--format", "json"] + args)
        #expect(json.status == 0, "\(json.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        #expect(document["source"] as? String == "store" && document["format_version"] as? Int == 1)
        let regions = try #require(document["regions"] as? [[String: Any]])
        #expect(regions.map { $0["name"] as? String } == ["ap-southeast", "eu-central", "eu-west", "uk-south", "us-east"])
        let central = try #require(regions.first { $0["name"] as? String == "eu-central" })
        #expect(central["wave"] as? String == "canary" && (central["last_apply"] as? [String: Any])?["by"] != nil)
        let open = try #require((central["drift"] as? [String: Any])?["open"] as? [[String: Any]])
        #expect(open.map { "\($0["host"] ?? "") \($0["kind"] ?? "") \($0["subject"] ?? "")" } == ["eu-central-1 file-modified config/knowledge-base/server.yaml"], "\(open)")
        let host = try #require((central["hosts"] as? [[String: Any]])?.first)
        let components = try #require(host["components"] as? [[String: Any]])
        #expect(components.map { "\($0["name"] ?? "") \($0["active_version"] ?? "") \($0["active_slot"] ?? "")" } == ["inference 2.4.0 green", "knowledge-base 1.9.0 green"])
        let split = try #require(central["gateway"] as? [[String: Any]])
        #expect(split.map { "\($0["component"] ?? "") \($0["blue"] ?? "") \($0["green"] ?? "")" } == ["inference 0 100", "knowledge-base 0 100"])
        let usEast = try #require(regions.first { $0["name"] as? String == "us-east" })
        #expect(((usEast["hosts"] as? [[String: Any]])?.first?["components"] as? [[String: Any]])?.last?["active_version"] as? String == "1.9.0")

        // The last routes verify, per region: eu-west's and ap-southeast's stacks were down, every cell ✓.
        let lastVerify: [String] = regions.map { (region: [String: Any]) -> String in
            let view = region["routes_verify"] as? [String: Any] ?? [:]
            let fields: [Any] = [region["name"] ?? "", view["ok"] ?? "-", view["healthy"] ?? "-", view["checks"] ?? "-"]
            return fields.map { "\($0)" }.joined(separator: " ")
        }
        #expect(lastVerify == ["ap-southeast 1 0 6", "eu-central 1 1 6", "eu-west 1 0 6", "uk-south 1 1 6", "us-east 1 1 6"], "\(lastVerify)")

        let table = try CLI.run(["status"] + args)
        #expect(table.stdout.contains("checks ✓; the region was not healthy then (its stack did not answer)"), "\(table.stdout)")
        #expect(table.stdout.contains("eu-central-1: file-modified config/knowledge-base/server.yaml since"), "\(table.stdout)")
        #expect(table.stdout.contains("gateway weights: inference blue 0% / green 100%"), "\(table.stdout)")
        let watch = try CLI.run(["status", "--watch", "--times", "2", "--interval", "0.2"] + args)
        #expect(watch.status == 0 && watch.stdout.components(separatedBy: "Fleet status from the state store").count == 3, "\(watch.stdout)")

        // docs/operations.md: an online backup of the store verifies, and a restored copy shows the same status.
        let backup = work.path + "/state-backup.db"
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        sqlite.arguments = [work.path + "/.meridian/state.db", ".backup \(backup)"]
        try sqlite.run()
        sqlite.waitUntilExit()
        #expect(sqlite.terminationStatus == 0)
        let verified = try CLI.run(["audit", "verify", "--state", backup] + args)
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
        let words: [String] = verified.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        let anchors = words.filter { word in
            let parts = word.split(separator: ":")
            return parts.count == 2 && Int(parts[0]) != nil && parts[1].count == 64
        }
        let head = try #require(anchors.first, "no SEQ:HASH head in \(verified.stdout)")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: work.path + "/.meridian/state.db" + suffix) }
        try FileManager.default.copyItem(atPath: backup, toPath: work.path + "/.meridian/state.db")
        let anchored = try CLI.run(["audit", "verify", "--anchor", head] + args)
        #expect(anchored.status == 0, "\(anchored.stdout)\(anchored.stderr)")
        let restored = try CLI.run(["status", "--format", "json"] + args)
        #expect(restored.status == 0 && restored.stdout.components(separatedBy: "\n").dropFirst(3) == json.stdout.components(separatedBy: "\n").dropFirst(3), "\(restored.stdout)")

        let pid = try #require(Int32(try String(contentsOfFile: work.path + "/.meridian/sandbox/hosts/ap-southeast-1/sshd.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGKILL)
        #expect(Poll.blockingUntil { !TestHostCluster.accepts(address: "127.0.5.1", port: 2222) })
        let refreshed = try CLI.run(["status", "--refresh", "--format", "json"] + args)
        #expect(refreshed.status == 1 && refreshed.stderr.contains("host ap-southeast/ap-southeast-1"), "\(refreshed.stdout)\(refreshed.stderr)")
        let fresh = try #require(try JSONSerialization.jsonObject(with: Data(refreshed.stdout.utf8)) as? [String: Any])
        let freshRegions = try #require(fresh["regions"] as? [[String: Any]])
        let reachability = freshRegions.flatMap { ($0["hosts"] as? [[String: Any]]) ?? [] }.map { "\($0["name"] ?? "") \($0["reachable"] ?? "")" }
        #expect(reachability.filter { $0.hasSuffix(" 1") }.count == 7 && reachability.contains("ap-southeast-1 0"), "\(reachability)")
    }
}
