import Foundation
import Testing

/// The text and JSON that `meridian validate` shows users, compared with
/// committed golden files: a change to them is a reviewed change.
@Suite struct ValidateGoldenTests {
    static let cases: [(fixture: String, golden: String)] = [
        (".", "example"),
        ("Tests/Fixtures/fleets/broken", "broken"),
    ]

    @Test(arguments: cases.map(\.fixture), [OutputFormat.text, .json])
    func validateOutputMatchesGolden(fixture: String, format: OutputFormat) throws {
        let golden = Self.cases.first { $0.fixture == fixture }!.golden
        let run = try CLI.run(["validate", "--fleet", fixture, "--format", format.rawValue])
        try CLI.expectGolden(run, "validate/\(golden).\(format.rawValue)")
    }

    @Test func exitCodes() throws {
        #expect(try CLI.run(["validate"]).status == 0)
        #expect(try CLI.run(["validate", "--fleet", "Tests/Fixtures/fleets/broken"]).status == 65)
        #expect(try CLI.run(["validate", "--fleet", "Tests/Fixtures/no-such-fleet"]).status == 65)
        #expect(try CLI.run(["validate", "--format", "yaml"]).status == 64)
    }

    @Test func fleetComesFromTheEnvironmentWhenNotGiven() throws {
        let run = try CLI.run(["validate"], environment: ["MERIDIAN_FLEET": "Tests/Fixtures/fleets/broken"])
        #expect(run.status == 65)
        #expect(run.stderr.contains("meridian.yaml:6:5: defaults.ssh.prot: unknown key \"prot\"; did you mean \"port\"?"))
    }

    enum OutputFormat: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case text, json
        var testDescription: String { rawValue }
    }
}
