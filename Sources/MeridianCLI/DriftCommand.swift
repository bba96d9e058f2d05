import ArgumentParser
import Dispatch
import Foundation
import MeridianBasics
import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianState

/// `meridian drift`: compares every host with what meridian last applied to
/// it; exits 0 clean, 2 drift, 1 when some host could not be examined.
struct DriftCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Find hosts that differ from what meridian last applied to them (not from git: that is pending).",
        discussion: """
            Exits 0 when clean, 2 on drift, 1 when some host could not be examined. \
            With --every it repeats until SIGTERM or SIGINT and then exits 0. docs/drift.md describes the report.
            """,
        subcommands: [DriftHistory.self]
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @OptionGroup var selection: RegionSelection
    @Option(help: "text or json, on standard output.") var format: OutputFormat = .text
    @Option(help: ArgumentHelp("Also write the JSON report to this file, atomically.", valueName: "file")) var report: String?
    @Option(help: ArgumentHelp("Write a Prometheus textfile (node_exporter) here, atomically.", valueName: "file")) var prometheus: String?
    @Option(help: ArgumentHelp("POST a JSON summary here when the set of findings changes.", valueName: "url")) var notify: String?
    @Option(help: ArgumentHelp("Run again every DURATION (e.g. 15m) with 10% jitter, until SIGTERM/SIGINT.", valueName: "duration")) var every: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Fix findings of these kinds (or `all`); no other kind is touched.", valueName: "kind"))
    var remediate: [String] = []
    @Flag(name: .customLong("dry-run"), help: "With --remediate: print what would be fixed, change nothing.") var dryRun = false
    @Option(help: "Hosts examined at once (default: the fleet's parallelism).") var parallelism: Int?

    func validate() throws {
        if let every {
            guard let interval = DurationText.parse(every), interval >= .seconds(1) else {
                throw ValidationError("--every \(every): expected a duration of at least 1s such as 30s, 15m or 1h")
            }
        }
        for kind in remediate where kind != "all" && DriftKind(rawValue: kind) == nil {
            throw ValidationError("--remediate \(kind): not a drift kind; kinds: \(DriftKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let notify, URL(string: notify)?.scheme.map({ ["http", "https"].contains($0) }) != true {
            throw ValidationError("--notify \(notify): expected an http:// or https:// URL")
        }
        if dryRun && remediate.isEmpty { throw ValidationError("--dry-run only goes with --remediate KIND…") }
    }

    var remediationKinds: Set<DriftKind> {
        remediate.contains("all") ? Set(DriftKind.allCases.filter(\.isRemediable)) : Set(remediate.compactMap(DriftKind.init(rawValue:)))
    }

    func run() async throws {
        let (fleet, _) = try fleetOptions.loadValid(format: format)
        try selection.check(against: fleet)
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let engine = DriftEngine(fleet: fleet, fleetRoot: fleetOptions.root, store: store, parallelism: parallelism)
        let job = DriftJob(command: self, engine: engine, fleetName: fleet.settings.name)

        let interval = every.flatMap(DurationText.parse)
        let work = Task { () -> Int32 in
            if let interval {
                await DriftSchedule(interval: interval).repeatUntilCancelled {
                    _ = await job.once()
                }
                // Stopped by a signal, between or within runs: a clean stop.
                return ExitStatus.success
            }
            return await job.once()
        }
        let signals = SignalCancellation(signals: [SIGTERM, SIGINT]) { work.cancel() }
        let status = await work.value
        signals.stop()
        if status != 0 { throw ExitCode(status) }
    }
}

/// Cancels a task when the process receives one of `signals`: the default
/// action (dying at once, mid-write) is replaced by a dispatch source.
final class SignalCancellation: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []

    init(signals: [Int32], _ handler: @escaping @Sendable () -> Void) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            sources.append(source)
        }
    }

    func stop() {
        for source in sources { source.cancel() }
    }
}

/// One drift run with its outputs: standard output, report file, Prometheus
/// file, webhook, remediation. Remembers the unreachable hosts of its last
/// run, so the webhook also fires when only they change.
final class DriftJob: @unchecked Sendable {
    let command: DriftCommand
    let engine: DriftEngine
    let fleetName: String
    private let lock = NSLock()
    private var previousUnreachable: Set<String>?

    init(command: DriftCommand, engine: DriftEngine, fleetName: String) {
        self.command = command
        self.engine = engine
        self.fleetName = fleetName
    }

    func once() async -> Int32 {
        let result: DriftRunResult
        do {
            result = try await engine.run(regions: command.selection.regions)
        } catch let interrupted as DriftInterrupted {
            Output.error("\(interrupted)")
            return ExitStatus.failure
        } catch {
            Output.error("error: \(error)")
            return ExitStatus.failure
        }
        let report = result.report
        switch command.format {
        case .text: Output.text(report.renderText())
        case .json: Output.json(report)
        }
        var status = report.exitCode
        do {
            if let path = command.report { try AtomicFile.write(DriftJob.encode(report), to: path) }
            if let path = command.prometheus { try AtomicFile.write(Data(report.renderPrometheus().utf8), to: path) }
        } catch {
            Output.error("error: \(error)")
            status = ExitStatus.failure
        }
        let unreachable = Set(report.unexaminedHosts.map { "\($0.region)/\($0.host)" })
        let previous = lock.withLock { () -> Set<String>? in
            defer { previousUnreachable = unreachable }
            return previousUnreachable
        }
        let changed = !result.appeared.isEmpty || !result.cleared.isEmpty || (previous.map { $0 != unreachable } ?? !unreachable.isEmpty)
        if let notify = command.notify, let url = URL(string: notify), changed {
            do {
                try await DriftWebhook(url: url).send(DriftNotification(fleet: fleetName, report: report, appeared: result.appeared, cleared: result.cleared))
            } catch {
                Output.error("warning: \(error)")
            }
        }
        if !command.remediate.isEmpty {
            let remedies = DriftRemediationPlanner.plan(findings: report.findings, kinds: command.remediationKinds, evidence: result.evidence, desired: result.desired)
            if remedies.isEmpty {
                Output.line("Nothing to remediate for \(command.remediationKinds.map(\.rawValue).sorted().joined(separator: ", ")).")
            } else {
                status = max(status, await remediate(remedies, result: result))
            }
        }
        return status
    }

