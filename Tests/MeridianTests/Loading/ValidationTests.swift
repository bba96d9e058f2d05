import Foundation
import Testing
@testable import MeridianLoading
@testable import MeridianModel

/// A small valid fleet that each test breaks in one place.
enum MinimalFleet {
    static let settings = """
    name: mini
    components:
      inference:
        artifact: artifacts/inference/{version}
        start: [bin/serve, --port, "{port}"]
        ports: { blue: 8101, green: 8102 }
        strategy: canary
    platform:
      inference: 2.0.0
    waves:
      - name: all
        regions: [eu-west, us-east]
    """

    static let euWest = """
    name: eu-west
    jurisdiction: EU
    hosts:
      - name: eu-1
        address: 127.0.1.1
        roles: [gateway, inference]
    variables:
      model: small
    config:
      - template: templates/a.tmpl
        destination: config/inference/a.yaml
        component: inference
    policies: [base]
    """

    static let usEast = """
    name: us-east
    jurisdiction: US
    hosts:
      - name: us-1
        address: 127.0.4.1
        roles: [gateway, inference]
    policies: [base]
    """

    static let base = """
    residency:
      - data: EU
        allowed: [EU]
      - data: US
        allowed: [US]
    governance:
      - id: two-x
        kind: version-range
        component: inference
        range: ">=2.0.0 <3.0.0"
    """

    static var files: [String: String] {
        ["meridian.yaml": settings, "regions/eu-west.yaml": euWest, "regions/us-east.yaml": usEast,
         "policies/base.yaml": base, "templates/a.tmpl": "model: {{ vars.model }}\n"]
    }

    static func load(_ changes: [String: String?] = [:]) -> LoadedFleet {
        var files = self.files
        for (path, text) in changes { files[path] = text }
        return FleetLoader(fileSystem: InMemoryFleetFileSystem(texts: files)).load()
    }

    static func diagnostics(_ changes: [String: String?]) -> [String] {
        load(changes).diagnostics.sorted.map(\.description)
    }
}

@Suite struct ValidationTests {
    @Test func minimalFleetIsValid() {
        #expect(MinimalFleet.diagnostics([:]) == [])
    }

