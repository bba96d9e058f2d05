import Foundation
import Testing
@testable import MeridianBasics
@testable import MeridianModel
@testable import MeridianPlanning

@Suite struct GovernanceBundleTests {
    /// A fixed small fleet: two regions, two policies, one rule of each kind.
    static func fixture(reversed: Bool = false) -> FleetFixture {
        var fixture = FleetFixture()
        fixture.name = "acme"
        fixture.residency = ResidencySettings(header: "X-Data-Residency", missing: .refuse, refuseStatus: 451)
        let residency = [
            FleetFixture.residencyRule("EU", ["EU"], line: 3, index: 0),
            FleetFixture.residencyRule("UK", ["UK", "EU"], line: 5, index: 1),
        ]
        let baseline = Policy(name: "baseline", file: "policies/baseline.yaml",
            residency: reversed ? residency.reversed() : residency,
            governance: [
                FleetFixture.rule("retention-30d", .requireVariable(name: "retention_days", allowed: ["30"]), line: 9, index: 0,
                                  description: "Chat logs are kept at most 30 days."),
                FleetFixture.rule("inference-2x", .versionRange(component: "inference", range: FleetFixture.range(">=2.0.0 <3.0.0")), line: 14, index: 1),
                FleetFixture.rule("canary-inference", .rolloutStrategy(component: "inference", strategy: .canary), line: 18, index: 2),
                FleetFixture.rule("skew", .maxVersionSkew(component: "knowledge-base", level: .minor, max: 1), line: 22, index: 3),
                FleetFixture.rule("year-end-freeze", .freezeWindow(from: FleetFixture.date("2026-12-20T00:00:00Z"), to: FleetFixture.date("2027-01-04T00:00:00Z"),
                                                                   reason: "Year-end change freeze."), line: 27, index: 4),
            ])
        let us = Policy(name: "us", file: "policies/us.yaml",
            residency: [FleetFixture.residencyRule("US", ["US"], policy: "us", line: 2, index: 0)],
            governance: [FleetFixture.rule("audit", .requireVariable(name: "audit_sink", allowed: nil), policy: "us", line: 5, index: 0)])
        fixture.policies = reversed ? [us, baseline] : [baseline, us]
        let regions = [
            FleetFixture.region("eu-west", "EU", variables: ["retention_days": "30"], policies: ["baseline"], versions: ["knowledge-base": "1.3.0"]),
            FleetFixture.region("uk-south", "UK", runs: ["inference"], variables: ["retention_days": "30"], policies: ["baseline"]),
            FleetFixture.region("us-east", "US", variables: ["retention_days": "30", "audit_sink": "env:AUDIT"], policies: ["baseline", "us"]),
        ]
        fixture.regions = reversed ? regions.reversed() : regions
        return fixture
    }

