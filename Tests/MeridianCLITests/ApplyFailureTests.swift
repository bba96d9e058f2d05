import Foundation
import Testing
import MeridianBasics
import MeridianState
import MeridianTestHosts

/// How apply fails: unreachable hosts, held leases, no terminal to confirm
/// on, the meridian process killed mid-run, a host's sshd killed mid-run.
@Suite(.serialized) struct ApplyFailureTests {
    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    @Test func anUnreachableHostFailsItsRegionWhileTheOthersComplete() async throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.81")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north", "south"], portBase: 18820)
        defer { fleet.tearDown() }
        cluster.kill(cluster.hosts[1])
        let apply = try fleet.meridian(["apply", "--auto-approve"])
        #expect(apply.status == 1, "\(apply.stdout)\n\(apply.stderr)")
        #expect(apply.stdout.contains("north: applied, 1 of 1 host changed"))
        #expect(apply.stdout.contains("south: NOT PLANNED"))
        #expect(apply.stderr.contains("region south left out"))
        #expect(read(cluster.hosts[0].root + "/config/inference-north/server.yaml") != nil)
    }

    @Test func aHeldLeaseExits4NamingTheHolderAndNoTerminalExits64() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.82")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 18840)
        defer { fleet.tearDown() }

        let refused = try fleet.meridian(["apply"])
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("standard input is not a terminal"))
        #expect(refused.stderr.contains("--auto-approve"))

        let store = try await SQLiteStateStore.open(path: fleet.statePath)
        let other = ProcessIdentity(user: "ana", host: "ci-runner-3", pid: 4242)
        _ = try await store.acquireLeases(regions: ["north"], holder: other, run: nil, ttl: .seconds(600))
        let locked = try fleet.meridian(["apply", "--auto-approve"])
        #expect(locked.status == 4, "\(locked.stdout)\n\(locked.stderr)")
        #expect(locked.stderr.contains("region north is held by ana@ci-runner-3 pid 4242"))
        #expect(!FileManager.default.fileExists(atPath: cluster.hosts[0].root + "/config"))
    }

    func temporaries(under root: String) -> [String] {
        let names = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []
        return names.filter { $0.contains(".meridian-tmp-") || $0.contains(".unpack-") }
    }

    @Test(arguments: [1, 3, 5])
    func applyKilledAfterSomeStepsLeavesWholeFilesAndTheNextApplyConverges(killAfter: Int) async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.83", firstOctet: killAfter)
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 18860 + 4 * killAfter)
        defer { fleet.tearDown() }
        // Version 2.0.0 listens only 4 s after it starts, so the run's health
        // check holds it past every kill point however loaded the machine is.
        try fleet.setPlatform("1.0.0", startDelay: "2.0.0=4")
        let root = cluster.hosts[0].root
        let first = try fleet.meridian(["apply", "--auto-approve"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        let server = root + "/config/inference-north/server.yaml"
        let old = read(server)

        // A configuration change and a version change, killed part-way.
        try fleet.writeRegion(0, "north", maxTokens: 555, version: "2.0.0")
        let log = fleet.directory.appendingPathComponent("killed-apply.log")
        let process = try fleet.start(["apply", "--auto-approve"], output: log)
        let reached = CLI.waitForLines(containing: "— ok", count: killAfter, in: log, of: process)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(reached, "the apply ended before finishing \(killAfter) steps:\n\(output)")
        #expect(process.terminationReason == .uncaughtSignal, "the apply ended on its own (exit \(process.terminationStatus)):\n\(output)")

        // Whole files only, and a readable store that shows the run unfinished.
        let now = read(server)
        #expect(now == old || now == "region: north\nport: \(fleet.port(0))\nmax_tokens: 555\n")
        for version in ["1.0.0", "2.0.0"] {
            let release = root + "/releases/inference-north/\(version)"
            if FileManager.default.fileExists(atPath: release) {
                #expect(FileManager.default.fileExists(atPath: release + "/bin/serve") && read(release + "/VERSION") == version + "\n")
            }
        }
        let store = try await SQLiteStateStore.open(path: fleet.statePath)
        #expect(try await store.unfinishedRuns().count == 1)

        let converge = try fleet.meridian(["apply", "--auto-approve"])
        #expect(converge.status == 0, "\(converge.stdout)\n\(converge.stderr)")
        let clean = try fleet.meridian(["plan", "--detailed-exitcode"])
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")
        #expect(read(server) == "region: north\nport: \(fleet.port(0))\nmax_tokens: 555\n")
        #expect(temporaries(under: root).isEmpty)
        #expect(try await store.unfinishedRuns().isEmpty)
    }

    @Test func aHostsSshdKilledMidApplyFailsItsRegionAndTheNextApplyConverges() async throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.84")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north", "south"], portBase: 18900)
        defer { fleet.tearDown() }
        // 2.0.0 listens only 4 s after it starts: the kill lands while the run waits for it.
        try fleet.setPlatform("1.0.0", startDelay: "2.0.0=4")
        let first = try fleet.meridian(["apply", "--auto-approve"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")

        try fleet.writeRegion(0, "north", maxTokens: 9, version: "2.0.0")
        let log = fleet.directory.appendingPathComponent("sshd-killed-apply.log")
        let process = try fleet.start(["apply", "--auto-approve"], output: log)
        let reached = CLI.waitForLines(containing: "install release inference-north 2.0.0 — ok", in: log, of: process)
        cluster.kill(cluster.hosts[0])
        #expect(process.endsWithin(), "apply did not end within 20 s of its host's sshd being killed")
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(reached, "the apply ended before installing the release:\n\(output)")
        #expect(process.terminationStatus == 1, "\(output)")

        try cluster.restart(cluster.hosts[0])
        let converge = try fleet.meridian(["apply", "--auto-approve"])
        #expect(converge.status == 0, "\(converge.stdout)\n\(converge.stderr)")
        let clean = try fleet.meridian(["plan", "--detailed-exitcode"])
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")
        #expect(temporaries(under: cluster.hosts[0].root).isEmpty)
    }
}