    @Test func reportsTheExampleFromTheDesign() {
        let region = MinimalFleet.usEast.replacingOccurrences(of: "    address: 127.0.4.1\n", with: "    address: 127.0.4.1\n    port: 22a\n")
        #expect(MinimalFleet.diagnostics(["regions/us-east.yaml": region]) == [
            #"regions/us-east.yaml:6:11: hosts[0].port: expected an integer between 1 and 65535, got "22a""#,
        ])
    }

    @Test func unknownKeysGetSuggestions() {
        let region = MinimalFleet.usEast.replacingOccurrences(of: "policies:", with: "polices:")
        #expect(MinimalFleet.diagnostics(["regions/us-east.yaml": region]) == [
            #"regions/us-east.yaml:7:1: polices: unknown key "polices"; did you mean "policies"?"#,
        ])
    }

    @Test func missingRequiredFieldsAndWrongTypes() {
        let region = """
        name: us-east
        hosts:
          - name: us-1
            roles: gateway
        """
        #expect(MinimalFleet.diagnostics(["regions/us-east.yaml": region]) == [
            #"regions/us-east.yaml:1:1: jurisdiction: missing required key "jurisdiction""#,
            #"regions/us-east.yaml:3:5: hosts[0].address: missing required key "address""#,
            #"regions/us-east.yaml:4:12: hosts[0].roles: expected a list of roles: gateway and component names, got "gateway""#,
        ])
    }

    @Test func yamlSyntaxErrorsCarryTheParserPosition() {
        let diagnostics = MinimalFleet.diagnostics(["policies/base.yaml": "residency:\n  - data: EU\n   allowed: [EU\n"])
        #expect(diagnostics.count == 1)
        #expect(diagnostics[0].hasPrefix("policies/base.yaml:3:"), "\(diagnostics)")
        #expect(diagnostics[0].contains("YAML syntax error"))
    }

    @Test func duplicateNamesAndAddresses() {
        let region = MinimalFleet.usEast
            .replacingOccurrences(of: "name: us-1", with: "name: eu-1")
            .replacingOccurrences(of: "127.0.4.1", with: "127.0.1.1")
        #expect(MinimalFleet.diagnostics(["regions/us-east.yaml": region]) == [
            #"regions/us-east.yaml:4:11: hosts[0].name: host name "eu-1" is already used by regions/eu-west.yaml hosts[0]: host names must be unique in the fleet"#,
            "regions/us-east.yaml:5:14: hosts[0].address: 127.0.1.1 port 22 is already host eu-1 of region eu-west: each host needs its own address or port",
        ])
        let copy = MinimalFleet.euWest.replacingOccurrences(of: "eu-1", with: "eu-9").replacingOccurrences(of: "127.0.1.1", with: "127.0.1.9")
        let twice = MinimalFleet.diagnostics(["regions/eu-west-copy.yaml": copy])
        #expect(twice.contains(#"regions/eu-west.yaml:1:7: name: region "eu-west" is also declared in regions/eu-west-copy.yaml: region names must be unique"#), "\(twice)")
    }

    @Test func danglingReferences() {
        let region = MinimalFleet.euWest
            .replacingOccurrences(of: "[gateway, inference]", with: "[gateway, inferense]")
            .replacingOccurrences(of: "templates/a.tmpl", with: "templates/b.tmpl")
            .replacingOccurrences(of: "[base]", with: "[bsae]")
        let diagnostics = MinimalFleet.diagnostics(["regions/eu-west.yaml": region])
        #expect(diagnostics.contains(#"regions/eu-west.yaml:6:22: hosts[0].roles[1]: no component "inferense" is declared in meridian.yaml; did you mean "inference"?"#), "\(diagnostics)")
        #expect(diagnostics.contains(#"regions/eu-west.yaml:10:15: config[0].template: no template file templates/b.tmpl in the fleet repository; did you mean "templates/a.tmpl"?"#), "\(diagnostics)")
        #expect(diagnostics.contains(#"regions/eu-west.yaml:13:12: policies[0]: no policy "bsae" in policies/; did you mean "base"?"#), "\(diagnostics)")
    }

    @Test func invalidVersionsAndRanges() {
        let settings = MinimalFleet.settings.replacingOccurrences(of: "inference: 2.0.0", with: "inference: 2.0")
        let policy = MinimalFleet.base.replacingOccurrences(of: ">=2.0.0 <3.0.0", with: ">=2.0.0 <3.0.x")
        let diagnostics = MinimalFleet.diagnostics(["meridian.yaml": settings, "policies/base.yaml": policy])
        #expect(diagnostics.contains(#"meridian.yaml:9:14: platform.inference: expected a version MAJOR.MINOR.PATCH such as 2.3.1, got "2.0""#), "\(diagnostics)")
        #expect(diagnostics.contains(#"policies/base.yaml:10:12: governance[0].range: invalid version range ">=2.0.0 <3.0.x": "<3.0.x" is not a comparator such as >=2.1.0, <3, ^2.1 or ~1.4.2"#), "\(diagnostics)")
    }

    @Test func canaryWeightsMustIncreaseAndStayWithin100() {
        let settings = MinimalFleet.settings.replacingOccurrences(of: "    strategy: canary", with: "    strategy: canary\n    canary:\n      steps: [10, 60, 50, 101]")
        #expect(MinimalFleet.diagnostics(["meridian.yaml": settings]) == [
            "meridian.yaml:9:23: components.inference.canary.steps[2]: canary weights must increase step by step: 50 follows 60",
            "meridian.yaml:9:27: components.inference.canary.steps[3]: expected a traffic percentage between 1 and 100, got 101",
        ])
    }

    @Test func wavesNameEachRegionExactlyOnce() {
        let settings = MinimalFleet.settings.replacingOccurrences(of: "regions: [eu-west, us-east]", with: "regions: [eu-west, eu-west, us-west]")
        #expect(MinimalFleet.diagnostics(["meridian.yaml": settings]) == [
            "meridian.yaml:12:24: waves[0].regions[1]: region eu-west is already in wave all: each region belongs to exactly one wave",
            #"meridian.yaml:12:33: waves[0].regions[2]: no region "us-west" in regions/; did you mean "eu-west"?"#,
            "meridian.yaml:11:3: waves: region us-east is in no wave: add it to one so upgrades reach it",
        ].sorted())
    }

    @Test func configDestinationsMayNotEscapeTheRoot() {
        let escaping = MinimalFleet.euWest.replacingOccurrences(of: "config/inference/a.yaml", with: "config/../../etc/cron.d/x")
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": escaping]) == [
            #"regions/eu-west.yaml:11:18: config[0].destination: "config/../../etc/cron.d/x" escapes the host root: remove '..' (and '.' or empty parts) from the destination"#,
        ])
        let absolute = MinimalFleet.euWest.replacingOccurrences(of: "config/inference/a.yaml", with: "/etc/a.yaml")
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": absolute]).first?.contains("is outside the host root") == true)
        // outside_root is refused, not silently dropped: with a relative destination too.
        let outside = absolute.replacingOccurrences(of: "    component: inference", with: "    component: inference\n    outside_root: true")
        let diagnostics = MinimalFleet.diagnostics(["regions/eu-west.yaml": outside])
        #expect(diagnostics.contains { $0.contains("config[0].outside_root: outside_root is not supported") }, "\(diagnostics)")
        #expect(diagnostics.contains { $0.contains("is outside the host root") })
        let relative = MinimalFleet.euWest.replacingOccurrences(of: "    component: inference", with: "    component: inference\n    outside_root: true")
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": relative]).count == 1)
        let off = MinimalFleet.euWest.replacingOccurrences(of: "    component: inference", with: "    component: inference\n    outside_root: false")
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": off]) == [])
    }

    @Test func everyProblemIsReportedAtOnce() {
        let settings = MinimalFleet.settings.replacingOccurrences(of: "8101", with: "80x")
        let region = MinimalFleet.usEast.replacingOccurrences(of: "jurisdiction: US", with: "jurisdiction: usa")
        let policy = MinimalFleet.base.replacingOccurrences(of: "version-range", with: "version-rang")
        let diagnostics = MinimalFleet.diagnostics(["meridian.yaml": settings, "regions/us-east.yaml": region, "policies/base.yaml": policy])
        #expect(Set(diagnostics.map { $0.split(separator: ":").first! }) == ["meridian.yaml", "regions/us-east.yaml", "policies/base.yaml"], "\(diagnostics)")
    }

    @Test func emptyAndBinaryFilesAreDiagnosed() {
        #expect(MinimalFleet.diagnostics(["policies/base.yaml": ""]).contains("policies/base.yaml:1:1: the file holds no YAML document: it is empty or only comments"))
        var files = MinimalFleet.files.mapValues { Data($0.utf8) }
        files["policies/base.yaml"] = Data("residency:\n  - data: \u{00e9}".utf8.dropLast()) + Data([0xff])
        let loaded = FleetLoader(fileSystem: InMemoryFleetFileSystem(files: files)).load()
        #expect(loaded.diagnostics.sorted.map(\.description).first == "policies/base.yaml:2:11: the file is not valid UTF-8 text: save it as UTF-8")
    }

    @Test func secretsWrittenIntoTheFleetAreFlagged() {
        let region = MinimalFleet.euWest.replacingOccurrences(of: "  model: small", with: "  model: small\n  db_password: hunter2\n  api_key: env:API_KEY\n  max_tokens: 100")
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": region]) == [
            #"regions/eu-west.yaml:9:16: variables.db_password: warning: "db_password" looks like a secret written into the fleet: reference it instead with env:NAME or file:PATH"#,
        ])
    }
}

