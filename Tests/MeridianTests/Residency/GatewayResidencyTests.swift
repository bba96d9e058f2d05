import Foundation
import Testing
@testable import MeridianLoading
@testable import MeridianModel
@testable import MeridianPlanning

@Suite struct GatewayResidencyTests {
    func j(_ code: String) -> Jurisdiction { Jurisdiction(code)! }

    /// The hop lists of every region's section are its table entries without
    /// the region itself, and the rendered hop maps name nothing else.
    @Test func hopsAreTheTablesRegionsWithoutTheGatewaysOwnAndNothingElse() throws {
        let fleet = ResidencyCompilerTests.sample.fleet
        let table = ResidencyCompiler.compile(fleet).0
        for region in fleet.regions {
            let section = try #require(GatewayResidency.forRegion(region, fleet: fleet, table: table))
            for entry in table.entries {
                let route = try #require(section.routes.first { $0.data == entry.data })
                #expect(route.hops == entry.regions.map(\.name).filter { $0 != region.name })
                #expect(route.servesLocally == entry.admits(region: region.name))
            }
            #expect(Set(section.peers.map(\.region)) == Set(section.routes.flatMap(\.hops)))
            // In the text: every line of a hop map names a region its data's entry allows, never this one.
            let lines = section.httpLines().map { $0.trimmingCharacters(in: .whitespaces) }
            var inHopMap = false
            for line in lines {
                if line.hasPrefix("map $meridian_data $meridian_hop_") { inHopMap = true; continue }
                if line == "}" { inHopMap = false; continue }
                guard inHopMap, !line.hasPrefix("default") else { continue }
                let words = line.dropLast().split(separator: " ").map(String.init)
                let entry = try #require(table.entry(for: j(words[0])))
                #expect(entry.admits(region: words[1]) && words[1] != region.name, "\(region.name): \(line)")
            }
        }
    }

    @Test func aFleetWithoutResidencyRulesGetsNoSection() {
        var fixture = ResidencyCompilerTests.sample
        fixture.policies = []
        let fleet = fixture.fleet
        #expect(GatewayResidency.forRegion(fleet.regions[0], fleet: fleet, table: ResidencyCompiler.compile(fleet).0) == nil)
    }

    @Test func theFirstStepOfEachJurisdictionFollowsTheTable() throws {
        let fleet = ResidencyCompilerTests.sample.fleet
        let table = ResidencyCompiler.compile(fleet).0
        let us = try #require(GatewayResidency.forRegion(fleet.regions.first { $0.name == "us-east" }!, fleet: fleet, table: table))
        let lines = us.httpLines().map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains("\"0|0|EU\" @meridian_hop_1;"))
        #expect(lines.contains("\"0|1|EU\" @meridian_refuse_not_allowed_here;"))
        #expect(lines.contains("\"0|0|US\" local;"))
        #expect(lines.contains("\"0|1|US\" local;"))
        #expect(lines.contains("\"~^value:EU$\" EU;"))
        #expect(lines.contains("none -missing;") && lines.contains("value: -missing;"))
        // Two residency header lines that differ are refused first, marked or not.
        #expect(lines.contains("conflict -conflict;"))
        #expect(lines.contains("\"0|0|-conflict\" @meridian_refuse_conflicting_jurisdictions;"))
        #expect(lines.contains("\"0|1|-conflict\" @meridian_refuse_conflicting_jurisdictions;"))
        #expect(lines.contains("js_import meridian_residency from \(us.script.fileName);"))
        #expect(lines.contains("\"1|US\" @meridian_refuse_not_served_here;"))
        // us-east is the only US region: after its stack fails, US data is refused.
        #expect(lines.contains("\"0|US\" @meridian_refuse_no_healthy_region;"))
    }

    /// The pattern that stops a replay, on `METHOD|$upstream_status|$upstream_bytes_sent`.
    @Test func onlyANonIdempotentRequestThatReachedAFailedRegionIsHeldBack() throws {
        let section = GatewayResidency(region: "r", header: "X-Data-Residency", refuseStatus: 451, assumeWhenMissing: nil, routes: [], peers: [])
        let pattern = try NSRegularExpression(pattern: section.unsafeReplayPattern)
        func held(_ attempt: String) -> Bool { pattern.firstMatch(in: attempt, range: NSRange(attempt.startIndex..., in: attempt)) != nil }
        #expect(held("POST|502|174"))
        #expect(held("PATCH|502, 504|0, 310"))
        #expect(held("POST|502 : 502|0 : 220"))
        #expect(!held("POST|502|0"))
        #expect(!held("POST|502, 502|0, 0"))
        #expect(!held("POST|502 : 451|0 : 300"))
        #expect(!held("GET|502|174"))
        #expect(!held("PUT|502|174"))
        #expect(!held("POST||"))
    }

    @Test func theRefuseStatusMayNotBeOneTheGatewaysUse() {
        for status in [502, 504, 599] {
            let settings = MinimalFleet.settings + "\nresidency:\n  refuse_status: \(status)\n"
            let messages = MinimalFleet.diagnostics(["meridian.yaml": settings])
            #expect(messages.count == 1)
            #expect(messages.first?.contains("residency.refuse_status: \(status) cannot be the refuse status") == true, "\(messages)")
        }
        #expect(MinimalFleet.diagnostics(["meridian.yaml": MinimalFleet.settings + "\nresidency:\n  refuse_status: 403\n"]) == [])
    }

    @Test func spacesAndTabsAroundTheHeaderAreNotPartOfIt() {
        let table = ResidencyCompiler.compile(ResidencyCompilerTests.sample.fleet).0
        let everyone = Set(ResidencyCompilerTests.sample.fleet.regions.map(\.name))
        #expect(table.decide(header: " EU\t", at: "eu-west", healthy: everyone) == .serveLocally)
        #expect(table.decide(header: " \t", at: "eu-west", healthy: everyone) == .refuse(.missingHeader))
        #expect(table.decide(header: "E U", at: "eu-west", healthy: everyone) == .refuse(.unknownJurisdiction("E U")))
    }
}
