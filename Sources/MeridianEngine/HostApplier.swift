import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianState

/// How long apply waits for processes: stop grace and health checks.
public struct ApplyTimings: Sendable, Equatable {
    public var stopGraceSeconds: Int
    public var healthAttempts: Int
    public var healthInterval: Duration

    public init(stopGraceSeconds: Int = 10, healthAttempts: Int = 40, healthInterval: Duration = .milliseconds(250)) {
        self.stopGraceSeconds = stopGraceSeconds
        self.healthAttempts = healthAttempts
        self.healthInterval = healthInterval
    }
}

/// A step that failed on a host, naming the step and the host's answer.
public struct HostStepError: Error, Sendable, CustomStringConvertible {
    public var step: String
    public var reason: String
    public var description: String { "\(step) failed: \(reason)" }
}

/// What apply reports while it runs, for progress lines or a live view.
public enum ApplyEvent: Sendable {
    case observed(region: String, host: String)
    case stepStarted(region: String, host: String, step: String)
    case stepFinished(region: String, host: String, step: String, error: String?)
    case hostFinished(region: String, host: String, error: String?)
    /// A wave with `approval: true` waits for `meridian rollout promote`.
    case waitingForApproval(wave: String)
    /// A wave starts changing its regions (those of it with changes, in the fleet's order).
    case waveStarted(wave: String, regions: [String])
    case rollout(RolloutEvent)
}

/// Carries out one host's steps over an open session, journaling each
/// before and after it runs. It decides nothing: the steps are given.
struct HostApplier: Sendable {
    let session: SSHSession
    let desired: DesiredHostState
    let steps: [HostStep]
    /// Real content of every file to write, path → bytes.
    let contents: [String: Data]
    let manifest: HostManifest
    let artifacts: [String: LocalArtifact]
    let store: any StateStore
    let run: RunID
    let timings: ApplyTimings
    let events: @Sendable (ApplyEvent) -> Void
    /// Run at the end of the last step's own command when that step is a
    /// write batch (the lock release), saving the host a round trip.
    var afterLastStep: RemoteCommand? = nil

    func apply() async throws {
        try await refuseGatewayWithoutModule()
        for (index, step) in steps.enumerated() {
            let summary = step.summary
            let entry = try await store.beginStep(StepStart(run: run, region: desired.region, host: desired.host, step: summary, detail: JSONDetail(["root": desired.root])))
            events(.stepStarted(region: desired.region, host: desired.host, step: summary))
            do {
                try await execute(step, then: index == steps.count - 1 ? afterLastStep : nil)
            } catch {
                let reason = "\(error)"
                _ = try? await store.finishStep(entry, outcome: .failed, detail: JSONDetail(["error": reason]))
                events(.stepFinished(region: desired.region, host: desired.host, step: summary, error: reason))
                throw HostStepError(step: summary, reason: reason)
            }
            _ = try await store.finishStep(entry, outcome: .ok, detail: .empty)
            events(.stepFinished(region: desired.region, host: desired.host, step: summary, error: nil))
        }
    }

    /// A gateway step whose configuration loads nginx's JavaScript module
    /// would fail its `nginx -t` on a host without it, after this host's files
    /// and components changed: refuse before the first step instead, naming
    /// the package to install.
    func refuseGatewayWithoutModule() async throws {
        guard steps.contains(.activateGateway), desired.gateway?.residencyScript != nil else { return }
        let probe = try await session.run(RemoteCommand(fixedScript: "if \(NginxJavaScriptModule.probe); then echo module yes; else echo module no; fi"))
        guard probe.stdoutText.contains("module yes") else {
            throw HostStepError(step: "check the gateway host", reason: NginxJavaScriptModule.missing(on: "host \(desired.id)"))
        }
    }

