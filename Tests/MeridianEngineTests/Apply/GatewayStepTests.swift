import Foundation
import Testing
import MeridianBasics
@testable import MeridianEngine
import MeridianModel
@testable import MeridianPlanning

/// The gateway as desired state, on values only: rendered onto gateway hosts,
/// applied through the gateway step, and classified as its own drift kind.
@Suite struct GatewayStepTests {
    static func fleet() -> Fleet {
        let inference = Component(name: "inference", artifact: .path("artifacts/inference/{version}"), start: ["bin/serve"],
                                  ports: SlotPorts(blue: 8101, green: 8102), route: "/v1/")
        let settings = FleetSettings(name: "t", defaults: FleetDefaults(), components: [inference], platform: [:], waves: [], residency: ResidencySettings())
        let region = Region(name: "eu", file: "regions/eu.yaml", jurisdiction: Jurisdiction("EU")!, gatewayPort: 8080, hosts: [
            FleetHost(name: "gw", address: "127.0.1.1", roles: [.gateway]),
            FleetHost(name: "app", address: "127.0.1.2", roles: [.component("inference")]),
        ])
        return Fleet(settings: settings, regions: [region], policies: [], fileHashes: [:], sources: SourceMap())
    }

    static func render(_ splits: [String: [String: TrafficSplit]] = [:]) -> [String: DesiredHostState] {
        let renderer = DesiredStateRenderer(fleet: fleet(), bundles: [], templates: [:], artifacts: [], requireArtifacts: false, trafficSplits: splits)
        let (states, diagnostics) = renderer.render()
        #expect(!diagnostics.hasErrors)
        return Dictionary(uniqueKeysWithValues: states.map { ($0.host, $0) })
    }

    @Test func theGatewayHostDesiresItsConfigurationAsAFile() throws {
        let states = Self.render()
        let gateway = try #require(states["gw"]?.gateway)
        #expect(states["app"]?.gateway == nil)
        #expect(states["app"]?.files.contains { $0.path == GatewayConfig.path } == false)
        let file = try #require(states["gw"]?.files.first { $0.path == GatewayConfig.path })
        #expect(file.content == .bytes(Data(gateway.text.utf8)) && file.mode == 0o644)
        // No rollout in progress: all traffic on the active slot.
        #expect(gateway.routes.map(\.split) == [.all(on: .blue)])
        #expect(gateway.routes[0].servers.map(\.endpoint) == ["127.0.1.2:8101", "127.0.1.2:8102"])
        // A rollout's split is desired state too.
        let canary = try #require(Self.render(["eu": ["inference": TrafficSplit(blue: 90, green: 10)!]])["gw"]?.gateway)
        #expect(canary.routes[0].split == TrafficSplit(blue: 90, green: 10))
        #expect(canary.text != gateway.text)
    }

    /// HostPlan has no public memberwise initializer: plans are made by the planner or read back from JSON.
    func hostPlan(_ actions: [PlanAction]) -> HostPlan {
        let actionsJSON = String(decoding: (try? JSONEncoder().encode(actions)) ?? Data(), as: UTF8.self)
        let json = #"{"region":"eu","host":"gw","address":"127.0.1.1","root":"/srv/m","observed_state_sha256":"","sensitive_files":[],"warnings":[],"actions":"# + actionsJSON + "}"
        return try! JSONDecoder().decode(HostPlan.self, from: Data(json.utf8))
    }

