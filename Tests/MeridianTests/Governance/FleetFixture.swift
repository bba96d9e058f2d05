import Foundation
import MeridianModel

/// Builds small fleets directly as values for governance and residency tests,
/// with source locations recorded the way the loader records them.
struct FleetFixture {
    var name = "test-fleet"
    var components: [Component] = [
        FleetFixture.component("inference", strategy: .canary),
        FleetFixture.component("knowledge-base", strategy: .blueGreen),
    ]
    var platform: [String: Version] = ["inference": Version(2, 1, 0), "knowledge-base": Version(1, 2, 0)]
    var residency = ResidencySettings()
    var regions: [Region] = []
    var policies: [Policy] = []
    var sources = SourceMap()

    var fleet: Fleet {
        Fleet(
            settings: FleetSettings(name: name, defaults: FleetDefaults(), components: components, platform: platform, waves: [], residency: residency),
            regions: regions, policies: policies, fileHashes: [:], sources: sources)
    }

    static func component(_ name: String, strategy: RolloutStrategy) -> Component {
        Component(name: name, artifact: .path("artifacts/\(name)-{version}.tar.gz"), start: ["./bin/\(name)", "--port", "{port}"],
                  ports: SlotPorts(blue: 9000, green: 9001), strategy: strategy)
    }

    /// A region file `regions/NAME.yaml` with a gateway host and one host running `runs`.
    static func region(_ name: String, _ jurisdiction: String, runs: [String] = ["inference", "knowledge-base"], priority: Int = 100,
                       variables: [String: String] = [:], policies: [String] = [], versions: [String: String] = [:]) -> Region {
        Region(
            name: name, file: "regions/\(name).yaml", jurisdiction: Jurisdiction(jurisdiction)!, gatewayPort: 8443, priority: priority,
            hosts: [
                FleetHost(name: "\(name)-gw", address: "127.0.0.1", roles: [.gateway]),
                FleetHost(name: "\(name)-app", address: "127.0.0.1", roles: runs.map { .component($0) }),
            ],
            variables: variables.mapValues(VariableValue.init), policies: policies,
            versions: versions.mapValues { Version($0)! })
    }

    /// A governance rule written at `line` of `policies/FILE.yaml`, as the
    /// `index`th entry of its governance list.
    static func rule(_ id: String, _ kind: GovernanceRuleKind, policy: String = "baseline", line: Int, index: Int = 0, description: String? = nil) -> GovernanceRule {
        GovernanceRule(id: id, description: description, kind: kind,
                       location: SourceLocation(file: "policies/\(policy).yaml", line: line, column: 5), path: "governance[\(index)]")
    }

    static func residencyRule(_ data: String, _ allowed: [String], policy: String = "baseline", line: Int = 3, index: Int = 0) -> ResidencyRule {
        ResidencyRule(data: Jurisdiction(data)!, allowed: allowed.map { Jurisdiction($0)! },
                      location: SourceLocation(file: "policies/\(policy).yaml", line: line, column: 5), path: "residency[\(index)]")
    }

    static func range(_ text: String) -> VersionRange {
        guard case .success(let range) = VersionRange.parse(text) else { fatalError("bad range in a test: \(text)") }
        return range
    }

    static func date(_ text: String) -> Date {
        try! Date(text, strategy: .iso8601)
    }

    mutating func record(_ file: String, _ path: String, _ line: Int, _ column: Int) {
        sources.record(SourceLocation(file: file, line: line, column: column), path: path)
    }
}
