import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianState

/// A region's nginx gateways as a rollout drives them: the split each one
/// serves, a new split put live on every gateway host (checked with
/// `nginx -t`, one reload, confirmed serving), and the access-log lines of
/// a step's window for the canary analysis. It starts from the gateways'
/// desired configurations at the recorded splits (`RecordedSplits`) and keeps
/// them as it moves traffic, so the other components' routes stay as they are.
/// The region's lease keeps any other run from changing these gateways meanwhile.
public final class NginxRegionGateway: RegionGateway, @unchecked Sendable {
    let planning: PlanEngine
    let store: any StateStore
    let run: RunID?
    private let lock = NSLock()
    /// The region's gateway hosts, each with the configuration it serves (or is to serve).
    private var gateways: [DesiredHostState]
    /// Shared with the rollouts' drivers: one session per host, and the manifest each host showed last.
    private let sessions: RolloutDriver.Sessions
    /// Per gateway host, the access log's length when the split now served went live.
    private var logOffsets: [HostID: Int] = [:]

    /// - Parameter hosts: the region's hosts, rendered at the recorded splits; those with a gateway are used.
    public init(planning: PlanEngine, store: any StateStore, run: RunID?, hosts: [DesiredHostState], sessions: RolloutDriver.Sessions) {
        self.planning = planning
        self.store = store
        self.run = run
        self.gateways = hosts.filter { $0.gateway != nil }
        self.sessions = sessions
    }

    /// Whether the region has a gateway that routes `component`.
    public func routes(_ component: String) -> Bool {
        lock.withLock { gateways.contains { $0.gateway?.split(of: component) != nil } }
    }

    func current() -> [DesiredHostState] { lock.withLock { gateways } }

    /// The region these gateways serve, for errors.
    var region: String { current().first?.region ?? "-" }

    func withSession<T: Sendable>(_ host: DesiredHostState, _ body: (SSHSession) async throws -> T) async throws -> T {
        try await sessions.using(host, planning: planning, body)
    }

    /// The canary's share when every gateway host serves the configuration
    /// this gateway holds; -1 (which no step has) when one serves another or
    /// nginx does not answer, so the rollout sets the weight again.
    public func canaryWeight(component: String, canary: Slot) async throws -> Int {
        var weight = -1
        for host in current() {
            guard let config = host.gateway else { continue }
            let serving: String?
            do {
                serving = try await withSession(host) { session in try await GatewayActivation.servingIdentity(config, on: session) }
            } catch let error as SSHError {
                // nginx not listening is a gateway to set again; a host out of reach stops the rollout.
                guard case .tunnelFailed = error.kind else { throw error }
                serving = nil
            }
            guard serving == config.identity, let split = config.split(of: component) else { return -1 }
            if weight == -1 { weight = split.percent(canary) } else if weight != split.percent(canary) { return -1 }
        }
        return weight
    }

    /// Records the new configuration's hash in each gateway host's manifest
    /// (so drift and plan expect it), then puts it live there.
    public func setWeight(component: String, canary: Slot, weight: Int) async throws {
        guard let split = TrafficSplit.percent(weight, on: canary) else {
            throw HostFailure(region: region, host: "gateway", reason: "a canary weight must be 0…100, not \(weight) (the rollout record of \(component) is damaged; `meridian rollout status \(region)` shows it)")
        }
        for host in current() {
            guard let config = host.gateway?.withSplit(split, for: component) else { continue }
            let next = host.withGateway(config)
            let report = try await withSession(host) { session in
                try await recordConfiguration(next, on: session)
                return try await GatewayActivation.activate(config, root: host.root, on: session, host: host.id.description)
            }
            lock.withLock {
                if let index = gateways.firstIndex(where: { $0.id == host.id }) { gateways[index] = next }
                switch report.outcome {
                case .reloaded(_, _, _, let offset?): logOffsets[host.id] = offset
                case .started, .reloaded, .checkFailed, .startFailed, .failed: logOffsets[host.id] = nil
                }
            }
        }
    }

    /// The host's manifest with the gateway configuration's new hash, written
    /// to the host and recorded in the store.
    func recordConfiguration(_ host: DesiredHostState, on session: SSHSession) async throws {
        guard let config = host.gateway else { return }
        // The manifest the host showed last (the rollout observed or wrote it, and the region's lease keeps others off).
        var known = sessions.manifest(of: host.id)
        if known == nil {
            known = try await HostObserver.observe(ObserveScript(root: host.root, files: [], listedFolders: []), on: session).state.manifest.manifest
        }
        guard var manifest = known else {
            throw HostFailure(region: host.region, host: host.host, reason: "it has no manifest to record the gateway configuration in; run `meridian apply`")
        }
        let previous = manifest.files[GatewayConfig.path]
        manifest.files[GatewayConfig.path] = ManifestFile(sha256: SHA256.hex(Data(config.text.utf8)), maskedSHA256: nil,
                                                          mode: previous?.mode ?? 0o644, component: previous?.component)
        manifest.revision = run.map { "run \($0.rawValue)" } ?? manifest.revision
        let data = manifest.encoded()
        try await RolloutDriver.writeManifest(data, root: host.root, on: session)
        sessions.remember(manifest, of: host.id)
        if let run { _ = try await store.recordManifest(run: run, region: host.region, host: host.host, manifest: data) }
    }

    /// The access-log lines of the window from every gateway host, judged
    /// canary against stable by `CanaryAnalyzer` with the component's settings.
    public func analyse(component: String, canary: Slot, weight: Int, step: Int, from: Int64, to: Int64) async throws -> StepAnalysis {
        guard let settings = planning.fleet.component(named: component) else {
            throw HostFailure(region: region, host: "gateway", reason: "component \(component) is not in the fleet files any more; restore it, or `meridian rollout abort \(region)`")
        }
        var text = ""
        for host in current() {
            let offset = lock.withLock { logOffsets[host.id] } ?? 0
            let lines = try await withSession(host) { session in
                try await session.exec(RemoteCommand(["sh", "-c", GatewayScripts(root: host.root).accessLogWindow(from: from, to: to, offset: offset)])).stdoutText
            }
            text += lines.hasSuffix("\n") || lines.isEmpty ? lines : lines + "\n"
        }
        let verdict = CanaryAnalyzer.analyze(log: AccessLog(text: text), component: settings, canarySlot: canary,
                                             window: AnalysisWindow(startMilliseconds: from, endMilliseconds: to))
        return StepAnalysis(verdict: verdict, step: step, weight: weight)
    }
}
