import Foundation
import Testing
import MeridianBasics
@testable import MeridianEngine
import MeridianLoading
import MeridianModel
import MeridianPlanning
import MeridianState
import MeridianTestHosts

/// A fleet applied for real by the apply engine to one sshd test host: the
/// fixture `inference` artifact running on its blue port, one config file.
final class RemediationFleet: @unchecked Sendable {
    let cluster: TestHostCluster
    let folder: URL
    let store: SQLiteStateStore
    let fleet: Fleet
    let port: Int
    var host: TestHost { cluster.hosts[0] }

    init(addressPrefix: String, port: Int) async throws {
        cluster = try TestHostCluster(count: 1, addressPrefix: addressPrefix)
        self.port = port
        folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        let files = FileManager.default
        for name in ["regions", "policies", "templates", "artifacts"] {
            try files.createDirectory(at: folder.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        var repository = URL(fileURLWithPath: #filePath)
        while !files.fileExists(atPath: repository.appendingPathComponent("Package.swift").path) { repository.deleteLastPathComponent() }
        try files.copyItem(at: repository.appendingPathComponent("Tests/Fixtures/artifacts/inference"), to: folder.appendingPathComponent("artifacts/inference"))
        try "port: {{ component.port }}\nmax_tokens: 100\n".write(to: folder.appendingPathComponent("templates/server.yaml.tmpl"), atomically: true, encoding: .utf8)
        try "residency:\n  - data: EU\n    allowed: [EU]\n".write(to: folder.appendingPathComponent("policies/residency.yaml"), atomically: true, encoding: .utf8)
        let host = cluster.hosts[0]
        try """
        version: 1
        name: remediation-test
        defaults:
        \(cluster.sshDefaultsYAML())components:
          inference:
            artifact: artifacts/inference/{version}
            start: [bin/serve, --address, "{address}", --port, "{port}"]
            ports: { blue: \(port), green: \(port + 1) }
        platform:
          inference: 1.0.0

        """.write(to: folder.appendingPathComponent("meridian.yaml"), atomically: true, encoding: .utf8)
        try """
        name: eu-west
        jurisdiction: EU
        hosts:
          - name: \(host.name)
            address: \(host.address)
            root: \(host.root)
            roles: [gateway, inference]
            host_key: \(host.hostKeyLine)
        config:
          - { template: templates/server.yaml.tmpl, destination: config/inference/server.yaml, component: inference }
        policies: [residency]

        """.write(to: folder.appendingPathComponent("regions/eu-west.yaml"), atomically: true, encoding: .utf8)
        store = try await SQLiteStateStore.open(path: cluster.directory + "/state.db")
        fleet = try DriftEngineTests.load(folder)
    }

    var planning: PlanEngine { PlanEngine(fleet: fleet, fleetRoot: folder, bundles: GovernanceBundle.renderAll(fleet).0, environment: [:]) }
    var apply: ApplyEngine {
        ApplyEngine(planning: planning, store: store, secrets: LocalSecretResolver(environment: [:], baseDirectory: folder), parallelism: 2,
                    timings: ApplyTimings(stopGraceSeconds: 3, healthAttempts: 60, healthInterval: .milliseconds(250)))
    }
    var drift: DriftEngine {
        var engine = DriftEngine(fleet: fleet, fleetRoot: folder, store: store, environment: [:])
        engine.healthTimeout = .seconds(1)
        return engine
    }

    func applyAll() async throws {
        let planned = try await planning.plan(regions: [], parallelism: 2)
        let report = try await apply.apply(planned.plan, fleet: planned.fleet)
        #expect(report.exitCode == 0, "\(report.regions)")
    }

    /// The pid in the active slot's pid file.
    func componentPID() throws -> Int32 {
        let text = try String(contentsOfFile: host.root + "/run/inference-blue.pid", encoding: .utf8)
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// Kills the component and points its pid file at a process that has
    /// exited and been reaped: a killed child of sshd may linger as a zombie,
    /// which `kill -0` still reports as running.
    func killComponent() throws {
        let pid = try componentPID()
        #expect(pid > 1)
        kill(pid, SIGKILL)
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for pointer in argv { free(pointer) } }
        guard posix_spawn(&child, "/bin/true", nil, nil, argv, environ) == 0 else { throw FleetDidNotLoad(diagnostics: "posix_spawn /bin/true failed") }
        var status: Int32 = 0
        _ = waitpid(child, &status, 0)
        try "\(child)\n".write(toFile: host.root + "/run/inference-blue.pid", atomically: true, encoding: .utf8)
    }

    /// Drift, then remediation of `kinds` through the apply path.
    func remediate(_ kinds: Set<DriftKind>) async throws -> [DriftRemedyOutcome] {
        let result = try await drift.run()
        let remedies = DriftRemediationPlanner.plan(findings: result.report.findings, kinds: kinds, evidence: result.evidence, desired: result.desired)
        let planned = try await DriftRemediator.planThroughApply(remedies, evidence: result.evidence, planning: planning, secrets: LocalSecretResolver(environment: [:], baseDirectory: folder),
                                                                 fleetKey: try await apply.store.fileHashKey(), parallelism: 2)
        return try await DriftRemediator.applyThroughApply(planned, apply: apply)
    }

    func findings() async throws -> [DriftFinding] { try await drift.run().report.findings }

    func tearDown() {
        if let pid = try? componentPID(), pid > 1 { kill(pid, SIGKILL) }
    }
}

/// `drift --remediate` through the apply path on a real sshd test host
/// (127.0.95.x): only the named kinds are fixed.
@Suite(.serialized) struct DriftRemediationTests {
    @Test func aDownComponentIsRestartedWhileAnUnnamedFileEditStays() async throws {
        let setup = try await RemediationFleet(addressPrefix: "127.0.95", port: 19561)
        defer { setup.tearDown() }
        try await setup.applyAll()
        let clean = try await setup.findings()
        #expect(clean.isEmpty, "\(clean.map { "\($0.kind.rawValue) \($0.subject): \($0.detail)" }) log: \((try? String(contentsOfFile: setup.host.root + "/run/inference-blue.log", encoding: .utf8)) ?? "-")")

        let configPath = setup.host.root + "/config/inference/server.yaml"
        try "edited by hand\n".write(toFile: configPath, atomically: false, encoding: .utf8)
        try setup.killComponent()
        let found = try await setup.findings()
        #expect(Set(found.map(\.kind)) == [.componentNotRunning, .managedFileModified], "\(found)")

        let outcomes = try await setup.remediate([.componentNotRunning])
        #expect(outcomes.count == 1 && outcomes.allSatisfy(\.succeeded), "\(outcomes.map(\.result))")
        #expect(try await setup.findings().map(\.kind) == [.managedFileModified], "the file edit was not named")
        #expect(try String(contentsOfFile: configPath, encoding: .utf8) == "edited by hand\n")
        let audit = try await setup.store.auditLog(afterSeq: 0, limit: 100)
        #expect(audit.contains { $0.action == "apply" }, "the normal apply path left its audit entry")
        #expect(audit.last?.action == "drift.remediate")

        // A stopped process still runs but answers nothing: unhealthy, fixed by a constructed restart.
        let stopped = try setup.componentPID()
        kill(stopped, SIGSTOP)
        defer { kill(stopped, SIGKILL) }
        #expect(Set(try await setup.findings().map(\.kind)) == [.componentUnhealthy, .managedFileModified])
        let restarted = try await setup.remediate([.componentUnhealthy])
        #expect(restarted.count == 1 && restarted.allSatisfy(\.succeeded), "\(restarted.map(\.result))")
        #expect(try setup.componentPID() != stopped)
        #expect(try await setup.findings().map(\.kind) == [.managedFileModified])

        // A kind with no finding leaves nothing to apply: refused, not an empty run.
        await #expect(throws: RemediationRefused.self) { _ = try await setup.remediate([.componentNotRunning]) }
    }

    @Test func aSwappedSlotLinkAndADeletedReleaseAreRepaired() async throws {
        let setup = try await RemediationFleet(addressPrefix: "127.0.96", port: 19571)
        defer { setup.tearDown() }
        try await setup.applyAll()
        let root = setup.host.root
        let link = root + "/slots/inference/blue"
        try FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: root + "/releases/inference/0.9.0")
        #expect(try await setup.findings().map(\.kind) == [.slotMismatch])
        let relinked = try await setup.remediate([.slotMismatch])
        #expect(relinked.count == 1 && relinked.allSatisfy(\.succeeded), "\(relinked.map(\.result))")
        #expect(try await setup.findings().isEmpty)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link).hasSuffix("releases/inference/1.0.0"))

        try FileManager.default.removeItem(atPath: root + "/releases/inference/1.0.0")
        #expect(try await setup.findings().map(\.kind) == [.releaseMismatch])
        let installed = try await setup.remediate([.releaseMismatch])
        #expect(installed.count == 1 && installed.allSatisfy(\.succeeded), "\(installed.map(\.result))")
        #expect(try await setup.findings().isEmpty)
        #expect(FileManager.default.fileExists(atPath: root + "/releases/inference/1.0.0/bin/serve"))
    }

    @Test func anEditedFileIsRestoredUnlessAChangeIsPending() async throws {
        let setup = try await RemediationFleet(addressPrefix: "127.0.97", port: 19581)
        defer { setup.tearDown() }
        try await setup.applyAll()
        let configPath = setup.host.root + "/config/inference/server.yaml"
        let applied = try Data(contentsOf: URL(fileURLWithPath: configPath))
        try "edited by hand\n".write(toFile: configPath, atomically: false, encoding: .utf8)
        let restored = try await setup.remediate([.managedFileModified])
        #expect(restored.count == 1 && restored.allSatisfy(\.succeeded), "\(restored.map(\.result))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: configPath)) == applied)
        #expect(try await setup.findings().isEmpty)

        // The fleet now renders other bytes: restoring would apply that pending change, so nothing is done.
        try "port: {{ component.port }}\nmax_tokens: 200\n".write(to: setup.folder.appendingPathComponent("templates/server.yaml.tmpl"), atomically: true, encoding: .utf8)
        try "edited again\n".write(toFile: configPath, atomically: false, encoding: .utf8)
        let result = try await setup.drift.run()
        let remedies = DriftRemediationPlanner.plan(findings: result.report.findings, kinds: [.managedFileModified], evidence: result.evidence, desired: result.desired)
        let planned = try await DriftRemediator.planThroughApply(remedies, evidence: result.evidence, planning: setup.planning,
                                                                 secrets: LocalSecretResolver(environment: [:], baseDirectory: setup.folder),
                                                                 fleetKey: try await setup.apply.store.fileHashKey(), parallelism: 2)
        #expect(planned.plan.hosts.isEmpty)
        #expect(planned.remedies.contains { if case .notRemediated(let finding, let reason) = $0 { return finding.kind == .managedFileModified && reason.contains("pending") } else { return false } })
        await #expect(throws: RemediationRefused.self) { _ = try await DriftRemediator.applyThroughApply(planned, apply: setup.apply) }
        #expect(try String(contentsOfFile: configPath, encoding: .utf8) == "edited again\n")

        // The same through the command line, once the fleet renders the applied bytes again:
        // `--dry-run` shows the cut plan's action, then the fix.
        try "port: {{ component.port }}\nmax_tokens: 100\n".write(to: setup.folder.appendingPathComponent("templates/server.yaml.tmpl"), atomically: true, encoding: .utf8)
        try setup.killComponent()
        let dry = try setup.meridian(["drift", "--remediate", "component-down", "--dry-run"])
        #expect(dry.output.contains("Would remediate:") && dry.output.contains("restart_component") && dry.output.contains("component-down"), "\(dry.output)")
        let fixed = try setup.meridian(["drift", "--remediate", "component-down"])
        #expect(fixed.output.contains("fixed  eu-west/\(setup.host.name) component-down"), "\(fixed.output)")
        #expect(fixed.output.contains("NOT FIXED") == false)
        #expect(fixed.status == 2, "the run still found drift: the edited file")
        #expect(try await setup.findings().map(\.kind) == [.managedFileModified])
    }
}

extension RemediationFleet {
    /// Runs the `meridian` binary built beside the tests against this fleet and store.
    func meridian(_ arguments: [String]) throws -> (status: Int32, output: String) {
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var executable: URL?
        for _ in 0..<4 where executable == nil {
            let candidate = folder.appendingPathComponent("meridian")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { executable = candidate }
            folder.deleteLastPathComponent()
        }
        guard let executable else { throw FleetDidNotLoad(diagnostics: "the meridian binary is not built beside the tests") }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments + ["--fleet", self.folder.path, "--state", cluster.directory + "/state.db"]
        process.environment = ["PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": FileManager.default.temporaryDirectory.path, "NO_COLOR": "1"]
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-remediate-\(UUID().uuidString.prefix(8)).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        defer { try? FileManager.default.removeItem(at: output) }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try handle.close()
        return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }
}
