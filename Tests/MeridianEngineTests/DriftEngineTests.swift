import Foundation
import Testing
import MeridianBasics
@testable import MeridianEngine
import MeridianLoading
import MeridianModel
import MeridianPlanning
import MeridianState
import MeridianTestHosts

/// A host made to look applied by writing directly into its root folder:
/// a config file, the governance bundle, a release, slot links, the pid file
/// of a real running process (a `sleep`), and `state/manifest.json`.
final class AppliedHost: @unchecked Sendable {
    static let config = Data("max_tokens: 512\n".utf8)
    static let bundle = Data("{\"region\":\"eu-west\",\"rules\":[]}\n".utf8)

    let host: TestHost
    let manifest: HostManifest
    let process: SleepingProcess
    let health: LoopbackHTTPServer

    init(_ host: TestHost, healthStatus: Int = 200) throws {
        self.host = host
        health = try LoopbackHTTPServer(address: host.address, status: healthStatus, reason: healthStatus == 200 ? "OK" : "Service Unavailable", body: "ok")
        manifest = HostManifest(
            revision: "1", appliedAt: "2026-11-20T09:00:00Z", appliedBy: "tester@control",
            files: [
                "config/inference/server.yaml": ManifestFile(sha256: SHA256.hex(Self.config), maskedSHA256: nil, mode: 0o644, component: "inference"),
                "governance/bundle.json": ManifestFile(sha256: SHA256.hex(Self.bundle), maskedSHA256: nil, mode: 0o644, component: nil),
            ],
            releases: [ManifestRelease(component: "inference", version: "1.0.0", sha256: String(repeating: "a", count: 64))],
            components: ["inference": ManifestComponent(activeSlot: .blue, blue: ManifestSlot(version: "1.0.0", address: host.address, port: health.port, weight: 100),
                                                        green: ManifestSlot(version: nil, address: host.address, port: 18102, weight: 0))]
        )
        process = try SleepingProcess()
        try write()
    }

    deinit {
        process.stop()
        health.stop()
    }

    var root: String { host.root }

    /// Writes everything as applied (again), replacing any injected drift but a dead process.
    func write() throws {
        let files = FileManager.default
        for folder in ["config/inference", "governance", "releases/inference/1.0.0", "slots/inference", "run", "state"] {
            try files.createDirectory(atPath: "\(root)/\(folder)", withIntermediateDirectories: true)
        }
        try Self.config.write(to: URL(fileURLWithPath: "\(root)/config/inference/server.yaml"))
        try Self.bundle.write(to: URL(fileURLWithPath: "\(root)/governance/bundle.json"))
        chmod("\(root)/config/inference/server.yaml", 0o644)
        chmod("\(root)/governance/bundle.json", 0o644)
        try? files.removeItem(atPath: "\(root)/slots/inference/blue")
        try files.createSymbolicLink(atPath: "\(root)/slots/inference/blue", withDestinationPath: "\(root)/releases/inference/1.0.0")
        try "\(process.pid)\n".write(toFile: "\(root)/run/inference-blue.pid", atomically: true, encoding: .utf8)
        try manifest.encoded().write(to: URL(fileURLWithPath: "\(root)/state/manifest.json"))
        try? files.removeItem(atPath: "\(root)/state/lock")
        try? files.removeItem(atPath: "\(root)/config/by-hand.conf")
    }

    /// Records the manifest in the store as the apply that wrote it.
    func record(in store: SQLiteStateStore, region: String) async throws {
        let run = try await store.startRun(RunStart(kind: .apply, owner: .current(), regions: [region]))
        _ = try await store.recordManifest(run: run.id, region: region, host: host.name, manifest: manifest.encoded())
        _ = try await store.finishRun(run.id, outcome: .succeeded, exitCode: 0, summary: "applied by the test")
    }
}

/// The drift engine against real sshd test hosts on 127.0.90.x: each kind of
/// drift is injected into an applied host and found with the right kind.
@Suite(.serialized) struct DriftEngineTests {
    static func load(_ folder: URL) throws -> Fleet {
        let loaded = FleetLoader(root: folder).load()
        guard let fleet = loaded.fleet, !loaded.diagnostics.hasErrors else { throw FleetDidNotLoad(diagnostics: "\(loaded.diagnostics)") }
        return fleet
    }

