import Foundation
import Testing
import MeridianBasics
import MeridianPlanning
import MeridianTestHosts

/// The built `meridian drift` against real sshd test hosts on 127.0.92.x and
/// 127.0.93.x: exit codes, the JSON report and Prometheus files, the webhook
/// on loopback, history, and `--every` stopped by SIGTERM.
@Suite(.serialized) struct DriftCommandTests {
    static let config = Data("max_tokens: 512\n".utf8)

    /// Makes `host` look applied with only its own manifest (the state store
    /// has no record, so the host's manifest stands in).
    static func apply(_ host: TestHost) throws {
        let root = host.root
        try FileManager.default.createDirectory(atPath: root + "/config", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/state", withIntermediateDirectories: true)
        try config.write(to: URL(fileURLWithPath: root + "/config/server.yaml"))
        chmod(root + "/config/server.yaml", 0o644)
        let manifest = HostManifest(revision: "1", appliedAt: "2026-11-20T09:00:00Z", appliedBy: "tester@control",
                                    files: ["config/server.yaml": ManifestFile(sha256: SHA256.hex(config), maskedSHA256: nil, mode: 0o644, component: nil)],
                                    releases: [], components: [:])
        try manifest.encoded().write(to: URL(fileURLWithPath: root + "/state/manifest.json"))
    }

    @Test func reportsPrometheusWebhookAndHistory() throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.92")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU"), .init(name: "us-east", jurisdiction: "US")], to: folder)
        for host in cluster.hosts { try Self.apply(host) }
        let receiver = try LoopbackHTTPServer()
        let out = cluster.directory + "/out"
        let state = cluster.directory + "/state.db"
        let arguments = ["drift", "--fleet", folder.path, "--state", state, "--format", "json", "--report", out + "/drift.json",
                         "--prometheus", out + "/meridian.prom", "--notify", "http://127.0.0.1:\(receiver.port)/hook"]

        let clean = try CLI.run(arguments)
        #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/drift.json"))) as? [String: Any]
        #expect(report?["format_version"] as? Int == 1)
        #expect((report?["regions"] as? [[String: Any]])?.count == 2)
        let prom = try String(contentsOfFile: out + "/meridian.prom", encoding: .utf8)
        #expect(prom.contains("meridian_drift_findings{region=\"eu-west\",kind=\"file-modified\"} 0\n"))
        #expect(receiver.requests.isEmpty, "nothing changed, so no notification")

        try "max_tokens: 1\n".write(toFile: cluster.hosts[0].root + "/config/server.yaml", atomically: false, encoding: .utf8)
        let drifted = try CLI.run(arguments)
        #expect(drifted.status == 2, "\(drifted.stderr)")
        #expect(try String(contentsOfFile: out + "/meridian.prom", encoding: .utf8).contains("meridian_drift_findings{region=\"eu-west\",kind=\"file-modified\"} 1\n"))
        #expect(receiver.requests.count == 1)
        let posted = receiver.requests.first.flatMap { try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any] }
        #expect((posted?["appeared"] as? [[String: Any]])?.first?["kind"] as? String == "file-modified", "\(String(describing: posted))")

        let text = try CLI.run(["drift", "--fleet", folder.path, "--state", state, "--notify", "http://127.0.0.1:\(receiver.port)/hook"])
        #expect(text.status == 2)
        #expect(text.stdout.contains("region eu-west\n  host host1 (127.0.92.1)\n    file-modified  config/server.yaml: sha256 expected"), "\(text.stdout)")
        #expect(receiver.requests.count == 1, "the same findings again: no new notification")

        try Self.config.write(to: URL(fileURLWithPath: cluster.hosts[0].root + "/config/server.yaml"))
        #expect(try CLI.run(arguments).status == 0)
        #expect(receiver.requests.count == 2, "the finding cleared: notified")

        let history = try CLI.run(["drift", "history", "--fleet", folder.path, "--state", state])
        #expect(history.status == 0)
        let row = history.stdout.split(separator: "\n").first { $0.contains("file-modified") }
        #expect(row != nil && row?.hasSuffix("open") == false, "\(history.stdout)")
        #expect(history.stdout.contains("1 finding, 0 open."))

        cluster.kill(cluster.hosts[1])
        let down = try CLI.run(arguments)
        #expect(down.status == 1, "could not look at host2")
        #expect(try String(contentsOfFile: out + "/meridian.prom", encoding: .utf8).contains("meridian_drift_hosts_unreachable{region=\"us-east\"} 1\n"))
    }

    @Test func everyStopsCleanlyOnSIGTERM() throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.93")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU")], to: folder)
        try Self.apply(cluster.hosts[0])
        let reportPath = cluster.directory + "/out/drift.json"
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = ["drift", "--fleet", folder.path, "--state", cluster.directory + "/state.db", "--every", "1s", "--report", reportPath]
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": FileManager.default.temporaryDirectory.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait (bounded) for two reports, so the loop has gone round at least once.
        var modified: [Date] = []
        let twice = Poll.blockingUntil(attempts: 600, everyMicroseconds: 50_000) {
            if let date = (try? FileManager.default.attributesOfItem(atPath: reportPath))?[.modificationDate] as? Date, modified.last != date {
                modified.append(date)
            }
            return modified.count >= 2 || !process.isRunning
        }
        #expect(twice && modified.count >= 2, "the job should have written its report twice within 30 s; it wrote \(modified.count)")
        kill(process.processIdentifier, SIGTERM)
        // Reaped (killed at the bound) before its status is read.
        let exited = process.endsWithin()
        #expect(exited, "meridian drift --every should stop on SIGTERM within 20 s")
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any]
        #expect(report?["format_version"] as? Int == 1, "the report file is complete")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: cluster.directory + "/out")) ?? []).sorted() == ["drift.json"], "no temporary file left")
    }
}

