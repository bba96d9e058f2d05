import Foundation
import Testing
import MeridianBasics
@testable import MeridianPlanning

/// Compares output with a committed file under Tests/MeridianTests/Golden/plan.
/// Run with MERIDIAN_UPDATE_GOLDEN=1 to rewrite the files instead, then
/// review the change with `git diff`.
func expectGolden(_ actual: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Golden/plan/\(name)")
    if ProcessInfo.processInfo.environment["MERIDIAN_UPDATE_GOLDEN"] == "1" {
        try Data(actual.utf8).write(to: url)
        return
    }
    let expected = try String(contentsOf: url, encoding: .utf8)
    #expect(actual == expected, "\(name) differs from the golden file; if the change is intended, rerun with MERIDIAN_UPDATE_GOLDEN=1", sourceLocation: sourceLocation)
}

@Suite struct PlanRenderingTests {
    @Test func textGolden() throws {
        try expectGolden(PlanFixtures.plan.renderText(), "mixed.txt")
    }

    @Test func colorGolden() throws {
        let colored = PlanFixtures.plan.renderText(style: PlanTextStyle(color: true))
        try expectGolden(colored, "mixed-color.txt")
        // Without colour there is not one escape sequence.
        #expect(!PlanFixtures.plan.renderText().contains("\u{1B}"))
        #expect(colored.contains("\u{1B}[32m+\u{1B}[0m"))
    }

    @Test func jsonGolden() throws {
        try expectGolden(String(decoding: PlanFixtures.plan.renderJSON(), as: UTF8.self), "mixed.json")
    }

    @Test func noChanges() throws {
        let desired = [PlanFixtures.desired[1], PlanFixtures.desired[3]]
        let observed = PlanFixtures.observed
        let plan = Planner.plan(desired: desired, observed: observed, basis: PlanFixtures.basis)
        try expectGolden(plan.renderText(), "no-changes.txt")
        #expect(plan.renderText().hasSuffix("No changes. The fleet matches the configuration.\n"))
        #expect(!plan.summary.hasChanges)
    }

    @Test func summaryLineGrammar() {
        #expect(Plan.summaryLine(PlanSummary(create: 1, update: 0, delete: 0, upgrade: 1, restart: 0, regionsChanged: 1, hostsChanged: 1, hostsUnchanged: 1))
            == "Plan: 1 to create, 0 to update, 0 to delete, 1 upgrade, 0 restarts across 1 region (1 host unchanged).")
    }

    @Test func binaryDiffIsSummarized() {
        var desired = PlanFixtures.desired[1]
        desired.files.append(ManagedFile(path: "config/inference/model.bin", content: .bytes(Data([0, 1, 2, 3])), source: "artifacts/model.bin", component: "inference"))
        let plan = Planner.plan(desired: [desired], observed: [desired.id: PlanFixtures.observedInSync(PlanFixtures.desired[1])], basis: PlanFixtures.basis)
        #expect(plan.renderText().contains("    + config/inference/model.bin mode 0644\n        binary content: absent → 4 bytes (sha256 054edec1d021)\n"))
    }

    @Test func largeContentIsSummarizedWithSizesAndHashes() throws {
        var desired = PlanFixtures.desired[1]
        let large = Data(String(repeating: "key: value\n", count: 30_000).utf8)
        desired.files.append(ManagedFile(path: "config/inference/large.yaml", content: .bytes(large), source: "templates/large.tmpl", component: "inference"))
        let plan = Planner.plan(desired: [desired], observed: [desired.id: PlanFixtures.observedInSync(PlanFixtures.desired[1])], basis: PlanFixtures.basis)
        let hash = SHA256.hex(large)
        #expect(plan.renderText().contains("    + config/inference/large.yaml mode 0644\n        not diffed (over 256 KiB): absent → \(large.count) bytes (sha256 \(hash.prefix(12)))\n"), "\(plan.renderText())")
        let action = try #require(plan.hosts.first?.actions.first { $0.subject == "config/inference/large.yaml" })
        #expect(action.diff == .large(oldBytes: nil, newBytes: large.count))
        #expect(action.afterSHA256 == hash)
        // The summary survives a save and a read.
        #expect(try Plan.decode(plan.renderJSON()) == plan)
    }
}
