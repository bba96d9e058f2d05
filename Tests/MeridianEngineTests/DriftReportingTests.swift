import Foundation
import Testing
@testable import MeridianEngine
@testable import MeridianPlanning
import MeridianTestHosts

@Suite struct DriftReportingTests {
    static let report = DriftReport(
        startedAt: Date(timeIntervalSince1970: 1_800_000_000),
        durationSeconds: 0.75,
        regions: [
            RegionDrift(region: "eu-west", hosts: [
                HostExamination(region: "eu-west", host: "eu-west-gw", address: "127.0.1.1", examined: true),
                HostExamination(region: "eu-west", host: "eu-west-kb", address: "127.0.1.4", examined: false, reason: "connection refused"),
            ], findings: [
                DriftFinding(region: "eu-west", host: "eu-west-gw", kind: .managedFileModified, subject: "config/inference/server.yaml", detail: "sha256 expected 1f2e…, found 9a8b…"),
            ], pending: [
                PendingChange(region: "eu-west", host: "eu-west-gw", subject: "config/inference/server.yaml", description: "the template changed"),
            ]),
            RegionDrift(region: "us-east", hosts: [
                HostExamination(region: "us-east", host: "us-east-1", address: "127.0.4.1", examined: true),
            ], findings: [], pending: []),
        ])

    @Test func textGroupsByRegionAndHostWithAFix() {
        #expect(Self.report.renderText() == """
        region eu-west
          host eu-west-gw (127.0.1.1)
            file-modified  config/inference/server.yaml: sha256 expected 1f2e…, found 9a8b…
              fix: restore it with `meridian drift --remediate file-modified` (or `meridian apply`), or put the change into the fleet repository
          host eu-west-kb (127.0.1.4)
        pending (in the fleet repository, not applied yet; not drift):
          eu-west/eu-west-gw  config/inference/server.yaml: the template changed
        Drift: 1 finding on 1 host of 3; 1 host could not be examined; 1 pending change.

        """)
    }

    @Test func exitCodeSaysCleanDriftOrCouldNotLook() {
        #expect(Self.report.exitCode == 1)
        var drifted = Self.report
        drifted.regions[0].hosts[1].examined = true
        #expect(drifted.exitCode == 2)
        drifted.regions[0].findings = []
        #expect(drifted.exitCode == 0)
        #expect(drifted.renderText().hasPrefix("pending"))
    }

    @Test func prometheusWritesEveryRegionAndKindIncludingZeros() {
        let text = Self.report.renderPrometheus()
        #expect(text.contains("meridian_drift_findings{region=\"eu-west\",kind=\"file-modified\"} 1\n"))
        #expect(text.contains("meridian_drift_findings{region=\"us-east\",kind=\"component-down\"} 0\n"))
        #expect(text.contains("meridian_drift_hosts_unreachable{region=\"eu-west\"} 1\n"))
        #expect(text.contains("meridian_drift_last_run_timestamp_seconds 1800000000.000\n"))
        #expect(text.contains("meridian_drift_last_run_duration_seconds 0.750\n"))
        let series = text.split(separator: "\n").filter { $0.hasPrefix("meridian_drift_findings{") }
        #expect(series.count == 2 * DriftKind.allCases.count)
        // Every sample line is NAME{labels} VALUE or NAME VALUE, and every metric has HELP and TYPE.
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(Double(line.split(separator: " ").last!) != nil, "\(line)")
        }
        #expect(text.components(separatedBy: "# TYPE").count - 1 == 5)
    }

    @Test func labelsAreEscaped() {
        #expect(DriftReport.escapeLabel("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }

    @Test func textfileIsReplacedAtomically() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-atomic-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("meridian.prom").path
        try AtomicFile.write(Data("old\n".utf8), to: path)
        try AtomicFile.write(Data(Self.report.renderPrometheus().utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == Self.report.renderPrometheus())
        // Nothing but the file itself is left in the folder.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["meridian.prom"])
        #expect(throws: AtomicFileError.self) { try AtomicFile.write(Data(), to: "/proc/meridian-cannot-write/x") }
    }

    @Test func scheduleJitterStaysWithinBounds() {
        let schedule = DriftSchedule(interval: .seconds(900), jitter: 0.1)
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix64(seed: seed)
        var seen = Set<Int64>()
        for _ in 0..<1000 {
            let pause = schedule.pause(after: .seconds(30), using: &rng)
            #expect(pause >= .seconds(900 - 90 - 30) && pause <= .seconds(900 + 90 - 30), "seed \(seed): \(pause)")
            seen.insert(pause.components.seconds)
        }
        #expect(seen.count > 10, "seed \(seed): jitter should spread the runs")
        #expect(DriftSchedule(interval: .seconds(60), jitter: 0).pause(after: .seconds(90), using: &rng) == .zero)
    }

    @Test func repeatingStopsWhenCancelledAndNeverOverlaps() async throws {
        let schedule = DriftSchedule(interval: .milliseconds(20), jitter: 0)
        let counter = RunCounter()
        let task = Task { await schedule.repeatUntilCancelled { await counter.run() } }
        let three = await Poll.until { await counter.finished >= 3 }
        #expect(three, "the schedule never ran three times")
        task.cancel()
        await task.value
        // Once repeatUntilCancelled has returned nothing of it runs any more,
        // and no run was left in flight: every run that started has finished.
        let started = await counter.started
        let finished = await counter.finished
        #expect(started == finished, "\(started) runs started, \(finished) finished")
        #expect(await counter.maximumConcurrent == 1)
    }

    actor RunCounter {
        var started = 0
        var finished = 0
        var running = 0
        var maximumConcurrent = 0
        func run() async {
            started += 1
            running += 1
            maximumConcurrent = max(maximumConcurrent, running)
            try? await Task.sleep(for: .milliseconds(5))
            running -= 1
            finished += 1
        }
    }

    @Test func webhookPostsTheSummaryToALoopbackReceiver() async throws {
        let receiver = try LoopbackHTTPServer()
        defer { receiver.stop() }
        let url = try #require(URL(string: "http://127.0.0.1:\(receiver.port)/hooks/drift"))
        let notification = DriftNotification(fleet: "example", report: Self.report, appeared: Self.report.findings, cleared: [])
        try await DriftWebhook(url: url).send(notification)
        let request = try #require(receiver.requests.first)
        #expect(request.method == "POST")
        #expect(request.path == "/hooks/drift")
        #expect(request.headers["content-type"] == "application/json")
        let body = try JSONSerialization.jsonObject(with: request.body) as? [String: Any]
        #expect(body?["fleet"] as? String == "example")
        #expect(body?["exit_code"] as? Int == 1)
        #expect((body?["appeared"] as? [Any])?.count == 1)
        #expect(body?["unreachable_hosts"] as? [String] == ["eu-west/eu-west-kb"])

        receiver.setStatus(500)
        await #expect(throws: DriftWebhookError.self) { try await DriftWebhook(url: url).send(notification) }
    }
}
