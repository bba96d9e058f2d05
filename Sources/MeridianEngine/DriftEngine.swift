import Foundation
import MeridianBasics
import MeridianLoading
import MeridianModel
import MeridianPlanning
import MeridianSSH
import MeridianState

/// What one drift run produced: the report, the run it was recorded as, how
/// the stored findings changed, and the evidence remediation decides from.
public struct DriftRunResult: Sendable {
    public var report: DriftReport
    public var run: RunID
    /// Findings that opened and cleared in the state store on this run.
    public var appeared: [DriftFinding]
    public var cleared: [DriftFinding]
    /// By `region/host`, for hosts that were examined.
    public var evidence: [HostID: HostDriftEvidence]
    /// By `region/host`: each host's desired state rendered from the fleet now.
    public var desired: [HostID: DesiredHostState]
}

/// A drift run was stopped (SIGTERM/SIGINT) before it finished; it is recorded as interrupted.
public struct DriftInterrupted: Error, CustomStringConvertible, Sendable {
    public var run: RunID
    public var description: String { "drift \(run) was interrupted before it finished; it is recorded as interrupted and found nothing" }
}

/// Observes every selected host in parallel (one observation round trip, no
/// lock taken, plus one health request per running component through the
/// same SSH connection), classifies against what meridian last applied, and
/// records the run and its findings. Invariant: it changes nothing on hosts.
public struct DriftEngine: Sendable {
    public let fleet: Fleet
    public let fleetRoot: URL
    public let store: any StateStore
    public let parallelism: Int
    public let endpoints: FleetEndpoints
    public var healthTimeout: Duration = .seconds(5)

    public init(fleet: Fleet, fleetRoot: URL, store: any StateStore, parallelism: Int? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.fleet = fleet
        self.fleetRoot = fleetRoot
        self.store = store
        self.parallelism = parallelism ?? fleet.settings.defaults.parallelism
        self.endpoints = FleetEndpoints(fleet: fleet, fleetRoot: fleetRoot, environment: environment)
    }

    /// What one host's part of the fan-out returns.
    struct HostLook: Sendable {
        var observed: ObservedHostState
        var hostNow: Int?
        var applied: HostManifest?
        var source: AppliedManifestSource?
        var health: [ComponentHealth]
        /// For the residency check: the components that answered on either slot.
        var servingComponents: Set<String>?
        /// For a gateway host: what it was applied with and how it answered the probes.
        var residency: ResidencyLook?
    }

    struct ResidencyLook: Sendable {
        var applied: AppliedResidency
        var probes: [ResidencyProbe]
        var answers: [ResidencyAnswer]
    }

    /// Runs one drift check over `regions` (all when empty) and records it.
    /// Throws `DriftInterrupted` when the task is cancelled part-way.
    public func run(regions: [String] = []) async throws -> DriftRunResult {
        let started = Date()
        let clock = ContinuousClock()
        let begin = clock.now
        let targets = endpoints.endpoints(regions: regions)
        let regionNames = Array(Set(targets.map(\.region.name))).sorted()
        let record = try await store.startRun(RunStart(kind: .drift, owner: .current(), regions: regionNames))
        do {
            return try await examine(targets: targets, regionNames: regionNames, run: record.id, started: started, begin: begin, clock: clock)
        } catch {
            if Task.isCancelled || error is CancellationError {
                // The store refuses work from a cancelled task, so the ending is
                // written from a task that is not cancelled.
                let store = self.store
                _ = try? await Task.detached {
                    try await store.finishRun(record.id, outcome: .interrupted, exitCode: 1, summary: "stopped by a signal before it finished")
                }.value
                throw DriftInterrupted(run: record.id)
            }
            _ = try? await store.finishRun(record.id, outcome: .failed, exitCode: 1, summary: "\(error)")
            throw error
        }
    }