    @Test func findsEveryInjectedKindAndNothingOnACleanHost() async throws {
        let cluster = try TestHostCluster(count: 3, addressPrefix: "127.0.90")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU", hosts: 3)], to: folder)
        let store = try await SQLiteStateStore.open(path: cluster.directory + "/state.db")
        let clean = try AppliedHost(cluster.hosts[0])
        let drifted = try AppliedHost(cluster.hosts[1])
        let other = try AppliedHost(cluster.hosts[2])
        for host in [clean, drifted, other] { try await host.record(in: store, region: "eu-west") }
        let engine = DriftEngine(fleet: try Self.load(folder), fleetRoot: folder, store: store)

        func findings(on host: TestHost, _ engine: DriftEngine = engine) async throws -> (DriftReport, [DriftFinding]) {
            let result = try await engine.run()
            #expect(!result.report.findings.contains { $0.host == "host1" }, "the clean host stays clean: \(result.report.findings)")
            return (result.report, result.report.findings.filter { $0.host == host.name })
        }

        let (first, none) = try await findings(on: drifted.host)
        #expect(none.isEmpty, "\(first.renderText())")
        #expect(first.exitCode == 0)

        let root = drifted.root
        let injections: [(String, DriftKind, String, () throws -> Void)] = [
            ("edit", .managedFileModified, "config/inference/server.yaml", { try "max_tokens: 1\n".write(toFile: root + "/config/inference/server.yaml", atomically: false, encoding: .utf8) }),
            ("delete", .managedFileMissing, "config/inference/server.yaml", { try FileManager.default.removeItem(atPath: root + "/config/inference/server.yaml") }),
            ("extra file", .unmanagedFile, "config/by-hand.conf", { try "x=1\n".write(toFile: root + "/config/by-hand.conf", atomically: true, encoding: .utf8) }),
            ("bundle", .bundleMismatch, "governance/bundle.json", { try "{}".write(toFile: root + "/governance/bundle.json", atomically: false, encoding: .utf8) }),
            ("slot", .slotMismatch, "slots/inference/blue", {
                try FileManager.default.removeItem(atPath: root + "/slots/inference/blue")
                try FileManager.default.createSymbolicLink(atPath: root + "/slots/inference/blue", withDestinationPath: root + "/releases/inference/0.9.0")
            }),
            ("release", .releaseMismatch, "releases/inference/1.0.0", {
                try FileManager.default.moveItem(atPath: root + "/releases/inference/1.0.0", toPath: root + "/releases/inference/.gone")
            }),
            ("stale lock", .lockLeftBehind, "state/lock", {
                try "holder=ops@laptop\nrun=77\npid=1\nstarted=1000\nexpires=2000\n".write(toFile: root + "/state/lock", atomically: true, encoding: .utf8)
            }),
        ]
        for (name, kind, subject, inject) in injections {
            try inject()
            let (report, found) = try await findings(on: drifted.host)
            #expect(found.contains { $0.kind == kind && $0.subject == subject }, "\(name): expected \(kind.rawValue) \(subject), got \(found)")
            #expect(report.exitCode == 2, "\(name)")
            try? FileManager.default.removeItem(atPath: root + "/releases/inference/.gone")
            try drifted.write()
            let (_, after) = try await findings(on: drifted.host)
            #expect(after.isEmpty, "\(name): restoring clears it: \(after)")
        }

        // An unhealthy component: the process runs but its health port answers 503.
        let sick = try LoopbackHTTPServer(address: drifted.host.address, status: 503, reason: "Service Unavailable", body: "no")
        var sickManifest = drifted.manifest
        sickManifest.components["inference"]?.blue.port = sick.port
        try sickManifest.encoded().write(to: URL(fileURLWithPath: root + "/state/manifest.json"))
        let sickRun = try await store.startRun(RunStart(kind: .apply, owner: .current(), regions: ["eu-west"]))
        _ = try await store.recordManifest(run: sickRun.id, region: "eu-west", host: drifted.host.name, manifest: sickManifest.encoded())
        _ = try await store.finishRun(sickRun.id, outcome: .succeeded, exitCode: 0, summary: "")
        let (_, unhealthy) = try await findings(on: drifted.host)
        #expect(unhealthy.map(\.kind) == [.componentUnhealthy], "\(unhealthy)")
        sick.stop()

        // The component's process dies.
        drifted.process.stop()
        let (_, down) = try await findings(on: drifted.host)
        #expect(down.map(\.kind) == [.componentNotRunning], "\(down)")

        // A host whose key is not the pinned one, and a host whose sshd is stopped.
        let regionFile = folder.appendingPathComponent("regions/eu-west.yaml")
        let text = try String(contentsOf: regionFile, encoding: .utf8)
        try text.replacingOccurrences(of: "host_key: \(cluster.hosts[2].hostKeyLine)", with: "host_key: \(cluster.hosts[0].hostKeyLine)")
            .write(to: regionFile, atomically: true, encoding: .utf8)
        let swapped = DriftEngine(fleet: try Self.load(folder), fleetRoot: folder, store: store)
        let (keyReport, keyChanged) = try await findings(on: other.host, swapped)
        #expect(keyChanged.map(\.kind) == [.hostKeyChanged], "\(keyChanged)")
        #expect(keyReport.exitCode == 1, "a host that could not be examined means: could not look")

        cluster.kill(cluster.hosts[2])
        let (downReport, unreachable) = try await findings(on: other.host)
        #expect(unreachable.map(\.kind) == [.hostUnreachable], "\(unreachable)")
        #expect(downReport.exitCode == 1)

        // History: the edit appeared and cleared; the dead process is still open.
        let history = try await store.driftHistory(region: "eu-west")
        #expect(history.contains { $0.kind == "file-modified" && $0.clearedAt != nil })
        #expect(history.contains { $0.kind == "component-down" && $0.clearedAt == nil })
        let runs = try await store.recentRuns(limit: 100).filter { $0.kind == .drift }
        #expect(runs.allSatisfy { $0.outcome == .succeeded })
    }