    func execute(_ step: HostStep, then next: RemoteCommand? = nil) async throws {
        let root = desired.root
        switch step {
        case .writeBatch(let keeping, let paths, let writesManifest):
            var files: [RemoteScripts.BatchedFile] = []
            var data: [Data] = []
            for path in paths {
                guard let file = desired.files.first(where: { $0.path == path }), let content = contents[path] else {
                    throw HostStepError(step: step.summary, reason: "\(path) is not in the desired state")
                }
                files.append(RemoteScripts.BatchedFile(path: path, mode: file.mode))
                data.append(content)
            }
            if writesManifest {
                // The list of sensitive paths is renamed into place before the
                // manifest, so no observation after this apply reads in plain a
                // file the manifest records as sensitive.
                files.append(RemoteScripts.BatchedFile(path: HostManifest.sensitivePathsFile, mode: 0o644))
                data.append(manifest.sensitivePathsList)
                files.append(RemoteScripts.BatchedFile(path: HostManifest.path, mode: 0o644))
                data.append(manifest.encoded())
            }
            _ = try await session.run(RemoteScripts.writeBatch(root: root, keeping: keeping, files: files, then: next), stdin: RemoteScripts.batchInput(data))
        case .prepareHost(let paths):
            _ = try await session.run(RemoteScripts.prepareHost(root: root, keeping: paths))
        case .installRelease(let release):
            guard let local = artifacts[release.sha256] else {
                throw HostStepError(step: step.summary, reason: "the artifact with SHA-256 \(release.sha256) was not prepared")
            }
            _ = try await session.run(RemoteScripts.makeIncoming(root: root))
            _ = try await session.upload(file: local.localPath, to: RemoteScripts.incomingPath(root: root, sha256: release.sha256), mode: 0o600)
            _ = try await session.run(RemoteScripts.unpackRelease(root: root, release: release))
        case .writeFile(let path):
            guard let file = desired.files.first(where: { $0.path == path }), let data = contents[path] else {
                throw HostStepError(step: step.summary, reason: "\(path) is not in the desired state")
            }
            _ = try await session.upload(data, to: RemoteScripts.join(root, path), mode: UInt32(file.mode))
        case .deleteFile(let path):
            _ = try await session.run(RemoteScripts.deleteFile(root: root, path: path))
        case .stopComponent(let component, let slot):
            _ = try await session.run(RemoteScripts.stop(root: root, component: component, slot: slot, graceSeconds: timings.stopGraceSeconds))
        case .linkSlot(let component, let slot, let version):
            _ = try await session.run(RemoteScripts.linkSlot(root: root, component: component, slot: slot, version: version))
        case .startComponent(let component, let slot):
            guard let layout = desired.components.first(where: { $0.component == component }) else {
                throw HostStepError(step: step.summary, reason: "component \(component) is not in the desired state")
            }
            _ = try await session.run(RemoteScripts.start(root: root, layout: layout, slot: slot))
        case .healthCheck(let component, let slot, let address, let port, let path):
            try await Self.healthCheck(component: component, slot: slot, address: address, port: port, path: path, root: desired.root, timings: timings, on: session)
        case .smokeTest(let component, let slot):
            guard let layout = desired.components.first(where: { $0.component == component }) else {
                throw HostStepError(step: step.summary, reason: "component \(component) is not in the desired state")
            }
            for probe in layout.smoke {
                try await Self.smokeProbe(probe, component: component, slot: slot, address: layout.address, port: layout.port(slot), on: session)
            }
        case .activateGateway:
            guard let gateway = desired.gateway else {
                throw HostStepError(step: step.summary, reason: "host \(desired.id) has no gateway configuration in the desired state")
            }
            _ = try await GatewayActivation.activate(gateway, root: root, on: session, host: desired.id.description)
        case .writeManifest:
            // The prepare step, always first, created state/. The list of
            // sensitive paths goes first, so no observation after this apply
            // reads in plain a file the manifest records as sensitive.
            _ = try await session.upload(manifest.sensitivePathsList, to: RemoteScripts.join(root, HostManifest.sensitivePathsFile), mode: 0o644)
            _ = try await session.upload(manifest.encoded(), to: RemoteScripts.join(root, HostManifest.path), mode: 0o644)
        }
    }

    /// Sends one smoke probe straight to a slot's address and port through
    /// the SSH connection; fails naming what was expected and what came back.
    static func smokeProbe(_ probe: SmokeProbe, component: String, slot: SlotName, address: String, port: Int, on session: SSHSession) async throws {
        let place = "smoke probe \(probe.name) of \(component) (\(slot.rawValue)): \(probe.method) \(HostPort(address, port))\(probe.path)"
        let response: HTTPResponse
        do {
            response = try await session.httpRequest(method: probe.method, address: address, port: port, path: probe.path, timeout: .seconds(20))
        } catch {
            throw HostStepError(step: place, reason: "no answer: \(error)")
        }
        if let failure = probe.failure(status: response.status, body: String(decoding: response.body, as: UTF8.self)) {
            throw HostStepError(step: place, reason: failure)
        }
    }

    /// Asks the slot's address and port through the SSH connection until it
    /// answers 2xx, a bounded number of times; stops early when the process died.
    static func healthCheck(component: String, slot: SlotName, address: String, port: Int, path: String, root: String, timings: ApplyTimings, on session: SSHSession) async throws {
        var last = "no answer"
        for attempt in 1...max(1, timings.healthAttempts) {
            do {
                let response = try await session.httpRequest(address: address, port: port, path: path, timeout: .seconds(3))
                if (200..<300).contains(response.status) { return }
                last = "HTTP \(response.status) \(response.reason)"
            } catch {
                last = "\(error)"
            }
            if attempt % 8 == 0 {
                let running = try await session.exec(RemoteScripts.isRunning(root: root, component: component, slot: slot))
                if running.stdoutText.hasPrefix("dead") { last = "the process exited"; break }
            }
            try await Task.sleep(for: timings.healthInterval)
        }
        let tail = (try? await session.exec(RemoteScripts.logTail(root: root, component: component, slot: slot)).stdoutText) ?? ""
        let log = tail.isEmpty ? "" : "; last lines of \(RemoteScripts.logFile(root: root, component: component, slot: slot)):\n\(tail)"
        throw HostStepError(step: "health check of \(component) (\(slot.rawValue)) on \(HostPort(address, port))\(path)", reason: "\(last)\(log)")
    }
}
