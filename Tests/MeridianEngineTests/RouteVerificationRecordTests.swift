import Foundation
import Testing
import MeridianEngine
import MeridianLoading
import MeridianModel
import MeridianPlanning
import MeridianState

/// `meridian routes verify` recorded in a SQLite store and read back as
/// `meridian status` shows it: one journal step per gateway host of the
/// example fleet, a violation and an unreached host kept with their place.
@Suite struct RouteVerificationRecordTests {
    static func exampleFleet() throws -> Fleet {
        var repository = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: repository.appendingPathComponent("Package.swift").path) { repository.deleteLastPathComponent() }
        return try DriftEngineTests.load(repository)
    }

    @Test func aVerifyRunIsJournaledPerGatewayAndShownPerRegion() async throws {
        let fleet = try Self.exampleFleet()
        let table = ResidencyCompiler.compile(fleet).0
        let healthy: Set<String> = ["eu-central", "uk-south", "us-east"]
        var checks: [ResidencyCheck] = []
        for region in fleet.regions where region.name != "uk-south" {
            for host in region.gateways {
                for probe in ResidencyVerification.probes(table) {
                    let expected = ResidencyVerification.expected(table, probe: probe, at: region.name, healthy: healthy)
                    // us-east's gateway serves EU data itself: the one violation.
                    let observed = region.name == "us-east" && probe.label == "EU" ? ResidencyAnswer.served("us-east") : expected
                    checks.append(ResidencyCheck(region: region.name, host: host.name, probe: probe, expected: expected, observed: observed))
                }
            }
        }
        let unreachable = ["uk-south/uk-south-1 (127.0.3.1:2222): connection refused"]

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-verify-record-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try await SQLiteStateStore.open(path: folder.appendingPathComponent("state.db").path)
        let recorder = try await RouteVerificationRecorder.start(store: store, fleet: fleet, selected: [])
        try await recorder.finish(fleet: fleet, selected: [], checks: checks, healthy: healthy, unreachable: unreachable)

        let run = try #require(try await store.recentRuns(limit: 5).first)
        #expect(run.kind == .routesVerify && run.outcome == .failed && run.exitCode == 1, "\(run)")
        #expect(run.regions == ["ap-southeast", "eu-central", "eu-west", "uk-south", "us-east"])
        #expect(run.summary == "24 checks, 1 violation, 1 host(s) not reached; not healthy: ap-southeast, eu-west", "\(run.summary ?? "")")
        let journal = try await store.journal(of: run.id)
        #expect(journal.map(\.step) == [
            "routes verify through ap-southeast-1: 6 checks, 0 violations",
            "routes verify through eu-central-1: 6 checks, 0 violations",
            "routes verify through eu-west-gw: 6 checks, 0 violations",
            "routes verify through uk-south-1: not reached: uk-south/uk-south-1 (127.0.3.1:2222): connection refused",
            "routes verify through us-east-1: 6 checks, 1 violation",
        ], "\(journal.map(\.step))")
        #expect(journal.map { $0.outcome?.rawValue ?? "-" } == ["ok", "ok", "ok", "failed", "failed"])

        let status = FleetStatus.make(fleet: fleet, regions: fleet.regions, source: .store, now: StateTime(Date()), statuses: [], hosts: [:],
                                      rollouts: [], openDrift: [], driftRuns: [], routesVerify: [(run, journal)])
        let views = Dictionary(uniqueKeysWithValues: status.regions.map { ($0.name, $0.routesVerify) })
        let westView = try #require(views["eu-west"] ?? nil)
        #expect(westView.ok && !westView.healthy && westView.checks == 6 && westView.violations.isEmpty && westView.run == run.id.rawValue)
        let east = try #require(views["us-east"] ?? nil)
        #expect(!east.ok && east.healthy && east.violations == ["us-east-1 EU: us-east (expected eu-central)"], "\(east)")
        let uk = try #require(views["uk-south"] ?? nil)
        #expect(!uk.ok && uk.checks == 0 && uk.violations == ["uk-south-1 not reached: uk-south/uk-south-1 (127.0.3.1:2222): connection refused"], "\(uk)")

        // A later run over one region: it is that region's view; the others keep the earlier run's.
        let one = try await RouteVerificationRecorder.start(store: store, fleet: fleet, selected: ["eu-central"])
        try await one.finish(fleet: fleet, selected: ["eu-central"], checks: checks.filter { $0.region == "eu-central" }, healthy: healthy, unreachable: [])
        let newest = try #require(try await store.recentRuns(limit: 1).first)
        #expect(newest.outcome == .succeeded && newest.summary == "6 checks, 0 violations; not healthy: ap-southeast, eu-west")
        let again = FleetStatus.make(fleet: fleet, regions: fleet.regions, source: .store, now: StateTime(Date()), statuses: [], hosts: [:],
                                     rollouts: [], openDrift: [], driftRuns: [],
                                     routesVerify: [(newest, try await store.journal(of: newest.id)), (run, journal)])
        #expect(again.regions.map { "\($0.name) \($0.routesVerify?.run ?? -1)" }
                == ["ap-southeast \(run.id.rawValue)", "eu-central \(newest.id.rawValue)", "eu-west \(run.id.rawValue)", "uk-south \(run.id.rawValue)", "us-east \(run.id.rawValue)"])
        let encoded = String(decoding: try JSONEncoder().encode(again), as: UTF8.self)
        #expect(encoded.contains("\"routes_verify\":{"), "\(encoded)")
    }
}
