import Foundation
import Testing
import MeridianBasics
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

/// `ResidencyPlan.compare`: the residency section of a plan, from the
/// bundles observed on hosts against the fleet's table.
@Suite struct ResidencyPlanTests {
    /// One desired gateway host per region, each with the fleet's bundle and gateway configuration.
    static func desired(_ fleet: Fleet) -> [DesiredHostState] {
        let bundles = GovernanceBundle.renderAll(fleet).0
        return fleet.regions.map { region in
            let gateway = region.gateways[0]
            let bundle = bundles.first { $0.region == region.name }!
            return DesiredHostState(region: region.name, host: gateway.name, address: gateway.address, root: "/srv", roles: ["gateway"],
                                    files: [ManagedFile(path: DesiredHostState.governanceBundlePath, content: .bytes(bundle.canonicalData), source: "bundle")],
                                    releases: [], components: [], gateway: GatewayConfig.forGateway(gateway, in: region, fleet: fleet, splits: [:]))
        }
    }

    /// What a host applied with `bundle` shows: its hash, and its content when it differs from what is desired.
    static func observed(_ bundle: Data, desired: DesiredHostState) -> ObservedHostState {
        let path = DesiredHostState.governanceBundlePath
        let differs = desired.files.first { $0.path == path }?.content.fingerprint != SHA256.hex(bundle)
        return ObservedHostState(files: [path: .regular(sha256: SHA256.hex(bundle), mode: 0o644, size: bundle.count)],
                                 fileContents: differs ? [path: bundle] : [:])
    }

    @Test func gainedLostAndRemovedRulesASettingAndTheGatewaysTheyChange() throws {
        let old = ResidencyCompilerTests.sample
        var new = old
        // Before: EU data in the EU, UK data in the UK then the EU, US data in the US.
        // After: no EU rule, UK data only in the EU, US data also in the UK, another refuse status.
        new.policies = [Policy(name: "baseline", file: "policies/baseline.yaml", residency: [
            FleetFixture.residencyRule("UK", ["EU"], line: 5, index: 0),
            FleetFixture.residencyRule("US", ["US", "UK"], line: 7, index: 1),
        ])]
        new.residency.refuseStatus = 403
        let oldBundles = GovernanceBundle.renderAll(old.fleet).0
        let desired = Self.desired(new.fleet)
        var observed: [HostID: ObservedHostState] = [:]
        for host in desired { observed[host.id] = Self.observed(oldBundles.first { $0.region == host.region }!.canonicalData, desired: host) }
        let plan = try #require(ResidencyPlan.compare(desired: desired, observed: observed))
        #expect(plan.entries.map(\.data) == ["EU", "UK", "US"])
        #expect(plan.entries[0].after == nil && plan.entries[0].lost == ["eu-central", "eu-north", "eu-west"])
        #expect(plan.entries[1].lost == ["uk-south"] && plan.entries[1].gained.isEmpty)
        #expect(plan.entries[2].gained == ["uk-south"])
        #expect(plan.settings == ["refuse status 451 → 403"])
        #expect(plan.gateways.count == desired.count)
        #expect(plan.renderText().contains("  EU data: rule removed, every gateway refuses it (was eu-central, eu-north, eu-west)\n"))
        #expect(plan.renderText().contains("  UK data: loses uk-south (now eu-central, eu-north, eu-west; was uk-south, eu-central, eu-north, eu-west)\n"))

        // Nothing changes where hosts hold the fleet's own bundle, and a host never applied is no baseline.
        var same: [HostID: ObservedHostState] = [:]
        for host in desired { same[host.id] = Self.observed(host.files[0].content.displayBytes, desired: host) }
        #expect(ResidencyPlan.compare(desired: desired, observed: same) == nil)
        #expect(ResidencyPlan.compare(desired: desired, observed: [:]) == nil)
    }
}