    @Test func aChangedGatewayConfigurationGoesLiveThroughTheGatewayStepAfterTheFiles() throws {
        let desired = try #require(Self.render()["gw"])
        let plan = hostPlan([
            PlanAction(id: "1", kind: .updateFile, subject: DesiredHostState.governanceBundlePath),
            PlanAction(id: "2", kind: .updateFile, subject: GatewayConfig.path),
            PlanAction(id: "3", kind: .createFile, subject: "config/x.yaml"),
        ])
        let steps = HostStep.steps(for: plan, desired: desired, rewriteSensitive: [], writeManifest: false)
        #expect(steps == [
            .prepareHost(keeping: [DesiredHostState.governanceBundlePath, GatewayConfig.path, "config/x.yaml"]),
            .writeFile(path: DesiredHostState.governanceBundlePath),
            .writeFile(path: "config/x.yaml"),
            .activateGateway,
            .writeManifest,
        ])
        // Nothing about the gateway changed: no gateway step.
        let quiet = HostStep.steps(for: hostPlan([PlanAction(id: "3", kind: .createFile, subject: "config/x.yaml")]), desired: desired, rewriteSensitive: [], writeManifest: false)
        #expect(!quiet.contains(.activateGateway))
    }

    @Test func aStoppedGatewayIsPlannedAsTheGatewayStepAndARunningOneIsLeftAlone() throws {
        let desired = try #require(Self.render()["gw"])
        let gateway = try #require(desired.gateway)
        let file = ObservedFile.regular(sha256: SHA256.hex(gateway.text), mode: 0o644, size: gateway.text.utf8.count)
        func actions(running: Bool?) -> [PlanAction] {
            let observed = ObservedHostState(files: [GatewayConfig.path: file], gatewayRunning: running)
            return Planner.plan(desired: [desired], observed: [desired.id: observed], basis: PlanBasis(fleetFiles: [:], gitCommit: nil))
                .hosts[0].actions.filter { $0.subject == GatewayConfig.path }
        }
        let stopped = actions(running: false)
        #expect(stopped.count == 1 && stopped[0].kind == .updateFile && stopped[0].diff == nil, "\(stopped)")
        #expect(stopped[0].reasons == ["nginx is not running: the gateway step starts it with this configuration"])
        #expect(HostStep.steps(for: hostPlan(stopped), desired: desired, rewriteSensitive: [], writeManifest: false).contains(.activateGateway))
        #expect(actions(running: true).isEmpty)
        #expect(actions(running: nil).isEmpty)
    }

    @Test func theObservationSaysWhetherTheGatewayRuns() throws {
        let desired = try #require(Self.render()["gw"])
        let script = ObserveScript(desired: desired)
        let app = try #require(Self.render()["app"])
        #expect(script.observesGateway && !ObserveScript(desired: app).observesGateway)
        #expect(script.script.contains("gpid=$(head -c 32 \"$root\"/router/run/nginx.pid 2>/dev/null | tr -dc 0-9)"))
        func parse(_ record: String) -> String {
            let output = "meridian-observe 1\nlock-outcome not-requested\nlock none\nmanifest none\n" + (record.isEmpty ? "" : record + "\n") + "end\n"
            switch script.parse(Data(output.utf8), host: "eu/gw") {
            case .success(let observation): return observation.state.gatewayRunning.map { $0 ? "running" : "stopped" } ?? "not observed"
            case .failure(let error): return error.description
            }
        }
        #expect(parse("gateway running") == "running")
        #expect(parse("gateway stopped") == "stopped")
        #expect(parse("") == "not observed")
        #expect(parse("gateway maybe") == "host eu/gw: observation output line 5: malformed gateway record")
    }

    /// The drift kinds of a host whose manifest records `path` with `applied` as its content, observed as `file`.
    static func driftKinds(path: String, applied text: Data, observed file: ObservedFile) -> [DriftKind] {
        let applied = HostManifest(revision: "1", appliedAt: "t", appliedBy: "me",
                                   files: [path: ManifestFile(sha256: SHA256.hex(text), maskedSHA256: nil, mode: 0o644, component: nil)],
                                   releases: [], components: [:])
        let observed = ObservedHostState(manifest: .present(applied, sha256: "m"), files: [path: file])
        return DriftClassifier.classify(HostDriftEvidence(region: "eu", host: "gw", applied: applied, appliedSource: .stateStore,
                                                          observed: observed, hostNow: 0, regionLeaseHeld: false)).map(\.kind)
    }

    @Test func aHandEditedGatewayConfigurationIsItsOwnDriftKind() {
        let text = Data("worker_processes 1;\n".utf8)
        func kinds(_ file: ObservedFile) -> [DriftKind] { Self.driftKinds(path: GatewayConfig.path, applied: text, observed: file) }
        #expect(kinds(.regular(sha256: SHA256.hex(text), mode: 0o644, size: text.count)) == [])
        #expect(kinds(.regular(sha256: SHA256.hex("worker_processes 8;\n"), mode: 0o644, size: 20)) == [.gatewayConfigModified])
        #expect(kinds(.missing) == [.gatewayConfigModified])
        #expect(DriftKind.gatewayConfigModified.rawValue == "gateway-config-modified")
        #expect(DriftKind.gatewayConfigModified.isRemediable)
        #expect(DriftKind.gatewayConfigModified.fix.contains("meridian drift --remediate gateway-config-modified"))
    }

    @Test func aReplacedResidencyScriptGoesThroughTheGatewayStepAndIsWatchedLikeTheConfiguration() throws {
        let old = GatewayResidencyScript(header: "X-Data-Residency")
        let new = GatewayResidencyScript(header: "X-Residency")
        #expect(old.fileName != new.fileName && old.fileName.hasPrefix("residency-") && old.path == "router/" + old.fileName)
        #expect(GatewayResidencyScript.isScriptPath(old.path) && !GatewayResidencyScript.isScriptPath("router/sub/residency-1.js")
                && !GatewayResidencyScript.isScriptPath("config/residency-1.js"))
        #expect(HostStep.isGatewayFile(old.path) && HostStep.isGatewayFile(GatewayConfig.path) && !HostStep.isGatewayFile("config/a.yaml"))
        let text = Data(old.text.utf8)
        func kinds(_ file: ObservedFile) -> [DriftKind] { Self.driftKinds(path: old.path, applied: text, observed: file) }
        #expect(kinds(.regular(sha256: SHA256.hex(text), mode: 0o644, size: text.count)) == [])
        #expect(kinds(.regular(sha256: SHA256.hex("edited"), mode: 0o644, size: 6)) == [.gatewayConfigModified])
        #expect(kinds(.missing) == [.gatewayConfigModified])

        // A new script and the old one's removal are the gateway step's, which removes the old
        // one only after the configuration naming the new one is in place.
        let desired = try #require(Self.render()["gw"])
        let steps = HostStep.steps(for: hostPlan([
            PlanAction(id: "1", kind: .createFile, subject: new.path),
            PlanAction(id: "2", kind: .updateFile, subject: GatewayConfig.path),
            PlanAction(id: "3", kind: .deleteFile, subject: old.path),
        ]), desired: desired, rewriteSensitive: [], writeManifest: false)
        #expect(steps == [.prepareHost(keeping: [new.path, GatewayConfig.path, old.path]), .activateGateway, .writeManifest], "\(steps)")
    }
}