    /// Removes stale locks directly, then fixes the other named findings
    /// with a plan cut down to their actions, through the apply engine.
    func remediate(_ remedies: [DriftRemedy], result: DriftRunResult) async -> Int32 {
        var status = ExitStatus.success
        var decided = remedies
        var remediation: DriftApplyRemediation?
        let planning = PlanEngine(fleet: engine.fleet, fleetRoot: engine.fleetRoot, bundles: GovernanceBundle.renderAll(engine.fleet).0)
        let secrets = LocalSecretResolver(environment: ProcessInfo.processInfo.environment, baseDirectory: engine.fleetRoot)
        if remedies.contains(where: { if case .throughApply = $0 { return true } else { return false } }) {
            do {
                let planned = try await DriftRemediator.planThroughApply(remedies, evidence: result.evidence, planning: planning, secrets: secrets,
                                                                          fleetKey: try await engine.store.fileHashKey(), parallelism: engine.parallelism)
                for failure in planned.failures { Output.error("warning: \(failure)") }
                decided = planned.remedies
                remediation = planned
            } catch {
                Output.error("error: remediation: \(error)")
                return ExitStatus.failure
            }
        }
        if command.dryRun {
            Output.line("Would remediate:")
            for remedy in decided { Output.line("  \(remedy.summary)") }
            return status
        }
        var outcomes: [DriftRemedyOutcome] = decided.compactMap {
            if case .notRemediated(_, let reason) = $0 { return DriftRemedyOutcome(remedy: $0, result: reason, succeeded: false) }
            return nil
        }
        do {
            let direct = decided.filter { if case .removeStaleLock = $0 { return true } else { return false } }
            if !direct.isEmpty { outcomes += try await DriftRemediator(engine: engine).execute(direct) }
            if let remediation, remediation.remedies.contains(where: { if case .throughApply = $0 { return true } else { return false } }) {
                // Remediation puts back exactly what was applied; a wave's approval gates new
                // changes, not that, and with no one to approve it would wait silently forever.
                let apply = ApplyEngine(planning: planning,
                                        store: engine.store,
                                        secrets: secrets,
                                        parallelism: engine.parallelism,
                                        rollouts: RolloutOptions(autoApprove: true))
                outcomes += try await DriftRemediator.applyThroughApply(remediation, apply: apply)
            }
        } catch {
            Output.error("error: remediation: \(error)")
            status = ExitStatus.failure
        }
        Output.line("Remediation:")
        for outcome in outcomes {
            let finding = outcome.remedy.finding
            Output.line("  \(outcome.succeeded ? "fixed" : "NOT FIXED")  \(finding.region)/\(finding.host) \(finding.kind.rawValue) \(finding.subject): \(outcome.result)")
        }
        return status
    }

    static func encode(_ report: DriftReport) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return ((try? encoder.encode(report)) ?? Data("{}".utf8)) + Data("\n".utf8)
    }
}

/// `meridian drift history`: when each finding first appeared and when it cleared.
struct DriftHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show every drift finding: when it first appeared, when it was last seen, and when it cleared."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Option(name: .customLong("region"), help: "Only this region.") var region: String?
    @Option(help: "text or json.") var format: OutputFormat = .text

    struct Entry: Encodable {
        var region, host, kind, subject, detail: String
        var firstSeenAt: String
        var lastSeenAt: String
        var clearedAt: String?
        enum CodingKeys: String, CodingKey {
            case region, host, kind, subject, detail
            case firstSeenAt = "first_seen_at", lastSeenAt = "last_seen_at", clearedAt = "cleared_at"
        }
    }

    func run() async throws {
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let records = try await store.driftHistory(region: region)
        let entries = records.map { record in
            Entry(region: record.region, host: record.host, kind: record.kind, subject: record.subject,
                  detail: (try? record.detail.decode([String: String].self))?["detail"] ?? record.detail.text,
                  firstSeenAt: record.firstSeenAt.description, lastSeenAt: record.lastSeenAt.description, clearedAt: record.clearedAt?.description)
        }
        switch format {
        case .json:
            Output.json(entries)
        case .text:
            var rows = [["REGION", "HOST", "KIND", "SUBJECT", "FIRST SEEN", "CLEARED"]]
            for entry in entries {
                rows.append([entry.region, entry.host, entry.kind, entry.subject, entry.firstSeenAt, entry.clearedAt ?? "open"])
            }
            Output.text(Table.render(rows))
            let open = entries.count { $0.clearedAt == nil }
            Output.line("\(entries.count) finding\(entries.count == 1 ? "" : "s"), \(open) open.")
        }
    }
}
