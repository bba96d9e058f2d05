import Foundation
import MeridianBasics
import MeridianLoading
import MeridianModel
import MeridianPlanning
import MeridianSSH

/// A host that could not be observed or changed, with the sentence saying why.
public struct HostFailure: Sendable, Equatable, CustomStringConvertible {
    public var region: String
    public var host: String
    public var reason: String

    public init(region: String, host: String, reason: String) {
        self.region = region
        self.host = host
        self.reason = reason
    }

    public var description: String { "host \(region)/\(host): \(reason)" }
}

/// Everything planning needs from the fleet that is the same for planning
/// and applying: the desired state of each host and the basis the plan records.
/// Invariant: `desired` holds the hosts of `regions` only, and every
/// release in it has its artifact in `artifacts`.
public struct DesiredFleet: Sendable {
    public var regions: [String]
    public var desired: [DesiredHostState]
    public var artifacts: [String: LocalArtifact]
    public var basis: PlanBasis

    /// The local artifact of a release, by its SHA-256.
    public func artifact(sha256: String) -> LocalArtifact? { artifacts[sha256] }
}

/// The fleet could not be turned into desired state: every problem, as sentences.
public struct DesiredStateProblems: Error, Sendable, CustomStringConvertible {
    public var diagnostics: Diagnostics
    public var artifactProblems: [ArtifactProblem]
    public var description: String {
        (diagnostics.sorted.map(\.description) + artifactProblems.map(\.description)).joined(separator: "\n")
    }
}

/// The result of planning: the plan for the regions whose hosts could all be
/// observed, and the hosts that could not (their regions are left out).
public struct PlanningResult: Sendable {
    public var plan: Plan
    public var fleet: DesiredFleet
    /// Regions left out of the plan, with their failed hosts.
    public var failures: [HostFailure]
    public var failedRegions: [String] { Array(Set(failures.map(\.region))).sorted() }
    /// The regions left out, with the sentence of each host that could not be observed.
    public var leftOut: [LeftOutRegion] {
        failedRegions.map { region in LeftOutRegion(name: region, reasons: failures.filter { $0.region == region }.map(\.description)) }
    }
}

/// Plans a fleet end to end: artifacts, templates and desired state from the
/// fleet repository, one observation round trip per host (no lock), then the
/// pure planner. Only the observation touches the network.
public struct PlanEngine: Sendable {
    public let fleet: Fleet
    public let fleetRoot: URL
    public let bundles: [GovernanceBundle]
    public let environment: [String: String]

    /// How this fleet's hosts are reached: the one mapping every engine uses.
    public let endpoints: FleetEndpoints
    /// Sessions the command keeps open across its phases (plan, then apply's
    /// lock, steps and unlock reuse them); nil opens one per fan-out.
    public let sessions: SSHSessionPool?

    public init(fleet: Fleet, fleetRoot: URL, bundles: [GovernanceBundle], environment: [String: String] = ProcessInfo.processInfo.environment, sessions: SSHSessionPool? = nil) {
        self.sessions = sessions
        self.fleet = fleet
        self.fleetRoot = fleetRoot
        self.bundles = bundles
        self.environment = environment
        self.endpoints = FleetEndpoints(fleet: fleet, fleetRoot: fleetRoot, environment: environment)
    }

    /// The SSH endpoint of a host of this fleet's desired state.
    public func endpoint(for host: DesiredHostState) -> SSHEndpoint {
        // Desired states come from this fleet, so the region and host exist.
        let region = fleet.region(named: host.region)!
        let fleetHost = region.hosts.first { $0.name == host.host }!
        return endpoints.endpoint(fleetHost, in: region)
    }

    /// The named regions (all when empty), in fleet order.
    public func regionNames(_ wanted: [String]) -> [String] {
        fleet.regions.map(\.name).filter { wanted.isEmpty || wanted.contains($0) }
    }