    private func examine(targets: [(region: Region, host: FleetHost, endpoint: SSHEndpoint)], regionNames: [String], run: RunID,
                         started: Date, begin: ContinuousClock.Instant, clock: ContinuousClock) async throws -> DriftRunResult {
        let now = StateTime(Date())
        let leasedRegions = Set(try await store.leases().filter { !$0.isExpired(at: now) }.map(\.region))
        var recorded: [HostID: HostManifest] = [:]
        for applied in try await store.latestManifests(region: nil) {
            // A record that does not decode is treated as no record; the host's manifest then stands in.
            if let manifest = try? JSONDecoder().decode(HostManifest.self, from: applied.manifest) {
                recorded[HostID(region: applied.region, host: applied.host)] = manifest
            }
        }
        let (desired, desiredVersions) = renderDesired(regions: Set(regionNames))
        let healthPaths = Dictionary(fleet.settings.components.map { ($0.name, $0.health) }, uniquingKeysWith: { a, _ in a })
        let roots = Dictionary(targets.map { (HostID(region: $0.region.name, host: $0.host.name), $0.host.effectiveRoot(fleet.settings.defaults)) }, uniquingKeysWith: { a, _ in a })
        // Manifests written before addresses were recorded: the fleet's service address.
        let serviceAddresses = Dictionary(targets.map { (HostID(region: $0.region.name, host: $0.host.name), $0.host.serviceAddress) }, uniquingKeysWith: { a, _ in a })
        let healthTimeout = self.healthTimeout
        let recordedManifests = recorded
        let fleetKey = try await store.fileHashKey()
        // The residency check (the one `routes verify` makes) runs when the fleet has residency rules and a route to probe.
        let residencyPath = ResidencyCompiler.compile(fleet).0.entries.isEmpty ? nil : ResidencyVerification.probePath(fleet)
        let components = fleet.settings.components
        let placed = Dictionary(targets.map { ($0.endpoint.hostID, ($0.region, $0.host)) }, uniquingKeysWith: { a, _ in a })

        let outcomes = await SSHFanOut.run(targets.map(\.endpoint), parallelism: parallelism) { session in
            try Task.checkCancellation()
            let key = session.endpoint.hostID
            let root = roots[key] ?? "/"
            var applied = recordedManifests[key]
            var source: AppliedManifestSource? = applied == nil ? nil : .stateStore
            let fileKey = HostFileKey.derive(fleetKey: fleetKey, region: session.endpoint.region, host: session.endpoint.hostName)
            var (observed, hostNow) = try await Self.observe(DriftClassifier.observeScript(root: root, applied: applied, fileKey: fileKey), on: session)
            if applied == nil, let onHost = observed.manifest.manifest {
                // The store has no record of this host: its own manifest says
                // what was applied, and naming its files takes a second look.
                applied = onHost
                source = .hostOnly
                (observed, hostNow) = try await Self.observe(DriftClassifier.observeScript(root: root, applied: onHost, fileKey: fileKey), on: session)
            }
            var health: [ComponentHealth] = []
            for (name, component) in (applied?.components ?? [:]).sorted(by: { $0.key < $1.key }) where component.activeVersion != nil {
                let slot = component.activeSlot
                guard observed.process(component: name, slot: slot)?.alive == true else { continue }
                try Task.checkCancellation()
                let port = component.slot(slot).port
                let address = component.slot(slot).address ?? serviceAddresses[key] ?? session.endpoint.address
                let path = healthPaths[name] ?? "/healthz"
                let outcome: ComponentHealth.Outcome
                do {
                    let response = try await session.httpRequest(address: address, port: port, path: path, timeout: healthTimeout)
                    outcome = (200..<300).contains(response.status) ? .healthy : .unhealthy("HTTP \(response.status) \(response.reason)")
                } catch let error as SSHError {
                    if case .tunnelFailed(_, _, let reason) = error.kind { outcome = .unhealthy(reason) } else { throw error }
                }
                health.append(ComponentHealth(component: name, slot: slot, address: address, port: port, path: path, outcome: outcome))
            }
            var look = HostLook(observed: observed, hostNow: hostNow, applied: applied, source: source, health: health)
            if let residencyPath, let (region, host) = placed[key] {
                look.servingComponents = await ResidencyVerifier.healthyComponents(of: host, components: components, on: session, timeout: healthTimeout)
                if host.roles.contains(.gateway), let applied {
                    try Task.checkCancellation()
                    look.residency = try await Self.probeResidency(host, of: region, root: root, applied: applied, path: residencyPath, on: session, timeout: healthTimeout)
                }
            }
            return look
        }
        try Task.checkCancellation()
        let healthyRegions = residencyPath == nil ? [] : try await residencyHealth(targets: targets, outcomes: outcomes.map(\.result))

        var regionsOut: [String: (hosts: [HostExamination], findings: [DriftFinding], pending: [PendingChange])] = [:]
        for name in regionNames { regionsOut[name] = ([], [], []) }
        var evidenceByHost: [HostID: HostDriftEvidence] = [:]
        var reports: [HostDriftReport] = []
        for (target, outcome) in zip(targets, outcomes) {
            let region = target.region.name
            let host = target.host.name
            let key = HostID(region: region, host: host)
            switch outcome.result {
            case .success(let look):
                let evidence = HostDriftEvidence(region: region, host: host, applied: look.applied, appliedSource: look.source, observed: look.observed,
                                                 hostNow: look.hostNow, regionLeaseHeld: leasedRegions.contains(region), health: look.health)
                evidenceByHost[key] = evidence
                var findings = DriftClassifier.classify(evidence)
                if let residency = look.residency {
                    let checks = ResidencyVerification.checks(residency.applied.table, region: region, host: host, probes: residency.probes,
                                                              answers: residency.answers, healthy: healthyRegions)
                    findings += ResidencyVerification.driftFindings(checks, table: residency.applied.table, healthy: healthyRegions)
                }
                regionsOut[region]?.hosts.append(HostExamination(region: region, host: host, address: target.endpoint.address, examined: true))
                regionsOut[region]?.findings.append(contentsOf: findings)
                if let hostDesired = desired[key] {
                    regionsOut[region]?.pending.append(contentsOf: DriftClassifier.pendingChanges(desired: hostDesired, desiredVersions: desiredVersions[key] ?? [:], applied: look.applied))
                }
                reports.append(HostDriftReport(region: region, host: host, status: .examined(findings: findings.map(Self.observation))))
            case .failure(let error):
                if error is CancellationError { throw error }
                var keyChanged = false
                if let ssh = error as? SSHError {
                    switch ssh.kind {
                    case .hostKeyChanged, .hostKeyRevoked: keyChanged = true
                    case .unreachable, .connectTimeout, .handshakeFailed, .hostKeyUnknown, .authRefused, .commandFailed, .commandTimeout,
                         .commandRejected, .transferFailed, .connectionDropped, .tunnelFailed, .sessionClosed, .library: break
                    }
                }
                let reason = "\(error)"
                regionsOut[region]?.hosts.append(HostExamination(region: region, host: host, address: target.endpoint.address, examined: false, reason: reason))
                regionsOut[region]?.findings.append(DriftClassifier.unexamined(region: region, host: host, keyChanged: keyChanged, reason: reason))
                reports.append(HostDriftReport(region: region, host: host, status: .unreachable(reason: reason)))
            }
        }
        let report = DriftReport(
            startedAt: started,
            durationSeconds: (clock.now - begin).seconds,
            regions: regionNames.map { name in
                let parts = regionsOut[name] ?? ([], [], [])
                return RegionDrift(region: name, hosts: parts.hosts, findings: parts.findings, pending: parts.pending)
            }
        )
        try Task.checkCancellation()
        let delta = try await store.recordDrift(run: run, reports: reports)
        let findings = report.findings
        let summary = findings.isEmpty && report.unexaminedHosts.isEmpty
            ? "no drift on \(targets.count) hosts"
            : "\(findings.count) findings, \(report.unexaminedHosts.count) hosts not examined"
        _ = try await store.finishRun(run, outcome: .succeeded, exitCode: report.exitCode, summary: summary)
        return DriftRunResult(report: report, run: run, appeared: delta.appeared.compactMap(Self.finding), cleared: delta.cleared.compactMap(Self.finding),
                              evidence: evidenceByHost, desired: desired)
    }

