import Foundation
import Testing
import MeridianBasics
@testable import MeridianLoading
@testable import MeridianModel
@testable import MeridianPlanning

/// Where slot processes listen: a host's `listen` (else its `address`), the
/// `{address}` placeholder, and the checks that keep two hosts of one machine apart.
@Suite struct ServiceAddressTests {
    func host(_ extra: String, address: String = "127.0.1.1") -> String {
        MinimalFleet.euWest.replacingOccurrences(of: "    address: 127.0.1.1\n", with: "    address: \(address)\n\(extra)")
    }

    @Test func listenIsReadAndDefaultsToTheAddress() throws {
        let fleet = try #require(MinimalFleet.load(["regions/eu-west.yaml": host("    listen: 10.20.0.5\n")]).fleet)
        let eu = try #require(fleet.region(named: "eu-west")?.hosts.first)
        #expect(eu.listen == "10.20.0.5" && eu.serviceAddress == "10.20.0.5" && eu.address == "127.0.1.1")
        let us = try #require(fleet.region(named: "us-east")?.hosts.first)
        #expect(us.listen == nil && us.serviceAddress == "127.0.4.1")
        #expect(FleetHost(name: "v6", address: "h.example", listen: "[fd00::5]", roles: []).serviceAddress == "fd00::5")
    }

    @Test func aBadListenIsAnErrorWithItsPlace() {
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": host("    listen: gw_1.internal\n")]) == [
            #"regions/eu-west.yaml:6:13: hosts[0].listen: expected the IPv4 or IPv6 address or DNS name where the host's services listen, got "gw_1.internal""#,
        ])
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": host("    listen: 0.0.0.0\n")]) == [
            "regions/eu-west.yaml:6:13: hosts[0].listen: 0.0.0.0 means every address and cannot be reached: give the one address the region's gateway reaches this host on",
        ])
        #expect(MinimalFleet.diagnostics(["regions/eu-west.yaml": host("    listen: \"[::]\"\n")]).first?.contains("[::] means every address") == true)
    }

    @Test func twoHostsOnOneServiceAddressCannotRunOneComponent() {
        // Two SSH ports of one machine (127.0.1.1) running inference: both would bind 8101.
        let us = MinimalFleet.usEast.replacingOccurrences(of: "    address: 127.0.4.1\n", with: "    address: 127.0.1.1\n    port: 2222\n")
        #expect(MinimalFleet.diagnostics(["regions/us-east.yaml": us]) == [
            "regions/us-east.yaml:5:14: hosts[0].address: inference on us-1 would listen on 127.0.1.1 port 8101, where inference of host eu-1 (region eu-west) listens: give each host its own service address with listen, or run the component on one of them",
        ])
        // A listen of its own keeps them apart; the same listen on another host does not.
        let apart = us.replacingOccurrences(of: "    port: 2222\n", with: "    port: 2222\n    listen: 127.0.1.2\n")
        #expect(MinimalFleet.diagnostics(["regions/us-east.yaml": apart]) == [])
        let same = MinimalFleet.usEast.replacingOccurrences(of: "    address: 127.0.4.1\n", with: "    address: 127.0.4.1\n    listen: 127.0.1.1\n")
        #expect(MinimalFleet.diagnostics(["regions/us-east.yaml": same]).first?.hasPrefix("regions/us-east.yaml:6:13: hosts[0].listen: inference on us-1 would listen on 127.0.1.1 port 8101") == true)
    }

    @Test func unknownStartPlaceholdersAreErrors() {
        let settings = MinimalFleet.settings.replacingOccurrences(of: #"start: [bin/serve, --port, "{port}"]"#,
                                                                 with: #"start: [bin/serve, --bind, "{adress}", --json, '{"a":1}', "{root}/x"]"#)
        #expect(MinimalFleet.diagnostics(["meridian.yaml": settings]) == [
            "meridian.yaml:5:32: components.inference.start[2]: unknown placeholder {adress}: the start command can use {address}, {port}, {slot}, {version}, {root}; did you mean {address}?",
        ])
        #expect(Component.placeholders(in: "--x={address}:{port}{}{ROOT}") == ["address", "port"])
    }

    @Test func slotsListenOnTheServiceAddress() throws {
        let fleet = try #require(MinimalFleet.load(["regions/eu-west.yaml": host("    listen: 127.0.1.77\n")]).fleet)
        let renderer = DesiredStateRenderer(fleet: fleet, bundles: [], templates: ["templates/a.tmpl": "listen: {{ host.listen }}\n"], artifacts: [], requireArtifacts: false)
        let (states, diagnostics) = renderer.render()
        #expect(!diagnostics.hasErrors)
        let eu = try #require(states.first { $0.host == "eu-1" })
        #expect(eu.files.first { $0.path == "config/inference/a.yaml" }?.content == .bytes(Data("listen: 127.0.1.77\n".utf8)))
        let withArtifacts = DesiredStateRenderer(fleet: fleet, bundles: [], templates: ["templates/a.tmpl": ""],
                                                 artifacts: [PreparedArtifact(component: "inference", version: "2.0.0", fileName: "i.tar", sha256: "ab")])
        let layout = try #require(withArtifacts.render().0.first { $0.host == "eu-1" }?.components.first)
        #expect(layout.address == "127.0.1.77")
    }

    @Test func aMovedAddressRestartsTheComponent() throws {
        let desired = PlanFixtures.desired[1]
        let observed = PlanFixtures.observedInSync(desired)
        var moved = desired
        moved.components[0].address = "10.0.1.99"
        let plan = Planner.plan(desired: [moved], observed: [desired.id: observed], basis: PlanFixtures.basis)
        #expect(plan.hosts[0].actions.map { "\($0.kind.rawValue) \($0.subject) \($0.reasons)" } == [
            "restart_component inference [\"address 10.0.1.5 → 10.0.1.99\"]",
        ])
    }

    @Test func smokeVerdictsSayWhatWasWrong() {
        let probe = SmokeProbe(name: "models", path: "/v1/models", expectStatus: 200, expectBodyContains: #""object":"list""#)
        #expect(probe.failure(status: 200, body: #"{"object":"list","data":[]}"#) == nil)
        #expect(probe.failure(status: 503, body: "") == "answered HTTP 503, expected 200")
        #expect(probe.failure(status: 200, body: "{}") == #"the body does not contain "object":"list": "{}""#)
    }
}