    /// Renders the desired state of the named regions, or throws every problem at once.
    public func desiredFleet(regions wanted: [String]) throws -> DesiredFleet {
        let names = regionNames(wanted)
        let selected = Set(names)
        let (artifacts, artifactProblems) = ArtifactPreparation(fleet: fleet, fleetRoot: fleetRoot).prepare(regions: selected)
        var templates: [String: String] = [:]
        var templateHashes: [String: String] = [:]
        let fileSystem = LocalFleetFileSystem(root: fleetRoot)
        for region in fleet.regions where selected.contains(region.name) {
            for config in region.configFiles where templates[config.template] == nil {
                // Only a regular file inside the repository: a link to a key elsewhere renders nothing.
                if case .success(let template) = FleetTemplates.read(config.template, from: fileSystem) {
                    templates[config.template] = template.text
                    templateHashes[config.template] = template.sha256
                }
            }
        }
        let renderer = DesiredStateRenderer(fleet: fleet, bundles: bundles, templates: templates, artifacts: artifacts.map(\.artifact))
        let (desired, diagnostics) = renderer.render(regions: selected)
        var problems = diagnostics
        for host in desired {
            for problem in host.problems {
                problems.error(SourceLocation(file: "regions/\(host.region).yaml"), "hosts", problem)
            }
        }
        guard !problems.hasErrors, artifactProblems.isEmpty else {
            throw DesiredStateProblems(diagnostics: problems, artifactProblems: artifactProblems)
        }
        // Templates are part of what the plan was made from, beside the YAML files.
        var fleetFiles = fleet.fileHashes
        for (path, hash) in templateHashes { fleetFiles[path] = hash }
        return DesiredFleet(
            regions: names,
            desired: desired,
            artifacts: Dictionary(artifacts.map { ($0.artifact.sha256, $0) }, uniquingKeysWith: { a, _ in a }),
            basis: PlanBasis(fleetFiles: fleetFiles, gitCommit: Self.gitCommit(fleetRoot))
        )
    }

    /// Plans the named regions (all when empty). Hosts are observed in
    /// parallel, at most `parallelism` at once. With `secrets`, sensitive
    /// files are also compared by keyed hash with their rendering under the
    /// current secrets, so the plan shows a changed secret value (never the value).
    public func plan(regions wanted: [String], parallelism: Int, secrets: KeyedComparison? = nil) async throws -> PlanningResult {
        let fleet = try desiredFleet(regions: wanted)
        let observations = await observe(fleet.desired, parallelism: parallelism, recordedSensitive: secrets?.recordedSensitive ?? [:],
                                         fleetKey: secrets?.fleetKey, lock: { _ in nil })
        var observed: [HostID: ObservedHostState] = [:]
        var failures: [HostFailure] = []
        for (host, outcome) in zip(fleet.desired, observations) {
            switch outcome {
            case .success(let observation): observed[host.id] = observation.state
            case .failure(let failure): failures.append(failure)
            }
        }
        return Self.plan(fleet, observed: observed, failures: failures, secrets: secrets)
    }

    /// The plan of `fleet` against what was observed: regions with a failed
    /// host are left out; gateways are rendered at the traffic splits the
    /// hosts record (a canary in progress keeps its weights); sensitive files
    /// are compared by keyed hash when `secrets` is given.
    public static func plan(_ fleet: DesiredFleet, observed: [HostID: ObservedHostState], failures: [HostFailure], secrets: KeyedComparison?) -> PlanningResult {
        var fleet = fleet
        fleet.desired = RecordedSplits.rendered(fleet.desired, observed: observed)
        let failedRegions = Set(failures.map(\.region))
        let planned = fleet.desired.filter { !failedRegions.contains($0.region) }
        var rewrites: [HostID: Set<String>] = [:]
        if let secrets {
            for host in planned {
                rewrites[host.id] = secrets.rewrites(host, observed: observed[host.id])
            }
        }
        var plan = Planner.plan(desired: planned, observed: observed, basis: fleet.basis, keyedRewrites: rewrites)
        plan.residency = ResidencyPlan.compare(desired: planned, observed: observed)
        return PlanningResult(plan: plan, fleet: fleet, failures: failures)
    }

