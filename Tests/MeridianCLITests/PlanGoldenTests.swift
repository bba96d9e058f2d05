import Foundation
import Testing
import MeridianTestHosts

/// The text and JSON summary a user sees from `meridian plan` against freshly
/// started hosts, compared with Tests/Golden/plan-cli/. The fleet folder's
/// temporary path is replaced by FLEET and the hosts' folder by HOSTS in the
/// transcript; JSON members that hash those paths are replaced by a marker.
@Suite struct PlanGoldenTests {
    @Test func theFirstPlanOfFreshHostsMatchesTheGoldenText() throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.85")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north", "south"], portBase: 18940)
        defer { fleet.tearDown() }
        var run = try fleet.meridian(["plan", "--detailed-exitcode"])
        run.arguments = run.arguments.map { $0 == fleet.path ? "FLEET" : $0 }
        run.stdout = run.stdout.replacingOccurrences(of: fleet.path, with: "FLEET")
        run.stderr = run.stderr.replacingOccurrences(of: fleet.path, with: "FLEET")
        #expect(run.status == 2)
        try CLI.expectGolden(run, "plan-cli/first-plan.txt")

        var json = try fleet.meridian(["plan", "--format", "json"])
        json.arguments = json.arguments.map { $0 == fleet.path ? "FLEET" : $0 }
        json.stdout = Self.placeless(json.stdout, fleet: fleet.path, hosts: cluster.directory)
        json.stderr = Self.placeless(json.stderr, fleet: fleet.path, hosts: cluster.directory)
        #expect(json.status == 0)
        try CLI.expectGolden(json, "plan-cli/first-plan.json")
    }

    /// The text with the run's temporary folders named FLEET and HOSTS, and
    /// the hashes that cover them (which differ in every run) masked.
    static func placeless(_ text: String, fleet: String, hosts: String) -> String {
        var text = text.replacingOccurrences(of: fleet, with: "FLEET").replacingOccurrences(of: hosts, with: "HOSTS")
        // The YAML files name the hosts' folders, and the plan hash covers them.
        for member in ["observed_state_sha256", "plan_hash", "[^\"]+\\.yaml"] {
            text = text.replacingOccurrences(of: "\"(\(member))\" : \"[0-9a-f]{64}\"", with: "\"$1\" : \"(varies)\"", options: .regularExpression)
        }
        return text
    }
}
