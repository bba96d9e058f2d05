import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH

/// Carries out `meridian routes verify`: through the SSH connection of every
/// host it checks the health of the components the host runs, and through
/// every gateway host of the selected regions it sends the probes to the
/// gateway (a direct-tcpip channel, so no gateway has to be public). The
/// expected answers come from the routing table and the health seen. The
/// drift job runs the same two looks on its own connections (`DriftEngine`).
public struct ResidencyVerifier: Sendable {
    public let fleet: Fleet
    public let table: RoutingTable
    public let endpoints: FleetEndpoints
    public let parallelism: Int
    public let timeout: Duration

    public init(fleet: Fleet, table: RoutingTable, endpoints: FleetEndpoints, parallelism: Int, timeout: Duration = .seconds(10)) {
        self.fleet = fleet
        self.table = table
        self.endpoints = endpoints
        self.parallelism = parallelism
        self.timeout = timeout
    }

    /// What one host showed: its components' health, and the answers of its
    /// gateway (when it is one of a selected region).
    struct HostLook: Sendable {
        var healthyComponents: Set<String>
        var answers: [ResidencyAnswer]
    }

    public struct Result: Sendable {
        public var checks: [ResidencyCheck]
        /// Regions whose every routed component answered its health check on
        /// some host and whose gateway hosts were reached.
        public var healthy: Set<String>
        /// Hosts that could not be examined, as sentences.
        public var unreachable: [String]
    }

    /// A region is healthy when every component with a route answers its
    /// health check (2xx) on some host of the region, on either slot, and
    /// every gateway host of it was reached — what its gateway needs to serve.
    public func verify(regions selected: [String]) async throws -> Result {
        guard let path = ResidencyVerification.probePath(fleet) else { throw VerifyError(Self.noRoute) }
        let probes = ResidencyVerification.probes(table)
        let header = fleet.settings.residency.header
        let refuseStatus = fleet.settings.residency.refuseStatus
        let selectedSet = Set(selected.isEmpty ? fleet.regions.map(\.name) : selected)
        let components = fleet.settings.components
        let targets = endpoints.endpoints()
        let timeout = self.timeout
        let outcomes = await SSHFanOut.run(targets.map(\.endpoint), parallelism: parallelism) { session in
            let target = targets.first { $0.endpoint.hostID == session.endpoint.hostID }!
            let healthy = await Self.healthyComponents(of: target.host, components: components, on: session, timeout: timeout)
            var answers: [ResidencyAnswer] = []
            if target.host.roles.contains(.gateway), selectedSet.contains(target.region.name) {
                answers = await Self.probe(target.host, of: target.region, probes: probes, path: path, header: header, refuseStatus: refuseStatus, on: session, timeout: timeout)
            }
            return HostLook(healthyComponents: healthy, answers: answers)
        }
        var unreachable: [String] = []
        var reached: [HostID: HostLook] = [:]
        for (target, outcome) in zip(targets, outcomes) {
            switch outcome.result {
            case .success(let look): reached[HostID(region: target.region.name, host: target.host.name)] = look
            case .failure(let error): unreachable.append("\(target.endpoint.place): \(error)")
            }
        }
        let healthy = ResidencyVerification.healthyRegions(fleet, components: reached.mapValues(\.healthyComponents))
        var checks: [ResidencyCheck] = []
        for region in fleet.regions where selectedSet.contains(region.name) {
            for gateway in region.gateways {
                guard let look = reached[HostID(region: region.name, host: gateway.name)] else { continue }
                checks += ResidencyVerification.checks(table, region: region.name, host: gateway.name, probes: probes, answers: look.answers, healthy: healthy)
            }
        }
        return Result(checks: checks, healthy: healthy, unreachable: unreachable)
    }

    static let noRoute = "no component has a route, so no request can pass a gateway's residency section; give a component `route:` in meridian.yaml"

    /// The components of `host` that answer their health path (2xx) on either slot.
    static func healthyComponents(of host: FleetHost, components: [Component], on session: SSHSession, timeout: Duration) async -> Set<String> {
        var healthy: Set<String> = []
        for component in components where host.roles.contains(.component(component.name)) {
            for slot in Slot.allCases {
                let response = try? await session.httpRequest(address: host.serviceAddress, port: component.ports[slot], path: component.health, timeout: timeout)
                if let response, (200..<300).contains(response.status) { healthy.insert(component.name); break }
            }
        }
        return healthy
    }

    /// Sends each probe to the gateway of `host` (its service address and the
    /// region's gateway port) and reads each answer.
    static func probe(_ host: FleetHost, of region: Region, probes: [ResidencyProbe], path: String, header: String, refuseStatus: Int,
                      on session: SSHSession, timeout: Duration) async -> [ResidencyAnswer] {
        var answers: [ResidencyAnswer] = []
        for probe in probes {
            let headers = probe.header.map { [HTTPHeader(name: header, value: $0)] } ?? []
            do {
                let response = try await session.httpRequest(address: host.serviceAddress, port: region.gatewayPort, path: path, headers: headers, timeout: timeout)
                answers.append(ResidencyVerification.answer(status: response.status, header: { response.header($0) }, refuseStatus: refuseStatus))
            } catch {
                answers.append(.failed("\(error)"))
            }
        }
        return answers
    }

    public struct VerifyError: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }
}