    /// Observes each host in one round trip, asking for its lock when `lock` returns a request.
    func observe(_ hosts: [DesiredHostState], parallelism: Int, recordedSensitive: [HostID: Set<String>] = [:], fleetKey: Data? = nil,
                 lock: @escaping @Sendable (DesiredHostState) -> LockRequest?) async -> [Result<Observation, HostFailure>] {
        let targets = hosts.map { endpoint(for: $0) }
        let byID = Dictionary(hosts.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let outcomes = await SSHFanOut.run(targets, parallelism: parallelism, pool: sessions) { session in
            guard let host = byID[session.endpoint.hostID] else { throw HostFailure(region: session.endpoint.region, host: session.endpoint.hostName, reason: "not in the desired state") }
            return try await HostObserver.observe(Self.observeScript(for: host, lock: lock(host), recordedSensitive: recordedSensitive[host.id] ?? [], fleetKey: fleetKey), on: session)
        }
        return zip(hosts, outcomes).map { host, outcome in
            outcome.result.mapError { HostFailure(region: host.region, host: host.host, reason: "\($0)") }
        }
    }

    /// The observation of a desired host: sensitive files (now, or per the
    /// store's record) are hashed under the host's key, never in plain.
    static func observeScript(for host: DesiredHostState, lock: LockRequest?, recordedSensitive: Set<String>, fleetKey: Data?) -> ObserveScript {
        ObserveScript(desired: host, lock: lock, recordedSensitive: recordedSensitive,
                      fileKey: fleetKey.map { HostFileKey.derive(fleetKey: $0, region: host.region, host: host.host) })
    }

    /// HEAD of the fleet repository, nil when it is not a git repository (or git is missing).
    public static func gitCommit(_ root: URL) -> String? {
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent(".git").path) else { return nil }
        switch LocalProcess.run(["git", "-C", root.path, "rev-parse", "HEAD"]) {
        case .success(let data):
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : text
        case .failure:
            return nil
        }
    }
}

extension HostFailure: Error {}

/// What planning needs to compare sensitive files by keyed hash: the
/// store's fleet key, the paths its manifests record as sensitive (by host
/// id), and the secrets. Only a boolean per file comes out of it.
public struct KeyedComparison: Sendable {
    public var fleetKey: Data
    public var recordedSensitive: [HostID: Set<String>]
    public var secrets: any SecretResolver

    public init(fleetKey: Data, recordedSensitive: [HostID: Set<String>], secrets: any SecretResolver) {
        self.fleetKey = fleetKey
        self.recordedSensitive = recordedSensitive
        self.secrets = secrets
    }

    /// Sensitive files of `host` whose copy differs by keyed hash from their
    /// rendering now; a file whose secrets cannot be read is left to apply,
    /// which reports it.
    func rewrites(_ host: DesiredHostState, observed: ObservedHostState?) -> Set<String> {
        let key = HostFileKey.derive(fleetKey: fleetKey, region: host.region, host: host.host)
        var paths = Set<String>()
        for file in host.files where file.content.isSensitive {
            guard let data = try? SensitiveRendering.render(file, secrets: secrets) else { continue }
            if !SensitiveRewrite.hostCopyMatches(observed?.files[file.path], keyedHash: key.keyedHash(data), mode: file.mode) { paths.insert(file.path) }
        }
        return paths
    }
}

extension PlanEngine {
    /// Observes every host of the named regions (all when empty) with no
    /// managed-file requests: its manifest, releases, slots, processes and lock.
    public func observeHosts(regions wanted: [String], parallelism: Int) async -> [(region: String, host: String, result: Result<ObservedHostState, HostFailure>)] {
        let targets = endpoints.endpoints(regions: wanted)
        let roots = Dictionary(targets.map { (HostID(region: $0.region.name, host: $0.host.name), $0.host.effectiveRoot(fleet.settings.defaults)) }, uniquingKeysWith: { a, _ in a })
        let outcomes = await SSHFanOut.run(targets.map(\.endpoint), parallelism: parallelism) { session in
            let root = roots[session.endpoint.hostID] ?? "/"
            return try await HostObserver.observe(ObserveScript(root: root, files: [], listedFolders: []), on: session).state
        }
        return zip(targets, outcomes).map { target, outcome in
            (target.region.name, target.host.name, outcome.result.mapError { HostFailure(region: target.region.name, host: target.host.name, reason: "\($0)") })
        }
    }
}