    /// Sends the residency probes through the gateway of `host`, judged later
    /// by the routing table of the bundle the host was applied with. Nil when
    /// there is nothing to judge by: the host's bundle is not the applied one
    /// (`bundle-mismatch` or `file-missing` says so) or carries no routes.
    static func probeResidency(_ host: FleetHost, of region: Region, root: String, applied: HostManifest, path: String,
                               on session: SSHSession, timeout: Duration) async throws -> ResidencyLook? {
        let bundlePath = DesiredHostState.governanceBundlePath
        guard let recorded = applied.files[bundlePath]?.sha256 else { return nil }
        let read = try await session.exec(RemoteCommand(["cat", "--", root + "/" + bundlePath]))
        guard read.succeeded, SHA256.hex(read.stdout) == recorded, let residency = try? AppliedResidency.read(bundle: read.stdout),
              !residency.table.entries.isEmpty else { return nil }
        let probes = ResidencyVerification.probes(residency.table)
        let answers = await ResidencyVerifier.probe(host, of: region, probes: probes, path: path, header: residency.header,
                                                    refuseStatus: residency.refuseStatus, on: session, timeout: timeout)
        return ResidencyLook(applied: residency, probes: probes, answers: answers)
    }

    /// The regions whose gateways can serve, for the residency check: from
    /// the hosts this run examined and, when it covers only some regions,
    /// one health look at every other host of the fleet (its gateway may be
    /// where a request is forwarded to).
    func residencyHealth(targets: [(region: Region, host: FleetHost, endpoint: SSHEndpoint)], outcomes: [Result<HostLook, any Error>]) async throws -> Set<String> {
        var serving: [HostID: Set<String>] = [:]
        for (target, outcome) in zip(targets, outcomes) {
            if case .success(let look) = outcome, let components = look.servingComponents { serving[target.endpoint.hostID] = components }
        }
        guard outcomes.contains(where: { if case .success(let look) = $0 { return look.residency != nil } else { return false } }) else { return [] }
        let examined = Set(targets.map(\.endpoint.hostID))
        let others = endpoints.endpoints().filter { !examined.contains($0.endpoint.hostID) }
        let components = fleet.settings.components
        let timeout = healthTimeout
        let looks = await SSHFanOut.run(others.map(\.endpoint), parallelism: parallelism) { session in
            await ResidencyVerifier.healthyComponents(of: others.first { $0.endpoint.hostID == session.endpoint.hostID }!.host,
                                                      components: components, on: session, timeout: timeout)
        }
        try Task.checkCancellation()
        for (other, look) in zip(others, looks) {
            if case .success(let components) = look.result { serving[other.endpoint.hostID] = components }
        }
        return ResidencyVerification.healthyRegions(fleet, components: serving)
    }

