import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

@Suite struct GovernanceEvaluatorTests {
    static let calm = FleetFixture.date("2026-06-01T12:00:00Z")

    /// One policy `baseline` holding `rule`, and the regions given, all referencing it.
    func fleet(_ rules: [GovernanceRule], _ regions: [Region], edit: (inout FleetFixture) -> Void = { _ in }) -> Fleet {
        var fixture = FleetFixture()
        fixture.policies = [Policy(name: "baseline", file: "policies/baseline.yaml", governance: rules)]
        fixture.regions = regions
        edit(&fixture)
        return fixture.fleet
    }

    func messages(_ fleet: Fleet, now: Date = calm, changing: Set<String>? = nil) -> [String] {
        GovernanceEvaluator.evaluate(fleet: fleet, now: now, changingRegions: changing).sorted.map(\.description)
    }

    // MARK: require-variable

    @Test func requiredVariableMissing() {
        let rule = FleetFixture.rule("retention-30d", .requireVariable(name: "retention_days", allowed: ["30"]), line: 9)
        let fleet = fleet([rule], [FleetFixture.region("eu-west", "EU", policies: ["baseline"])]) {
            $0.record("regions/eu-west.yaml", "variables", 7, 3)
        }
        #expect(messages(fleet) == [
            "regions/eu-west.yaml:7:3: variables: violates rule \"retention-30d\" (policies/baseline.yaml:9:5): region eu-west does not set variable retention_days; set variables.retention_days to \"30\" in regions/eu-west.yaml or change the rule",
        ])
    }

    @Test func requiredVariableWithoutAllowedValuesIsSatisfiedByAnyValue() {
        let rule = FleetFixture.rule("owner", .requireVariable(name: "owner", allowed: nil), line: 4)
        let set = fleet([rule], [FleetFixture.region("eu-west", "EU", variables: ["owner": "platform"], policies: ["baseline"])])
        #expect(messages(set).isEmpty)
        let unset = fleet([rule], [FleetFixture.region("eu-west", "EU", policies: ["baseline"])])
        #expect(messages(unset) == [
            "regions/eu-west.yaml: variables: violates rule \"owner\" (policies/baseline.yaml:4:5): region eu-west does not set variable owner; set variables.owner in regions/eu-west.yaml or change the rule",
        ])
    }

    @Test func requiredVariableOutsideAllowedValues() {
        let rule = FleetFixture.rule("retention", .requireVariable(name: "retention_days", allowed: ["14", "30"]), line: 9)
        let fleet = fleet([rule], [
            FleetFixture.region("eu-west", "EU", variables: ["retention_days": "90"], policies: ["baseline"]),
            FleetFixture.region("us-east", "US", variables: ["retention_days": "30"], policies: ["baseline"]),
        ]) {
            $0.record("regions/eu-west.yaml", "variables.retention_days", 8, 19)
        }
        #expect(messages(fleet) == [
            "regions/eu-west.yaml:8:19: variables.retention_days: violates rule \"retention\" (policies/baseline.yaml:9:5): variable retention_days of region eu-west is \"90\", not one of \"14\", \"30\"; set it to one of \"14\", \"30\" or change the rule",
        ])
    }

    @Test func secretReferenceCountsAsSetButCannotBeCompared() {
        let compared = FleetFixture.rule("retention", .requireVariable(name: "retention_days", allowed: ["30"]), line: 9)
        let onlySet = FleetFixture.rule("api-key", .requireVariable(name: "api_key", allowed: nil), line: 14, index: 1)
        let fleet = fleet([compared, onlySet], [
            FleetFixture.region("eu-west", "EU", variables: ["retention_days": "env:RETENTION", "api_key": "file:secrets/key"], policies: ["baseline"]),
        ]) {
            $0.record("regions/eu-west.yaml", "variables.retention_days", 8, 19)
        }
        #expect(messages(fleet) == [
            "regions/eu-west.yaml:8:19: variables.retention_days: violates rule \"retention\" (policies/baseline.yaml:9:5): variable retention_days of region eu-west is the secret reference env:RETENTION, which cannot be compared with the allowed value \"30\"; set it to a plain value (\"30\") or drop allowed from the rule",
        ])
    }

    // MARK: version-range

    @Test func pinnedVersionOutsideRange() {
        let rule = FleetFixture.rule("inference-2x", .versionRange(component: "inference", range: FleetFixture.range(">=2.0.0 <3.0.0")), line: 9)
        let fleet = fleet([rule], [
            FleetFixture.region("us-east", "US", policies: ["baseline"], versions: ["inference": "3.0.0"]),
            FleetFixture.region("us-west", "US", policies: ["baseline"], versions: ["inference": "2.9.9"]),
        ]) {
            $0.record("regions/us-east.yaml", "versions", 11, 1)
            $0.record("regions/us-east.yaml", "versions.inference", 12, 14)
        }
        #expect(messages(fleet) == [
            "regions/us-east.yaml:12:14: versions.inference: violates rule \"inference-2x\" (policies/baseline.yaml:9:5): version 3.0.0 of inference in region us-east is outside >=2.0.0 <3.0.0; pin a version inside the range or change the rule",
        ])
    }

    @Test func platformVersionOutsideRangeIsPlacedInMeridianYAML() {
        let rule = FleetFixture.rule("kb-2x", .versionRange(component: "knowledge-base", range: FleetFixture.range("^2")), line: 20)
        let fleet = fleet([rule], [FleetFixture.region("eu-west", "EU", policies: ["baseline"])]) {
            $0.record("meridian.yaml", "platform.knowledge-base", 30, 19)
        }
        #expect(messages(fleet) == [
            "meridian.yaml:30:19: platform.knowledge-base: violates rule \"kb-2x\" (policies/baseline.yaml:20:5): version 1.2.0 of knowledge-base in region eu-west (the platform version) is outside ^2; pin a version inside the range in regions/eu-west.yaml, change platform.knowledge-base or change the rule",
        ])
    }

    @Test func versionRangeSkipsRegionsThatDoNotRunTheComponent() {
        let rule = FleetFixture.rule("inference-3x", .versionRange(component: "inference", range: FleetFixture.range(">=3")), line: 9)
        let fleet = fleet([rule], [FleetFixture.region("eu-west", "EU", runs: ["knowledge-base"], policies: ["baseline"])])
        #expect(messages(fleet).isEmpty)
    }

    @Test func rulesOfPoliciesARegionDoesNotReferenceDoNotApply() {
        let rule = FleetFixture.rule("inference-3x", .versionRange(component: "inference", range: FleetFixture.range(">=3")), line: 9)
        let fleet = fleet([rule], [FleetFixture.region("eu-west", "EU", policies: [])])
        #expect(messages(fleet).isEmpty)
    }

    // MARK: rollout-strategy

    @Test func rolloutStrategyDiffers() {
        let rule = FleetFixture.rule("kb-canary", .rolloutStrategy(component: "knowledge-base", strategy: .canary), line: 15)
        let fleet = fleet([rule], [
            FleetFixture.region("us-east", "US", policies: ["baseline"]),
            FleetFixture.region("eu-west", "EU", policies: ["baseline"]),
            FleetFixture.region("sg-1", "SG", runs: ["inference"], policies: ["baseline"]),
        ]) {
            $0.record("meridian.yaml", "components", 3, 1)
            $0.record("meridian.yaml", "components[1]", 10, 5)
            $0.record("meridian.yaml", "components[1].strategy", 14, 15)
        }
        #expect(messages(fleet) == [
            "meridian.yaml:14:15: components[1].strategy: violates rule \"kb-canary\" (policies/baseline.yaml:15:5): component knowledge-base is rolled out with blue-green, but regions eu-west and us-east require canary; set components[1].strategy to canary in meridian.yaml or change the rule",
        ])
    }

    @Test func rolloutStrategyFollowsComponentsKeyedByName() {
        let rule = FleetFixture.rule("kb-canary", .rolloutStrategy(component: "knowledge-base", strategy: .recreate), line: 15)
        let fleet = fleet([rule], [FleetFixture.region("eu-west", "EU", policies: ["baseline"])]) {
            $0.record("meridian.yaml", "components", 3, 1)
            $0.record("meridian.yaml", "components.knowledge-base", 10, 3)
        }
        #expect(messages(fleet) == [
            "meridian.yaml:10:3: components.knowledge-base.strategy: violates rule \"kb-canary\" (policies/baseline.yaml:15:5): component knowledge-base is rolled out with blue-green, but region eu-west requires recreate; set components.knowledge-base.strategy to recreate in meridian.yaml or change the rule",
        ])
    }

    @Test func rolloutStrategyMatching() {
        let rule = FleetFixture.rule("inference-canary", .rolloutStrategy(component: "inference", strategy: .canary), line: 15)
        #expect(messages(fleet([rule], [FleetFixture.region("eu-west", "EU", policies: ["baseline"])])).isEmpty)
    }

    // MARK: max-version-skew

    @Test func minorSkewTooLarge() {
        let rule = FleetFixture.rule("skew", .maxVersionSkew(component: "knowledge-base", level: .minor, max: 1), line: 18)
        let fleet = fleet([rule], [
            FleetFixture.region("eu-west", "EU", policies: ["baseline"], versions: ["knowledge-base": "1.4.2"]),
            FleetFixture.region("us-east", "US", policies: ["baseline"]),
            FleetFixture.region("us-west", "US", policies: ["baseline"], versions: ["knowledge-base": "1.1.9"]),
            FleetFixture.region("sg-1", "SG", policies: [], versions: ["knowledge-base": "9.0.0"]),
        ]) {
            $0.record("regions/eu-west.yaml", "versions.knowledge-base", 12, 19)
        }
        #expect(messages(fleet) == [
            "regions/eu-west.yaml:12:19: versions.knowledge-base: violates rule \"skew\" (policies/baseline.yaml:18:5): knowledge-base runs 1.4.2 in region eu-west and 1.1.9 in region us-west, 3 minor versions apart, more than the 1 allowed; bring the versions closer or change the rule",
        ])
    }

    @Test func skewWithinLimit() {
        let rule = FleetFixture.rule("skew", .maxVersionSkew(component: "knowledge-base", level: .minor, max: 1), line: 18)
        let fleet = fleet([rule], [
            FleetFixture.region("eu-west", "EU", policies: ["baseline"], versions: ["knowledge-base": "1.3.7"]),
            FleetFixture.region("us-east", "US", policies: ["baseline"]),
        ])
        #expect(messages(fleet).isEmpty)
    }

    @Test func minorSkewAcrossMajorVersions() {
        let rule = FleetFixture.rule("skew", .maxVersionSkew(component: "inference", level: .minor, max: 2), line: 18)
        let fleet = fleet([rule], [
            FleetFixture.region("eu-west", "EU", policies: ["baseline"]),
            FleetFixture.region("us-east", "US", policies: ["baseline"], versions: ["inference": "3.0.0"]),
        ]) {
            $0.record("regions/us-east.yaml", "versions.inference", 12, 14)
        }
        #expect(messages(fleet) == [
            "regions/us-east.yaml:12:14: versions.inference: violates rule \"skew\" (policies/baseline.yaml:18:5): inference runs 3.0.0 in region us-east and 2.1.0 in region eu-west, which differ in their major version, while at most 2 minor versions of skew is allowed; bring the versions closer or change the rule",
        ])
    }

    @Test func majorSkewPlacedAtTheLowestPinWhenTheHighestIsThePlatformVersion() {
        let rule = FleetFixture.rule("skew", .maxVersionSkew(component: "inference", level: .major, max: 0), line: 18)
        let fleet = fleet([rule], [
            FleetFixture.region("eu-west", "EU", policies: ["baseline"]),
            FleetFixture.region("us-east", "US", policies: ["baseline"], versions: ["inference": "1.9.0"]),
        ]) {
            $0.record("regions/us-east.yaml", "versions.inference", 12, 14)
        }
        #expect(messages(fleet) == [
            "regions/us-east.yaml:12:14: versions.inference: violates rule \"skew\" (policies/baseline.yaml:18:5): inference runs 2.1.0 in region eu-west and 1.9.0 in region us-east, 1 major version apart, more than the 0 allowed; bring the versions closer or change the rule",
        ])
    }

    @Test func patchSkewAcrossMinorVersionsNamesTheFirstRegionAmongEquals() {
        let rule = FleetFixture.rule("patch-skew", .maxVersionSkew(component: "inference", level: .patch, max: 3), line: 18)
        let fleet = fleet([rule], [
            FleetFixture.region("us-west", "US", policies: ["baseline"], versions: ["inference": "2.2.0"]),
            FleetFixture.region("us-east", "US", policies: ["baseline"], versions: ["inference": "2.2.0"]),
            FleetFixture.region("eu-west", "EU", policies: ["baseline"], versions: ["inference": "2.1.9"]),
            FleetFixture.region("eu-north", "EU", policies: ["baseline"], versions: ["inference": "2.1.9"]),
        ])
        #expect(messages(fleet) == [
            "regions/us-east.yaml: versions.inference: violates rule \"patch-skew\" (policies/baseline.yaml:18:5): inference runs 2.2.0 in region us-east and 2.1.9 in region eu-north, which differ in their major or minor version, while at most 3 patch versions of skew is allowed; bring the versions closer or change the rule",
        ])
    }

    // MARK: freeze-window

    static let freeze = FleetFixture.rule(
        "year-end-freeze",
        .freezeWindow(from: FleetFixture.date("2026-12-20T00:00:00Z"), to: FleetFixture.date("2027-01-04T00:00:00Z"), reason: "Year-end change freeze."),
        line: 22, index: 4)

    @Test func freezeWindowBlocksAChangeInsideIt() {
        let fleet = fleet([Self.freeze], [
            FleetFixture.region("eu-west", "EU", policies: ["baseline"]),
            FleetFixture.region("us-east", "US", policies: ["baseline"]),
        ])
        let now = FleetFixture.date("2026-12-24T09:30:00Z")
        #expect(messages(fleet, now: now, changing: ["us-east"]) == [
            "policies/baseline.yaml:22:5: governance[4]: violates rule \"year-end-freeze\" (policies/baseline.yaml:22:5): changes to region us-east are frozen from 2026-12-20T00:00:00Z to 2027-01-04T00:00:00Z (Year-end change freeze.) and it is 2026-12-24T09:30:00Z; wait until the window ends or leave region us-east out of this change",
        ])
    }

    @Test func freezeWindowIsNoViolationForValidateOrOutsideTheWindow() {
        let fleet = fleet([Self.freeze], [FleetFixture.region("eu-west", "EU", policies: ["baseline"])])
        let inside = FleetFixture.date("2026-12-24T09:30:00Z")
        #expect(messages(fleet, now: inside, changing: nil).isEmpty)
        #expect(messages(fleet, now: inside, changing: []).isEmpty)
        #expect(messages(fleet, now: FleetFixture.date("2027-01-04T00:00:00Z"), changing: ["eu-west"]).isEmpty, "the end is exclusive")
        #expect(messages(fleet, now: FleetFixture.date("2026-12-19T23:59:59Z"), changing: ["eu-west"]).isEmpty)
        #expect(messages(fleet, now: FleetFixture.date("2026-12-20T00:00:00Z"), changing: ["eu-west"]).count == 1, "the start is inclusive")
    }

    // MARK: all together

    @Test func everyViolationIsReportedAtOnce() {
        let rules = [
            FleetFixture.rule("retention", .requireVariable(name: "retention_days", allowed: ["30"]), line: 9, index: 0),
            FleetFixture.rule("inference-2x", .versionRange(component: "inference", range: FleetFixture.range(">=2.0.0 <3.0.0")), line: 13, index: 1),
        ]
        let fleet = fleet(rules, [
            FleetFixture.region("eu-west", "EU", policies: ["baseline", "baseline"], versions: ["inference": "3.1.0"]),
            FleetFixture.region("us-east", "US", variables: ["retention_days": "7"], policies: ["baseline"]),
        ])
        let diagnostics = GovernanceEvaluator.evaluate(fleet: fleet, now: Self.calm, changingRegions: nil)
        #expect(diagnostics.errorCount == 3)
        #expect(diagnostics.sorted.map(\.location.file) == ["regions/eu-west.yaml", "regions/eu-west.yaml", "regions/us-east.yaml"])
    }
}
