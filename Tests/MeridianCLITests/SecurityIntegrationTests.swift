import Foundation
import Testing
import MeridianBasics
import MeridianTestHosts

/// The attacks of a hostile fleet repository or plan file, and a rotated
/// secret, against the built binary and real sshd test hosts on 127.0.147.x.
@Suite(.serialized) struct SecurityIntegrationTests {
    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    @Test func secretsNeverShowRotateByKeyedHashAndEditedPlansAreRefused() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.147")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north"], portBase: 21470)
        defer { fleet.tearDown() }
        func meridian(_ arguments: [String], key: String) throws -> CLIRun {
            try CLI.run(arguments + ["--fleet", fleet.path], environment: ["MERIDIAN_TEST_API_KEY": key])
        }
        let host = cluster.hosts[0]
        let secret = host.root + "/config/inference-north/secret.yaml"

        let first = try meridian(["apply", "--auto-approve"], key: "first-value")
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        #expect(read(secret) == "api_key: first-value\n")

        // A rotated secret: the plan holds no value, yet apply sees the keyed
        // hash differ, rewrites the file and restarts the component reading it.
        let rotated = try meridian(["apply", "--auto-approve"], key: "NEW-VALUE")
        #expect(rotated.status == 0, "\(rotated.stdout)\n\(rotated.stderr)")
        #expect(!rotated.stdout.contains("No changes"), "\(rotated.stdout)")
        #expect(rotated.stdout.contains("~ config/inference-north/secret.yaml (sensitive)"), "\(rotated.stdout)")
        #expect(rotated.stdout.contains("restart inference-north"), "\(rotated.stdout)")
        #expect(read(secret) == "api_key: NEW-VALUE\n")
        for text in [rotated.stdout, rotated.stderr] {
            #expect(!text.contains("NEW-VALUE") && !text.contains("first-value"))
        }
        let settled = try meridian(["apply", "--auto-approve"], key: "NEW-VALUE")
        #expect(settled.stdout.contains("No changes. The fleet matches the configuration."), "\(settled.stdout)")

        // Edited on the host: drift by keyed hash, content not shown.
        try "api_key: hand-edited\n".write(toFile: secret, atomically: false, encoding: .utf8)
        let drift = try meridian(["drift"], key: "NEW-VALUE")
        #expect(drift.status == 2, "\(drift.stdout)\n\(drift.stderr)")
        #expect(drift.stdout.contains("config/inference-north/secret.yaml"), "\(drift.stdout)")
        #expect(!drift.stdout.contains("hand-edited"))

        // The template no longer holds a secret: the old (secret) content is
        // never diffed, hashed into the plan or printed.
        try "api_key: none\n".write(to: fleet.directory.appendingPathComponent("templates/secret.yaml.tmpl"), atomically: true, encoding: .utf8)
        let planFile = fleet.directory.appendingPathComponent("p.json").path
        let plan = try meridian(["plan", "--out", planFile], key: "NEW-VALUE")
        #expect(plan.status == 0, "\(plan.stdout)\n\(plan.stderr)")
        #expect(plan.stdout.contains("was sensitive when applied"), "\(plan.stdout)")
        let saved = read(planFile) ?? ""
        for text in [plan.stdout, saved] {
            #expect(!text.contains("hand-edited") && !text.contains("NEW-VALUE"))
            #expect(!text.contains(SHA256.hex("api_key: hand-edited\n")))
        }

        // An edited plan: a delete outside the host root is refused, nothing changes.
        let victim = fleet.directory.appendingPathComponent("victim.txt").path
        try "keep me\n".write(toFile: victim, atomically: true, encoding: .utf8)
        var document = try #require(try JSONSerialization.jsonObject(with: Data(saved.utf8)) as? [String: Any])
        var regions = try #require(document["regions"] as? [[String: Any]])
        var hosts = try #require(regions[0]["hosts"] as? [[String: Any]])
        var actions = try #require(hosts[0]["actions"] as? [[String: Any]])
        let escape = String(repeating: "../", count: 12) + String(victim.dropFirst())
        actions.append(["id": "north/\(host.name):delete_file:\(escape)", "kind": "delete_file", "subject": escape, "sensitive": false, "reasons": []])
        hosts[0]["actions"] = actions
        regions[0]["hosts"] = hosts
        document["regions"] = regions
        try JSONSerialization.data(withJSONObject: document).write(to: URL(fileURLWithPath: planFile))
        let forged = try meridian(["apply", planFile], key: "NEW-VALUE")
        #expect(forged.status == 1, "\(forged.stdout)\n\(forged.stderr)")
        #expect(forged.stderr.contains("the plan is not what planning this fleet gives"), "\(forged.stderr)")
        #expect(read(victim) == "keep me\n")
        #expect(read(secret) == "api_key: hand-edited\n")
    }
}