    /// Runs the observe script after one `date +%s`, in the same round trip,
    /// so the lock's expiry is judged by the host's own clock.
    static func observe(_ script: ObserveScript, on session: SSHSession) async throws -> (ObservedHostState, Int?) {
        let text = "echo \"meridian-now $(date +%s)\"\n" + script.script
        let result = try await session.run(HostObserver.shell, stdin: Data(text.utf8))
        var output = result.stdout
        var hostNow: Int?
        if let newline = output.firstIndex(of: 0x0A) {
            let first = String(decoding: output[output.startIndex..<newline], as: UTF8.self)
            if first.hasPrefix("meridian-now ") {
                hostNow = Int(first.dropFirst("meridian-now ".count))
                output = Data(output[output.index(after: newline)...])
            }
        }
        let hostName = session.endpoint.hostID.description
        return (try script.parse(output, host: hostName).get().state, hostNow)
    }

    /// Each selected host's desired state from the fleet now, and the versions
    /// its components should run. Template or artifact problems only leave
    /// those parts out: pending changes are advice, drift does not depend on them.
    func renderDesired(regions: Set<String>) -> ([HostID: DesiredHostState], [HostID: [String: String]]) {
        let templates = LocalFleetFileSystem(root: fleetRoot).templateFiles(of: fleet, regions: regions)
            .compactMapValues { String(data: $0, encoding: .utf8) }
        let (bundles, _) = GovernanceBundle.renderAll(fleet)
        // Artifacts are not prepared by drift: components are compared by version instead.
        let renderer = DesiredStateRenderer(fleet: fleet, bundles: bundles, templates: templates, artifacts: [])
        let (states, _) = renderer.render(regions: regions)
        var desired: [HostID: DesiredHostState] = [:]
        for state in states { desired[state.id] = state }
        var versions: [HostID: [String: String]] = [:]
        for region in fleet.regions where regions.contains(region.name) {
            for host in region.hosts {
                var wanted: [String: String] = [:]
                for component in host.components {
                    if let version = fleet.version(of: component, in: region) { wanted[component] = version.description }
                }
                versions[HostID(region: region.name, host: host.name)] = wanted
            }
        }
        return (desired, versions)
    }

    static func observation(_ finding: DriftFinding) -> DriftObservation {
        DriftObservation(kind: finding.kind.rawValue, subject: finding.subject, detail: JSONDetail(["detail": finding.detail]))
    }

    static func finding(_ record: DriftFindingRecord) -> DriftFinding? {
        guard let kind = DriftKind(rawValue: record.kind) else { return nil }
        let detail = (try? record.detail.decode([String: String].self))?["detail"] ?? record.detail.text
        return DriftFinding(region: record.region, host: record.host, kind: kind, subject: record.subject, detail: detail)
    }
}
