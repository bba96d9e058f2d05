import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

/// The examples in docs/residency.md and docs/policies.md are output of the
/// code, so the docs cannot drift from it.
@Suite struct ResidencyDocsTests {
    static func doc(_ name: String) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return try String(contentsOf: root.appendingPathComponent("docs/\(name)"), encoding: .utf8)
    }

    @Test func routesTableExampleIsWhatTheCompilerPrints() throws {
        let table = ResidencyCompiler.compile(ResidencyCompilerTests.sample.fleet).0
        #expect(try Self.doc("residency.md").contains("```\n" + table.text + "```\n"))
    }

    @Test func routesJSONExampleIsWhatTheCompilerPrints() throws {
        var fixture = ResidencyCompilerTests.sample
        fixture.regions = [FleetFixture.region("uk-south", "UK"), FleetFixture.region("eu-west", "EU")]
        let table = ResidencyCompiler.compile(fixture.fleet).0.restricted(to: Jurisdiction("UK")!)
        #expect(try Self.doc("residency.md").contains("```json\n" + table.jsonText + "```\n"))
    }

    @Test func governanceExampleMessageIsWhatTheEvaluatorSays() throws {
        var fixture = FleetFixture()
        fixture.policies = [Policy(name: "baseline", file: "policies/baseline.yaml", governance: [
            FleetFixture.rule("inference-2x", .versionRange(component: "inference", range: FleetFixture.range(">=2.0.0 <3.0.0")), line: 9),
        ])]
        fixture.regions = [FleetFixture.region("us-east", "US", policies: ["baseline"], versions: ["inference": "3.0.0"])]
        fixture.record("regions/us-east.yaml", "versions.inference", 12, 14)
        let message = GovernanceEvaluator.evaluate(fleet: fixture.fleet, now: Date(timeIntervalSince1970: 0), changingRegions: nil).sorted.map(\.description)
        #expect(message.count == 1)
        #expect(try Self.doc("policies.md").contains("```\n" + message[0] + "\n```\n"))
    }

    @Test func unprocessableDataExampleIsWhatTheCompilerSays() throws {
        var fixture = ResidencyCompilerTests.sample
        fixture.policies = [Policy(name: "baseline", file: "policies/baseline.yaml", residency: [FleetFixture.residencyRule("CH", ["CH", "SG"], line: 3, index: 0)])]
        let errors = ResidencyCompiler.compile(fixture.fleet).1.items.filter { $0.severity == .error }.map(\.description)
        #expect(errors.count == 1)
        #expect(try Self.doc("residency.md").contains("  " + errors[0] + "\n"))
    }
}