    @Test func bundleOfOneRegion() {
        let (bundles, diagnostics) = GovernanceBundle.renderAll(Self.fixture().fleet)
        #expect(diagnostics.isEmpty)
        #expect(bundles.map(\.region) == ["eu-west", "uk-south", "us-east"])
        let ukSouth = bundles[1]
        #expect(ukSouth.prettyText == """
        {
          "fleet": "acme",
          "format_version": 1,
          "policies": [
            "baseline"
          ],
          "region": {
            "jurisdiction": "UK",
            "name": "uk-south"
          },
          "residency": {
            "header": "X-Data-Residency",
            "missing": {
              "action": "refuse"
            },
            "refuse_status": 451,
            "routes": [
              {
                "allowed": [
                  "EU"
                ],
                "data": "EU",
                "regions": [
                  {
                    "jurisdiction": "EU",
                    "name": "eu-west"
                  }
                ]
              },
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
                    "name": "eu-west"
                  }
                ]
              },
              {
                "allowed": [
                  "US"
                ],
                "data": "US",
                "regions": [
                  {
                    "jurisdiction": "US",
                    "name": "us-east"
                  }
                ]
              }
            ]
          },
          "rules": [
            {
              "description": "Chat logs are kept at most 30 days.",
              "id": "retention-30d",
              "kind": "require-variable",
              "parameters": {
                "allowed": [
                  "30"
                ],
                "variable": "retention_days"
              },
              "policy": "baseline"
            },
            {
              "id": "inference-2x",
              "kind": "version-range",
              "parameters": {
                "component": "inference",
                "range": ">=2.0.0 <3.0.0"
              },
              "policy": "baseline"
            },
            {
              "id": "canary-inference",
              "kind": "rollout-strategy",
              "parameters": {
                "component": "inference",
                "strategy": "canary"
              },
              "policy": "baseline"
            },
            {
              "id": "skew",
              "kind": "max-version-skew",
              "parameters": {
                "component": "knowledge-base",
                "level": "minor",
                "max": 1
              },
              "policy": "baseline"
            },
            {
              "id": "year-end-freeze",
              "kind": "freeze-window",
              "parameters": {
                "from": "2026-12-20T00:00:00Z",
                "reason": "Year-end change freeze.",
                "to": "2027-01-04T00:00:00Z"
              },
              "policy": "baseline"
            }
          ],
          "versions": {
            "inference": "2.1.0"
          }
        }

        """)
        #expect(ukSouth.hash == SHA256.hex(ukSouth.canonicalData))
        #expect(ukSouth.canonicalData == ukSouth.document.canonicalData)
        #expect(!String(decoding: ukSouth.canonicalData, as: UTF8.self).contains("\n"))
    }

    /// The hashes are golden: a change here changes every host's bundle and
    /// shows up as drift, so it must be a deliberate, reviewed change. (The
    /// uk-south value was checked against an independent canonical
    /// serialization of the document above and sha256sum.)
    @Test func goldenHashes() {
        let bundles = GovernanceBundle.renderAll(Self.fixture().fleet).0
        #expect(bundles.map(\.hash) == [
            "1f4d66c3fc9f511974039e80457b08e55356abc51f4cb155a3060b00641f766b",
            "48e0a5f8f8e97998d1750d6638287e47d4d7cb855987ad2dea11193b681662cd",
            "c8cfb3c8a6e759d4987160e53def20c6314eeb0cc8e904536688a73fc855b40a",
        ])
    }

    @Test func sameFleetSameBytesWhateverTheInputOrder() {
        let first = GovernanceBundle.renderAll(Self.fixture().fleet).0
        let again = GovernanceBundle.renderAll(Self.fixture().fleet).0
        let reversed = GovernanceBundle.renderAll(Self.fixture(reversed: true).fleet).0
        #expect(first == again)
        #expect(first.map(\.canonicalData) == reversed.map(\.canonicalData))
        #expect(Set(first.map(\.hash)).count == first.count, "each region has its own bundle")
    }

    @Test func nothingLocalOrSecretLeaksIntoTheBundle() {
        var fixture = Self.fixture()
        fixture.sources.record(SourceLocation(file: "regions/us-east.yaml", line: 3, column: 1), path: "variables")
        let usEast = GovernanceBundle.renderAll(fixture.fleet).0[2]
        let text = String(decoding: usEast.canonicalData, as: UTF8.self)
        #expect(text == String(decoding: GovernanceBundle.renderAll(Self.fixture().fleet).0[2].canonicalData, as: UTF8.self),
                "source locations are not part of the bundle")
        #expect(!text.contains("/srv") && !text.contains("env:AUDIT") && !text.contains(".yaml"))
        #expect(text.contains(#""policies":["baseline","us"]"#))
    }

    @Test func aChangedRuleChangesTheHashOfTheRegionsUnderIt() {
        let before = GovernanceBundle.renderAll(Self.fixture().fleet).0
        var fixture = Self.fixture()
        fixture.policies[1].governance[0].kind = .requireVariable(name: "audit_sink", allowed: ["syslog"])
        let after = GovernanceBundle.renderAll(fixture.fleet).0
        #expect(after[0].hash == before[0].hash)
        #expect(after[1].hash == before[1].hash)
        #expect(after[2].hash != before[2].hash)
    }
}
