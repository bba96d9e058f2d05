import Foundation
import Testing
import MeridianTestHosts

/// The text and JSON summary a user sees from `meridian plan` against freshly
/// started hosts, compared with Tests/Golden/plan-cli/. The fleet folder's
/// temporary path is replaced by FLEET in the transcript.
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
    }
}
