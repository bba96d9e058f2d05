import ArgumentParser
import Foundation
import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianState

/// `meridian status`: the one view of the fleet, from the state store or, with --refresh, from the hosts.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "The fleet at a glance: per region and host, versions and active slots, gateway weights, rollouts, open drift, the last routes verify, locks and the last apply.",
        discussion: """
        Reads the state store; --refresh observes every host (one round trip each) for its manifest and remote lock, \
        and exits 1 when any host is unreachable. --format json prints the same view for scripts (docs/cli.md). \
        --watch redraws it every --interval on a terminal until interrupted (or --times redraws).
        """
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var selection: RegionSelection
    @OptionGroup var stateOptions: StateOptions
    @Flag(help: "Observe the hosts instead of trusting the last applied manifests.") var refresh = false
    @Option(help: "Hosts observed at once with --refresh (default: the fleet's parallelism).") var parallelism: Int?
    @Option(help: "text, or json: the view as one JSON document (format_version 1).") var format: OutputFormat = .text
    @Flag(help: "Redraw the view until interrupted.") var watch = false
    @Option(help: "Seconds between redraws with --watch.") var interval: Double = 2
    @Option(help: "With --watch, stop after this many views.") var times: Int?

    func validate() throws {
        if interval < 0.2 || interval > 3600 { throw ValidationError("--interval takes seconds between 0.2 and 3600, got \(interval)") }
        if let times, times < 1 { throw ValidationError("--times takes a count of 1 or more, got \(times)") }
        if times != nil && !watch { throw ValidationError("--times goes with --watch") }
    }

    func run() async throws {
        let planning = try PlanningSession.open(fleetOptions: fleetOptions, selection: selection, format: format)
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let clear = watch && format == .text && isatty(STDOUT_FILENO) == 1
        var shown = 0
        while true {
            let status = try await collect(planning: planning, store: store)
            if clear { Output.text("\u{1B}[H\u{1B}[2J") }
            switch format {
            case .json: Output.json(status)
            case .text: Output.text(StatusRendering.text(status))
            }
            shown += 1
            let failed = !status.unreachable.isEmpty
            if !watch || shown == times {
                for host in status.unreachable { Output.error("error: host \(host.region)/\(host.host): \(host.error)") }
                if failed { throw ExitCode(ExitStatus.failure) }
                return
            }
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            if !clear && format == .text { Output.line() }
        }
    }

    func collect(planning: PlanningSession, store: any StateStore) async throws -> FleetStatus {
        let fleet = planning.fleet
        let regions = fleet.regions.filter { selection.regions.isEmpty || selection.regions.contains($0.name) }
        do {
            let statuses = try await store.regionStatuses(regions.map(\.name))
            var hosts: [HostID: HostStatusSource] = [:]
            if refresh {
                for observed in await planning.engine.observeHosts(regions: regions.map(\.name), parallelism: planning.parallelism(parallelism)) {
                    hosts[HostID(region: observed.region, host: observed.host)] = .observed(observed.result)
                }
            } else {
                for applied in try await store.latestManifests(region: nil) {
                    hosts[HostID(region: applied.region, host: applied.host)] = .stored(try? JSONDecoder().decode(HostManifest.self, from: applied.manifest))
                }
            }
            let rollouts = try await store.latestRollouts(region: nil).compactMap { stored in
                (try? RolloutRecords.decode(stored)).map { (stored: stored, record: $0) }
            }
            let drift = try await store.openDriftFindings(region: nil)
            let recent = try await store.recentRuns(limit: 200)
            let driftRuns = recent.filter { $0.kind == .drift && !$0.isRunning }
            // The newest verify runs until every shown region is covered by one.
            var routesVerify: [(run: RunRecord, journal: [JournalEntry])] = []
            var uncovered = Set(regions.map(\.name))
            for run in recent where run.kind == .routesVerify && !run.isRunning && !uncovered.isDisjoint(with: run.regions) {
                routesVerify.append((run, try await store.journal(of: run.id)))
                uncovered.subtract(run.regions)
                if uncovered.isEmpty { break }
            }
            return FleetStatus.make(fleet: fleet, regions: regions, source: refresh ? .hosts : .store, now: StateTime(Date()),
                                    statuses: statuses, hosts: hosts, rollouts: rollouts, openDrift: drift, driftRuns: driftRuns,
                                    routesVerify: routesVerify)
        } catch let error as ExitCode {
            throw error
        } catch {
            Output.error("error: cannot read the state store: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
    }
}

/// The text `meridian status` prints: a summary table, then one block per region.
enum StatusRendering {
    static func text(_ status: FleetStatus) -> String {
        var rows = [["REGION", "JURISDICTION", "WAVE", "HOSTS", "VERSIONS (ACTIVE SLOT)", "ROLLOUT", "DRIFT", "LAST APPLY", "LOCK"]]
        for region in status.regions {
            let reachable = region.hosts.filter { $0.reachable == true }.count
            let hosts = status.source == .hosts ? "\(reachable)/\(region.hosts.count) reachable" : "\(region.hosts.count)"
            var versions = Set<String>()
            for host in region.hosts {
                for component in host.components { versions.insert("\(component.name) \(component.activeVersion ?? "none") (\(component.activeSlot))") }
            }
            let running = region.rollouts.filter(\.inProgress)
            let rollout = running.isEmpty ? "-" : running.map { "\($0.component) \($0.phase)" }.joined(separator: ", ")
            let drift = region.drift.lastRun == nil ? "not checked" : (region.drift.open.isEmpty ? "clean" : "\(region.drift.open.count) open")
            var locks: [String] = region.lease == nil ? [] : ["lease"]
            if region.hosts.contains(where: { $0.lock != nil }) { locks.append("host lock") }
            rows.append([region.name, region.jurisdiction, region.wave ?? "-", hosts, versions.isEmpty ? "-" : versions.sorted().joined(separator: ", "),
                         rollout, drift, region.lastApply.map { "\($0.at) by \($0.by)" } ?? "never", locks.isEmpty ? "-" : locks.joined(separator: ", ")])
        }
        var out = "Fleet status from \(status.source == .hosts ? "the hosts (refreshed)" : "the state store") at \(status.generatedAt)\n\n"
        out += Table.render(rows)
        for region in status.regions {
            out += "\n\(region.name) (\(region.jurisdiction)\(region.wave.map { ", wave \($0)" } ?? ""))\n"
            for host in region.hosts {
                let state: String
                switch host.reachable {
                case .some(true): state = "reachable"
                case .some(false): state = "UNREACHABLE: \(host.error ?? "")"
                case .none: state = "as last applied"
                }
                let components = host.components.map { c in
                    "\(c.name) \(c.activeVersion ?? "none") on \(c.activeSlot)" + slotSummary(c)
                }
                out += "  host \(host.name) \(host.address) — \(state)" + (components.isEmpty ? (host.applied ? ": no components (files and gateway only)" : ", nothing applied yet") : ": " + components.joined(separator: "; ")) + "\n"
                if let lock = host.lock { out += "    remote lock held by \(lock)\n" }
            }
            if !region.gateway.isEmpty {
                out += "  gateway weights: " + region.gateway.map { "\($0.component) blue \($0.blue)% / green \($0.green)%" }.joined(separator: "; ") + "\n"
            }
            for rollout in region.rollouts {
                let step = rollout.step.map { " step \($0) of \(rollout.steps), canary \(rollout.canaryWeight)%" } ?? ""
                out += "  rollout \(rollout.component) \(rollout.fromVersion) → \(rollout.toVersion) (\(rollout.strategy)): \(rollout.phase)\(step)"
                out += rollout.inProgress ? " — in progress\n" : " at \(rollout.updatedAt)\n"
                if let analysis = rollout.lastAnalysis { out += "    last analysis: \(analysis)\n" }
                if let reason = rollout.reason { out += "    reason: \(reason)\n" }
            }
            if let lastRun = region.drift.lastRun {
                out += "  drift (last run \(lastRun)): " + (region.drift.open.isEmpty ? "clean\n" : "\(region.drift.open.count) open\n")
                for finding in region.drift.open { out += "    \(finding.host): \(finding.kind) \(finding.subject) since \(finding.since)\n" }
            } else {
                out += "  drift: not checked yet (`meridian drift`)\n"
            }
            if let verify = region.routesVerify {
                out += "  routes verify (run \(verify.run) at \(verify.at)): " + (verify.ok ? "\(verify.checks) checks ✓" : "\(verify.violations.count) problem(s) in \(verify.checks) checks")
                    + (verify.healthy ? "" : "; the region was not healthy then (its stack did not answer)") + "\n"
                for violation in verify.violations { out += "    ✗ \(violation)\n" }
            } else {
                out += "  routes verify: not run yet (`meridian routes verify`)\n"
            }
            out += "  last apply: " + (region.lastApply.map { "run \($0.run) at \($0.at) by \($0.by)" + ($0.commit.map { " (commit \($0))" } ?? "") } ?? "never") + "\n"
            if let lease = region.lease { out += "  lease held by \(lease)\n" }
        }
        return out
    }

    /// ` (green 2.4.0 at 10%)` when the other slot holds a release or traffic.
    static func slotSummary(_ component: FleetStatus.ComponentView) -> String {
        let other = component.activeSlot == "blue" ? ("green", component.green) : ("blue", component.blue)
        let active = component.activeSlot == "blue" ? component.blue : component.green
        guard other.1.weight > 0 || (other.1.version != nil && active.weight < 100) else { return "" }
        return " (\(component.activeSlot) \(active.weight)%, \(other.0) \(other.1.version ?? "none") \(other.1.weight)%)"
    }
}
