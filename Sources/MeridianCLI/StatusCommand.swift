import ArgumentParser
import Foundation
import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianState

/// `meridian status`: one row per region from the state store, or from the hosts with --refresh.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "One table of regions: jurisdiction, hosts, versions and active slots, last apply, lock holder.",
        discussion: "Reads the state store; --refresh observes every host (one round trip each) and exits 1 when any is unreachable."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var selection: RegionSelection
    @OptionGroup var stateOptions: StateOptions
    @Flag(help: "Observe the hosts instead of trusting the last applied manifests.") var refresh = false
    @Option(help: "Hosts observed at once with --refresh (default: the fleet's parallelism).") var parallelism: Int?

    func run() async throws {
        let planning = try PlanningSession.open(fleetOptions: fleetOptions, selection: selection, format: .text)
        let fleet = planning.fleet
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let regions = fleet.regions.filter { selection.regions.isEmpty || selection.regions.contains($0.name) }
        let statuses = try await store.regionStatuses(regions.map(\.name))

        var manifests: [String: [HostManifest]] = [:]
        var reachable: [String: Int] = [:]
        var hostLocks: [String: [String]] = [:]
        var failures: [HostFailure] = []
        if refresh {
            for observed in await planning.engine.observeHosts(regions: regions.map(\.name), parallelism: planning.parallelism(parallelism)) {
                switch observed.result {
                case .success(let state):
                    reachable[observed.region, default: 0] += 1
                    if let manifest = state.manifest.manifest { manifests[observed.region, default: []].append(manifest) }
                    if let lock = state.lock { hostLocks[observed.region, default: []].append("\(observed.host): \(lock.holder)") }
                case .failure(let failure):
                    failures.append(failure)
                }
            }
        } else {
            for applied in try await store.latestManifests(region: nil) {
                if let manifest = try? JSONDecoder().decode(HostManifest.self, from: applied.manifest) {
                    manifests[applied.region, default: []].append(manifest)
                }
            }
        }

        var rows = [["REGION", "JURISDICTION", "HOSTS", "VERSIONS (ACTIVE SLOT)", "LAST APPLY", "LOCK"]]
        for (region, status) in zip(regions, statuses) {
            let hosts = refresh ? "\(reachable[region.name] ?? 0)/\(region.hosts.count) reachable" : "\(region.hosts.count)"
            var versions = Set<String>()
            for manifest in manifests[region.name] ?? [] {
                for (name, component) in manifest.components {
                    versions.insert("\(name) \(component.activeVersion ?? "none") (\(component.activeSlot.rawValue))")
                }
            }
            let lastApply = status.lastApply.map { run in
                "\(run.finishedAt ?? run.startedAt) by \(run.actor)" + (run.fleetCommit.map { " at \($0.prefix(12))" } ?? "")
            } ?? "never"
            var locks: [String] = status.lease.map { ["lease: \($0.holder)"] } ?? []
            locks += hostLocks[region.name] ?? []
            rows.append([region.name, region.jurisdiction.code, hosts, versions.isEmpty ? "-" : versions.sorted().joined(separator: ", "),
                         lastApply, locks.isEmpty ? "-" : locks.joined(separator: "; ")])
        }
        Output.text(Table.render(rows))
        for failure in failures { Output.error("error: \(failure)") }
        if !failures.isEmpty { throw ExitCode(ExitStatus.failure) }
    }
}