    @Test func remediationRemovesAStaleLockOnly() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.91")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU")], to: folder)
        // The fleet renders the applied config, so restoring it applies nothing pending.
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("templates"), withIntermediateDirectories: true)
        try AppliedHost.config.write(to: folder.appendingPathComponent("templates/server.yaml"))
        let regionFile = folder.appendingPathComponent("regions/eu-west.yaml")
        try (try String(contentsOf: regionFile, encoding: .utf8) + "config:\n  - template: templates/server.yaml\n    destination: config/inference/server.yaml\n    component: inference\n")
            .write(to: regionFile, atomically: true, encoding: .utf8)
        let store = try await SQLiteStateStore.open(path: cluster.directory + "/state.db")
        let applied = try AppliedHost(cluster.hosts[0])
        try await applied.record(in: store, region: "eu-west")
        let engine = DriftEngine(fleet: try Self.load(folder), fleetRoot: folder, store: store)

        try "max_tokens: 1\n".write(toFile: applied.root + "/config/inference/server.yaml", atomically: false, encoding: .utf8)
        try "{}".write(toFile: applied.root + "/governance/bundle.json", atomically: false, encoding: .utf8)
        try "holder=ops\nrun=77\npid=1\nstarted=1000\nexpires=2000\n".write(toFile: applied.root + "/state/lock", atomically: true, encoding: .utf8)
        let result = try await engine.run()
        #expect(Set(result.report.findings.map(\.kind)) == [.managedFileModified, .bundleMismatch, .lockLeftBehind], "\(result.report.findings)")

        let remedies = DriftRemediationPlanner.plan(findings: result.report.findings, kinds: [.lockLeftBehind], evidence: result.evidence, desired: result.desired)
        let outcomes = try await DriftRemediator(engine: engine).execute(remedies)
        #expect(outcomes.count == 1 && outcomes.allSatisfy(\.succeeded), "\(outcomes.map(\.result))")
        #expect(!FileManager.default.fileExists(atPath: applied.root + "/state/lock"))

        let after = try await engine.run()
        #expect(Set(after.report.findings.map(\.kind)) == [.managedFileModified, .bundleMismatch],
                "only the lock was named, so the files are untouched")
        #expect(try await store.leases().isEmpty, "the leases were given back")
    }
}

struct FleetDidNotLoad: Error {
    var diagnostics: String
}

/// A `sleep 600` child standing in for a component's process. Stopped with
/// SIGKILL and reaped with waitpid, so no run loop is involved.
final class SleepingProcess: @unchecked Sendable {
    let pid: pid_t
    private let lock = NSLock()
    private var reaped = false

    init() throws {
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("600"), nil]
        defer { for pointer in argv { free(pointer) } }
        let status = posix_spawn(&child, "/bin/sleep", nil, nil, argv, environ)
        guard status == 0 else { throw FleetDidNotLoad(diagnostics: "posix_spawn /bin/sleep failed: \(status)") }
        pid = child
    }

    func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !reaped else { return }
        reaped = true
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }

    deinit { stop() }
}

/// A drift run cancelled part-way (what SIGTERM does) is recorded as interrupted.
@Suite struct DriftInterruptionTests {
    @Test func aCancelledRunIsRecordedAsInterrupted() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.94")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU")], to: folder)
        let store = try await SQLiteStateStore.open(path: cluster.directory + "/state.db")
        let engine = DriftEngine(fleet: try DriftEngineTests.load(folder), fleetRoot: folder, store: store)
        // A paused sshd accepts TCP and never answers: the run is still in flight when cancelled.
        cluster.pause(cluster.hosts[0])
        defer { cluster.resume(cluster.hosts[0]) }
        let task = Task { try await engine.run() }
        // Cancelled once the run is on the record, so it is really part-way.
        let started = try await Poll.until { try await !store.recentRuns(limit: 1).filter { $0.kind == .drift && $0.isRunning }.isEmpty }
        #expect(started, "the drift run was never recorded as started")
        task.cancel()
        await #expect(throws: DriftInterrupted.self) { _ = try await task.value }
        let runs = try await store.recentRuns(limit: 10).filter { $0.kind == .drift }
        #expect(runs.map(\.outcome) == [.interrupted])
        #expect(try await store.driftHistory(region: nil).isEmpty, "an interrupted run records no findings")
    }
}