/// The canary analysis settings: confidence and inconclusive handling.
@Suite struct CanaryAnalysisSettingsTests {
    static func settings(_ canary: String) -> String {
        MinimalFleet.settings.replacingOccurrences(of: "    strategy: canary", with: "    strategy: canary\n    canary:\n" + canary)
    }

    @Test func defaultsWhenUnset() throws {
        let fleet = try #require(MinimalFleet.load().fleet)
        let canary = try #require(fleet.component(named: "inference")).canary
        #expect(canary.analysis.confidence == 0.95)
        #expect(canary.inconclusive == InconclusiveHandling(wait: .seconds(300), then: .fail))
    }

    @Test func readsConfidenceAndInconclusiveHandling() throws {
        let text = Self.settings("      analysis: { confidence: 0.99 }\n      inconclusive: { wait: 10m, then: hold }")
        let loaded = MinimalFleet.load(["meridian.yaml": text])
        #expect(loaded.diagnostics.items.isEmpty, "\(loaded.diagnostics.sorted.map(\.description))")
        let canary = try #require(loaded.fleet?.component(named: "inference")).canary
        #expect(canary.analysis.confidence == 0.99)
        #expect(canary.inconclusive == InconclusiveHandling(wait: .seconds(600), then: .hold))
    }

    @Test func theExampleFleetShowsThem() throws {
        let fleet = try #require(FleetLoader(root: RepositoryPaths.root).load().fleet)
        let canary = try #require(fleet.component(named: "inference")).canary
        #expect(canary.analysis.confidence == 0.95)
        #expect(canary.inconclusive == InconclusiveHandling(wait: .seconds(300), then: .hold))
    }

    @Test func refusesBadValuesWithTheirPlace() {
        let text = Self.settings("      analysis: { confidence: 1.5 }\n      inconclusive: { wait: 2d, then: hodl, after: 3 }")
        #expect(MinimalFleet.diagnostics(["meridian.yaml": text]) == [
            "meridian.yaml:9:31: components.inference.canary.analysis.confidence: expected a number between 0.5 and 0.9999, got 1.5",
            "meridian.yaml:10:29: components.inference.canary.inconclusive.wait: expected at most 1d of extra waiting, got 2d: use then: hold to leave a step to an operator",
            #"meridian.yaml:10:39: components.inference.canary.inconclusive.then: expected fail (roll back) or hold (wait for meridian rollout promote), got "hodl"; did you mean "hold"?"#,
            #"meridian.yaml:10:45: components.inference.canary.inconclusive.after: unknown key "after"; expected one of: wait, then"#,
        ])
        let scalar = Self.settings("      inconclusive: hold")
        #expect(MinimalFleet.diagnostics(["meridian.yaml": scalar]) == [
            #"meridian.yaml:9:21: components.inference.canary.inconclusive: expected a mapping such as { wait: 5m, then: hold }, got "hold""#,
        ])
    }
}
