import Foundation
import Testing
import MeridianBasics

/// The text and JSON that `meridian validate` shows users, compared with
/// committed golden files: a change to them is a reviewed change.
@Suite struct ValidateGoldenTests {
    static let cases: [(fixture: String, golden: String)] = [
        (".", "example"),
        ("Tests/Fixtures/fleets/broken", "broken"),
        ("Tests/Fixtures/fleets/governance", "governance"),
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

    @Test func aMissingTemplateVariableIsAValidationError() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-template-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for item in ["meridian.yaml", "regions", "policies", "templates"] {
            try FileManager.default.copyItem(at: CLI.repositoryRoot.appendingPathComponent(item), to: folder.appendingPathComponent(item))
        }
        let template = folder.appendingPathComponent("templates/knowledge-base.yaml.tmpl")
        let text = try String(contentsOf: template, encoding: .utf8).replacingOccurrences(of: "vars.log_level", with: "vars.log_levle")
        try text.write(to: template, atomically: true, encoding: .utf8)
        let run = try CLI.run(["validate", "--fleet", folder.path])
        #expect(run.status == 65)
        #expect(run.stderr.contains("regions/us-east.yaml:18:15: config[1].template: templates/knowledge-base.yaml.tmpl:5:12: missing variable `vars.log_levle`: define it in the region's variables or add `| default \"…\"`"), "\(run.stderr)")
        #expect(run.stderr.hasSuffix("5 errors, 0 warnings.\n"), "one error per region, not per host")
    }

    @Test func routesAndBundleMatchGolden() throws {
        try CLI.expectGolden(try CLI.run(["routes"]), "routes/example.text")
        try CLI.expectGolden(try CLI.run(["routes", "--format", "json", "--jurisdiction", "UK"]), "routes/uk.json")
        try CLI.expectGolden(try CLI.run(["bundle", "uk-south"]), "bundle/uk-south.text")
    }

    @Test func bundleJSONIsExactlyTheHashedBytes() throws {
        let text = try CLI.run(["bundle", "eu-west"])
        let json = try CLI.run(["bundle", "eu-west", "--format", "json"])
        let hash = text.stdout.split(separator: "\n").last.map { String($0.dropFirst("sha256:".count)) }
        #expect(hash == SHA256.hex(Data(json.stdout.utf8).dropLast()))
    }

    @Test func unknownNamesAreExplained() throws {
        let bundle = try CLI.run(["bundle", "eu-wset"])
        #expect(bundle.status == 1)
        #expect(bundle.stderr == "error: no region \"eu-wset\" in the fleet; did you mean \"eu-west\"?\n")
        let routes = try CLI.run(["routes", "--jurisdiction", "CH"])
        #expect(routes.status == 1)
        #expect(routes.stderr.hasPrefix("error: no residency rule covers data of jurisdiction CH"))
        #expect(try CLI.run(["routes", "--jurisdiction", "eu"]).status == 64)
        #expect(try CLI.run(["routes", "--fleet", "Tests/Fixtures/fleets/governance"]).status == 65)
    }

    enum OutputFormat: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case text, json
        var testDescription: String { rawValue }
    }
}
