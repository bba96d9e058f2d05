import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

@Suite struct ResidencyCompilerTests {
    /// EU, UK and US regions; UK data may also go to the EU, listed own-second on purpose.
    static var sample: FleetFixture {
        var fixture = FleetFixture()
        fixture.regions = [
            FleetFixture.region("eu-west", "EU"),
            FleetFixture.region("eu-central", "EU", priority: 10),
            FleetFixture.region("eu-north", "EU", priority: 10),
            FleetFixture.region("uk-south", "UK"),
            FleetFixture.region("us-east", "US"),
        ]
        fixture.policies = [
            Policy(name: "baseline", file: "policies/baseline.yaml", residency: [
                FleetFixture.residencyRule("EU", ["EU"], line: 3, index: 0),
                FleetFixture.residencyRule("UK", ["EU", "UK"], line: 5, index: 1),
            ]),
            Policy(name: "americas", file: "policies/americas.yaml", residency: [
                FleetFixture.residencyRule("US", ["US"], policy: "americas", line: 2, index: 0),
            ]),
        ]
        return fixture
    }

    func j(_ code: String) -> Jurisdiction { Jurisdiction(code)! }

    @Test func ownJurisdictionFirstThenAllowedOrderThenPriorityThenName() {
        let (table, diagnostics) = ResidencyCompiler.compile(Self.sample.fleet)
        #expect(diagnostics.isEmpty)
        #expect(table.entries.map(\.data) == [j("EU"), j("UK"), j("US")])
        #expect(table.entry(for: j("UK"))?.allowed == [j("UK"), j("EU")])
        #expect(table.entry(for: j("UK"))?.regions.map(\.name) == ["uk-south", "eu-central", "eu-north", "eu-west"])
        #expect(table.text == """
        DATA  ALLOWED JURISDICTIONS  REGIONS (in order)
        EU    EU                     eu-central, eu-north, eu-west
        UK    UK, EU                 uk-south, eu-central, eu-north, eu-west
        US    US                     us-east

        """)
    }

    @Test func ownJurisdictionNotAllowedIsLeftOut() {
        var fixture = Self.sample
        fixture.policies = [Policy(name: "baseline", file: "policies/baseline.yaml", residency: [
            FleetFixture.residencyRule("EU", ["EU"], line: 3, index: 0),
            FleetFixture.residencyRule("UK", ["EU"], line: 5, index: 1),
            FleetFixture.residencyRule("US", ["US"], line: 7, index: 2),
        ])]
        let (table, diagnostics) = ResidencyCompiler.compile(fixture.fleet)
        #expect(diagnostics.isEmpty)
        #expect(table.entry(for: j("UK"))?.regions.map(\.name) == ["eu-central", "eu-north", "eu-west"])
        #expect(table.decide(dataJurisdiction: j("UK"), at: "uk-south", healthy: ["uk-south", "eu-west"]) == .forward(to: "eu-west"))
    }

    @Test func conflictingDefinitionsAreAnErrorNamingBothPlaces() {
        var fixture = Self.sample
        fixture.policies.append(Policy(name: "zz", file: "policies/zz.yaml", residency: [
            FleetFixture.residencyRule("UK", ["UK"], policy: "zz", line: 4, index: 0),
            FleetFixture.residencyRule("EU", ["EU"], policy: "zz", line: 6, index: 1),
        ]))
        let (table, diagnostics) = ResidencyCompiler.compile(fixture.fleet)
        #expect(diagnostics.sorted.map(\.description) == [
            "policies/zz.yaml:4:5: residency[0]: data jurisdiction UK is defined differently in policies/baseline.yaml:5:5 (allowed [EU, UK]) and policies/zz.yaml:4:5 (allowed [UK]); keep one definition or make them identical",
        ])
        #expect(table.entry(for: j("UK"))?.allowed == [j("UK"), j("EU")], "the first definition in file order is kept")
    }

    @Test func aJurisdictionListedTwiceIsAnError() {
        var fixture = Self.sample
        fixture.policies[1].residency = [FleetFixture.residencyRule("US", ["US", "EU", "US"], policy: "americas", line: 2, index: 0)]
        fixture.record("policies/americas.yaml", "residency[0].allowed[2]", 3, 23)
        let (table, diagnostics) = ResidencyCompiler.compile(fixture.fleet)
        #expect(diagnostics.sorted.map(\.description) == [
            "policies/americas.yaml:3:23: residency[0].allowed[2]: US is listed twice in the jurisdictions allowed to process US data; list each jurisdiction once",
        ])
        #expect(table.entry(for: j("US"))?.regions.map(\.name) == ["us-east", "eu-central", "eu-north", "eu-west"])
    }

    @Test func dataWithNoRegionToProcessItIsAnError() {
        var fixture = Self.sample
        fixture.policies[1].residency = [
            FleetFixture.residencyRule("CH", ["CH", "SG"], policy: "americas", line: 2, index: 0),
            FleetFixture.residencyRule("US", ["US"], policy: "americas", line: 4, index: 1),
            FleetFixture.residencyRule("JP", [], policy: "americas", line: 6, index: 2),
        ]
        let (table, diagnostics) = ResidencyCompiler.compile(fixture.fleet)
        #expect(diagnostics.sorted.map(\.description) == [
            "policies/americas.yaml:2:5: residency[0]: no region can process CH data: no region is in CH or SG; add a region in CH or SG or allow another jurisdiction",
            "policies/americas.yaml:6:5: residency[2]: no region can process JP data: the rule allows no jurisdiction; list at least one jurisdiction in allowed",
        ])
        #expect(table.entry(for: j("CH"))?.regions == [])
        #expect(table.text.contains("CH    CH, SG                 (none)\n"))
    }

    @Test func warnsAboutRegionsWhoseDataNoRuleCoversAndAnUncoveredAssumption() {
        var fixture = Self.sample
        fixture.regions.append(FleetFixture.region("sg-1", "SG"))
        fixture.residency = ResidencySettings(missing: .assume(j("SG")))
        fixture.record("regions/sg-1.yaml", "jurisdiction", 2, 15)
        fixture.record("meridian.yaml", "residency.missing", 40, 12)
        let (table, diagnostics) = ResidencyCompiler.compile(fixture.fleet)
        #expect(!diagnostics.hasErrors)
        #expect(diagnostics.sorted.map(\.description) == [
            "meridian.yaml:40:12: residency.missing: warning: requests without a residency header are treated as SG data, but no residency rule covers SG, so they are all refused; add a rule with data: SG or assume a covered jurisdiction",
            "regions/sg-1.yaml:2:15: jurisdiction: warning: no residency rule covers SG data, so every gateway refuses requests that carry it (region sg-1 is in SG); add a rule with data: SG to a policy file",
        ])
        #expect(table.decide(dataJurisdiction: nil, at: "sg-1", healthy: ["sg-1"]) == .refuse(.unknownJurisdiction("SG")))
    }

    @Test func identicalDuplicatesAreFine() {
        var fixture = Self.sample
        fixture.policies[1].residency.append(FleetFixture.residencyRule("EU", ["EU"], policy: "americas", line: 9, index: 1))
        let (table, diagnostics) = ResidencyCompiler.compile(fixture.fleet)
        #expect(diagnostics.isEmpty)
        #expect(table == ResidencyCompiler.compile(Self.sample.fleet).0)
    }

    // MARK: decisions

    @Test func decisions() {
        var fixture = Self.sample
        fixture.residency = ResidencySettings(missing: .assume(j("EU")))
        let table = ResidencyCompiler.compile(fixture.fleet).0
        let everyone: Set<String> = ["eu-west", "eu-central", "eu-north", "uk-south", "us-east"]
        // Local jurisdiction allowed and healthy: served here, even when a preferred region exists.
        #expect(table.decide(dataJurisdiction: j("UK"), at: "eu-west", healthy: everyone) == .serveLocally)
        // Not allowed here: the first healthy allowed region in table order.
        #expect(table.decide(dataJurisdiction: j("UK"), at: "us-east", healthy: everyone) == .forward(to: "uk-south"))
        #expect(table.decide(dataJurisdiction: j("UK"), at: "us-east", healthy: ["eu-north", "eu-west", "us-east"]) == .forward(to: "eu-north"))
        // Allowed here but unhealthy: another allowed region takes it.
        #expect(table.decide(dataJurisdiction: j("EU"), at: "eu-central", healthy: ["eu-west"]) == .forward(to: "eu-west"))
        // Nothing allowed is healthy: refused, never sent outside the allowed set.
        #expect(table.decide(dataJurisdiction: j("EU"), at: "us-east", healthy: ["us-east", "uk-south"]) == .refuse(.noHealthyAllowedRegion(j("EU"))))
        // Missing header: assumed EU here.
        #expect(table.decide(dataJurisdiction: nil, at: "us-east", healthy: everyone) == .forward(to: "eu-central"))
        #expect(table.decide(header: "", at: "eu-west", healthy: everyone) == .serveLocally)
        // Unknown or malformed jurisdictions are refused.
        #expect(table.decide(dataJurisdiction: j("SG"), at: "eu-west", healthy: everyone) == .refuse(.unknownJurisdiction("SG")))
        #expect(table.decide(header: "eu", at: "eu-west", healthy: everyone) == .refuse(.unknownJurisdiction("eu")))
        #expect(table.decide(header: "US", at: "eu-west", healthy: everyone) == .forward(to: "us-east"))
        // Several header lines: equal ones once trimmed are one; lines that differ are refused wherever the first would go.
        #expect(table.decide(headerLines: ["US", " US\t"], at: "eu-west", healthy: everyone) == .forward(to: "us-east"))
        #expect(table.decide(headerLines: ["EU", "US"], at: "eu-west", healthy: everyone) == .refuse(.conflictingHeaders("EU", "US")))
        #expect(table.decide(headerLines: ["EU", "EU", "eu"], at: "eu-west", healthy: everyone) == .refuse(.conflictingHeaders("EU", "eu")))
        #expect(RefusalReason.conflictingHeaders("EU", "US").token == GatewayResidency.Refusal.conflictingJurisdictions.rawValue)
        #expect(table.decide(headerLines: ["EU", ""], at: "eu-west", healthy: everyone) == .refuse(.conflictingHeaders("EU", "")))
        #expect(table.decide(headerLines: [], at: "eu-west", healthy: everyone) == table.decide(header: nil, at: "eu-west", healthy: everyone))

        let refusing = ResidencyCompiler.compile(Self.sample.fleet).0
        #expect(refusing.decide(dataJurisdiction: nil, at: "eu-west", healthy: everyone) == .refuse(.missingHeader))
        #expect(refusing.decide(header: nil, at: "eu-west", healthy: everyone) == .refuse(.missingHeader))
    }

    @Test func refusalReasonsAreDistinct() {
        let reasons: [RefusalReason] = [.missingHeader, .unknownJurisdiction("XX"), .noHealthyAllowedRegion(j("EU"))]
        #expect(Set(reasons.map(\.token)).count == 3)
        #expect(reasons.map(\.description) == [
            "the request carries no residency header",
            "no residency rule covers data of jurisdiction \"XX\"",
            "no region allowed to process EU data is healthy",
        ])
    }

    // MARK: JSON

    @Test func jsonFormIsVersionedAndDecodesBack() throws {
        var fixture = Self.sample
        fixture.residency = ResidencySettings(missing: .assume(j("EU")))
        let table = ResidencyCompiler.compile(fixture.fleet).0.restricted(to: j("UK"))
        #expect(table.jsonText == """
        {
          "format_version": 1,
          "missing": {
            "action": "assume",
            "jurisdiction": "EU"
          },
          "routes": [
            {
              "allowed": [
                "UK",
                "EU"
              ],
              "data": "UK",
              "regions": [
                {
                  "jurisdiction": "UK",
                  "name": "uk-south"
                },
                {
                  "jurisdiction": "EU",
                  "name": "eu-central"
                },
                {
                  "jurisdiction": "EU",
                  "name": "eu-north"
                },
                {
                  "jurisdiction": "EU",
                  "name": "eu-west"
                }
              ]
            }
          ]
        }

        """)
        let full = ResidencyCompiler.compile(Self.sample.fleet).0
        for original in [table, full] {
            #expect(try JSONDecoder().decode(RoutingTable.self, from: Data(original.jsonText.utf8)) == original)
            #expect(try JSONDecoder().decode(RoutingTable.self, from: JSONEncoder().encode(original)) == original)
        }
    }

    @Test func otherFormatVersionsAreRefused() {
        let text = #"{"format_version":2,"missing":{"action":"refuse"},"routes":[]}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(RoutingTable.self, from: Data(text.utf8)) }
    }
}
