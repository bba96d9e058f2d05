import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

/// The pure parts of the drift job's residency check: reading the applied
/// table back from a bundle, and turning failed checks into findings.
@Suite struct ResidencyDriftTests {
    @Test func theAppliedTableReadsBackFromEveryRegionsBundle() throws {
        let fleet = ResidencyCompilerTests.sample.fleet
        let table = ResidencyCompiler.compile(fleet).0
        for bundle in GovernanceBundle.renderAll(fleet).0 {
            let applied = try AppliedResidency.read(bundle: bundle.canonicalData)
            #expect(applied.table == table)
            #expect(applied.header == fleet.settings.residency.header && applied.refuseStatus == fleet.settings.residency.refuseStatus)
        }
        #expect(throws: AppliedResidency.Unreadable.self) { try AppliedResidency.read(bundle: Data("{\"residency\":{}}".utf8)) }
    }

    @Test func onlyFailedChecksAreFindingsAndAServingOutsideTheSetSaysSo() {
        let table = ResidencyCompiler.compile(ResidencyCompilerTests.sample.fleet).0
        let probes = ResidencyVerification.probes(table)
        let healthy: Set<String> = ["eu-west", "us-east", "uk-south"]
        // us-east answers every probe as the table says except EU data, which it serves itself.
        let answers: [ResidencyAnswer] = probes.map { probe in
            if probe.header == "EU" { return .served("us-east") }
            return ResidencyVerification.expected(table, probe: probe, at: "us-east", healthy: healthy)
        }
        let checks = ResidencyVerification.checks(table, region: "us-east", host: "us-east-1", probes: probes, answers: answers, healthy: healthy)
        let findings = ResidencyVerification.driftFindings(checks, table: table, healthy: healthy)
        #expect(findings.count == 1)
        #expect(findings.first?.kind == .residencyViolation && findings.first?.subject == "residency EU")
        #expect(findings.first?.detail == "EU data was served by us-east; the routing table says served by eu-west — us-east is outside the regions allowed for EU data (eu-central, eu-north, eu-west) (healthy: eu-west, uk-south, us-east)")
        #expect(!DriftKind.residencyViolation.isRemediable)
    }

    @Test func aRegionIsHealthyOnlyWithEveryGatewayReachedAndItsRoutedComponentsServing() {
        let fleet = ResidencyCompilerTests.sample.fleet
        var components: [HostID: Set<String>] = [:]
        for region in fleet.regions {
            for host in region.hosts { components[HostID(region: region.name, host: host.name)] = Set(host.components) }
        }
        #expect(ResidencyVerification.healthyRegions(fleet, components: components) == Set(fleet.regions.filter { !$0.gateways.isEmpty }.map(\.name)))
        let euWest = fleet.regions.first { $0.name == "eu-west" }!
        components[HostID(region: "eu-west", host: euWest.gateways[0].name)] = nil
        #expect(!ResidencyVerification.healthyRegions(fleet, components: components).contains("eu-west"))
    }
}
