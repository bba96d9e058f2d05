import Foundation
import Testing
import MeridianBasics
import MeridianTestHosts

/// `meridian plan` and `meridian apply`, the built binary against real sshd
/// test hosts on 127.0.80.x–127.0.84.x, each test with its own addresses and ports.
@Suite(.serialized) struct ApplyIntegrationTests {
    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    @Test func applyThenPlanHasNoChangesAndEditsAndUpgradesShowUp() async throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.80")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north", "south"], portBase: 18800)
        defer { fleet.tearDown() }

        let first = try fleet.meridian(["plan", "--detailed-exitcode"])
        #expect(first.status == 2, "\(first.stdout)\n\(first.stderr)")
        #expect(first.stdout.contains("+ release inference-north 1.0.0"))

        let apply = try fleet.meridian(["apply", "--auto-approve"])
        #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
        #expect(apply.stdout.contains("north: applied, 1 of 1 host changed"))

        let host = cluster.hosts[0]
        let server = host.root + "/config/inference-north/server.yaml"
        #expect(read(server) == "region: north\nport: 18800\nmax_tokens: 100\n")
        let secret = host.root + "/config/inference-north/secret.yaml"
        #expect(read(secret) == "api_key: s3cret-value\n")
        let mode = (try FileManager.default.attributesOfItem(atPath: secret)[.posixPermissions] as? Int) ?? 0
        #expect(mode == 0o600)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: host.root + "/slots/inference-north/blue") == host.root + "/releases/inference-north/1.0.0")
        #expect(FileManager.default.fileExists(atPath: host.root + "/state/manifest.json"))
        #expect(!FileManager.default.fileExists(atPath: host.root + "/state/lock"))

        let clean = try fleet.meridian(["plan", "--detailed-exitcode"])
        #expect(clean.status == 0, "\(clean.stdout)\n\(clean.stderr)")
        #expect(clean.stdout.contains("No changes."))

        // A file edited on the host is an update, with its diff.
        try "region: north\nport: 18800\nmax_tokens: 7\n".write(toFile: server, atomically: true, encoding: .utf8)
        let edited = try fleet.meridian(["plan", "--detailed-exitcode"])
        #expect(edited.status == 2)
        #expect(edited.stdout.contains("~ config/inference-north/server.yaml"))
        #expect(edited.stdout.contains("-max_tokens: 7"))
        let repair = try fleet.meridian(["apply", "--auto-approve"])
        #expect(repair.status == 0, "\(repair.stdout)\n\(repair.stderr)")
        #expect(read(host.root + "/state/previous/config/inference-north/server.yaml") == "region: north\nport: 18800\nmax_tokens: 7\n")

        // A version bump upgrades with recreate and passes the health check.
        try fleet.writeRegion(0, "north", maxTokens: 100, version: "2.0.0")
        let planFile = fleet.directory.appendingPathComponent("upgrade.json").path
        let saved = try fleet.meridian(["plan", "--out", planFile])
        #expect(saved.stdout.contains("> inference-north 1.0.0 → 2.0.0 (recreate"), "\(saved.stdout)")
        let upgrade = try fleet.meridian(["apply", planFile])
        #expect(upgrade.status == 0, "\(upgrade.stdout)\n\(upgrade.stderr)")
        #expect(upgrade.stdout.contains("health-check inference-north (blue) on \(host.address):18800 /healthz — ok"))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: host.root + "/slots/inference-north/blue") == host.root + "/releases/inference-north/2.0.0")
        let after = try fleet.meridian(["plan", "--detailed-exitcode"])
        #expect(after.status == 0, "\(after.stdout)\n\(after.stderr)")

        // The same saved plan again is stale: the host changed since.
        let again = try fleet.meridian(["apply", planFile])
        #expect(again.status == 1)
        #expect(again.stderr.contains("stale"), "\(again.stderr)")

        // status: from the store, then from the hosts.
        let status = try fleet.meridian(["status"])
        #expect(status.status == 0, "\(status.stdout)\n\(status.stderr)")
        #expect(status.stdout.contains("inference-north 2.0.0 (blue)"), "\(status.stdout)")
        #expect(status.stdout.contains("inference-south 1.0.0 (blue)"))
        #expect(!status.stdout.contains("never"))
        cluster.kill(cluster.hosts[1])
        let refreshed = try fleet.meridian(["status", "--refresh"])
        #expect(refreshed.status == 1)
        #expect(refreshed.stdout.contains("1/1 reachable"), "\(refreshed.stdout)")
        #expect(refreshed.stdout.contains("0/1 reachable"))
        #expect(refreshed.stderr.contains("host south/host2"))
    }
}
