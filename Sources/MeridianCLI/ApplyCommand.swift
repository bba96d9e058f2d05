import ArgumentParser
import Foundation
import MeridianSSH
import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianState

/// `meridian apply`: carries out a plan, made now or saved by `plan --out`.
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply a plan: write files, install releases and restart or upgrade components on every host.",
        discussion: """
        Without PLANFILE it plans, shows the plan and asks for confirmation (or --auto-approve). \
        With PLANFILE it applies exactly that plan and refuses it if the fleet or a host changed since. \
        Regions change wave by wave in the fleet's order; blue-green and canary upgrades run as rollouts (docs/rollouts.md). \
        --auto-approve also passes waves that wait for approval. \
        Exit codes: 0 applied, 1 a host or region failed (the others completed), 3 a rollout failed its checks and was rolled back \
        (the fleet is consistent), 4 a region is locked by another run, \
        64 no terminal to confirm on and no --auto-approve, 65 invalid fleet files or a change inside a freeze window. \
        With --format json, standard output is one JSON event per line (docs/apply-events.md).
        """
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var selection: RegionSelection
    @OptionGroup var stateOptions: StateOptions
    @Argument(help: ArgumentHelp("A plan saved with `meridian plan --out FILE`.", valueName: "planfile")) var planFile: String?
    @Flag(help: "Apply without asking for confirmation.") var autoApprove = false
    @Option(help: "Hosts changed at once (default: the fleet's parallelism).") var parallelism: Int?
    @Option(help: "text, or json: one JSON event per line (docs/apply-events.md).") var format: OutputFormat = .text

    func validate() throws {
        if format == .json && planFile == nil && !autoApprove {
            throw ValidationError("--format json cannot ask for confirmation: add --auto-approve, or apply a plan saved with `meridian plan --out FILE`")
        }
    }

    func run() async throws {
        let stream = format == .json ? ApplyEventStream() : nil
        // One SSH session per host for the whole command: the plan's observation,
        // the lock, the host steps and the unlock all go over it.
        let sessions = SSHSessionPool()
        do {
            try await apply(stream: stream, sessions: sessions)
            await sessions.closeAll()
        } catch let exit as ExitCode {
            await sessions.closeAll()
            if let stream, exit.rawValue != 0, !stream.ended { stream.refused(stream.lastError ?? "apply stopped with exit code \(exit.rawValue)", exitCode: exit.rawValue) }
            throw exit
        } catch {
            await sessions.closeAll()
            throw error
        }
    }

    func fail(_ message: String, _ stream: ApplyEventStream?) {
        Output.error(message)
        stream?.lastError = message
    }

    func apply(stream: ApplyEventStream?, sessions: SSHSessionPool) async throws {
        let planning = try PlanningSession.open(fleetOptions: fleetOptions, selection: selection, format: .text, sessions: sessions)
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let engine = ApplyEngine(
            planning: planning.engine, store: store,
            secrets: LocalSecretResolver(environment: ProcessInfo.processInfo.environment, baseDirectory: fleetOptions.root),
            parallelism: planning.parallelism(parallelism),
            rollouts: RolloutOptions(autoApprove: autoApprove)
        )
        let report: ApplyReport
        var planningFailures: [HostFailure] = []
        do {
            if let planFile {
                report = try await applySaved(planFile, planning: planning, engine: engine, stream: stream)
            } else {
                // Apply holds the secrets, so its plan also compares sensitive files by keyed hash.
                let fleet = try planning.desiredFleet(regions: selection.regions)
                let sink = ApplyEventSink()
                let outcome = try await engine.planAndApply(fleet, events: sink.handle) { result in
                    try await review(result, planning: planning, stream: stream, sink: sink)
                }
                switch outcome {
                case .applied(let applied, let result):
                    report = applied
                    planningFailures = result.failures
                case .stopped(let result, let exitCode):
                    if exitCode == 0 && !result.plan.summary.hasChanges && stream == nil {
                        // Nothing to change on the hosts, but a rollout cut short (a crash) is carried on.
                        try await resumeUnfinishedRollouts(planning: planning, regions: result.plan.regions.map(\.name))
                    }
                    if !result.plan.summary.hasChanges { stream?.nothingToDo(exitCode: exitCode) }
                    if exitCode != 0 { throw ExitCode(exitCode) }
                    return
                }
            }
        } catch let refusal as GovernanceRefusal {
            Output.error("error: \(refusal)")
            throw ExitCode(ExitStatus.invalidFleet)
        } catch let refusal as ApplyRefusal {
            fail("error: \(refusal)", stream)
            switch refusal {
            case .leaseHeld: throw ExitCode(ExitStatus.locked)
            case .fleetChanged, .planMismatch, .notPlannerOutput, .staleHosts: throw ExitCode(ExitStatus.failure)
            }
        } catch let code as ExitCode {
            throw code
        } catch {
            fail("error: \(error)", stream)
            throw ExitCode(ExitStatus.failure)
        }
        let code = planningFailures.isEmpty ? report.exitCode : ExitStatus.failure
        if let stream {
            stream.finished(report, exitCode: code)
            if code != 0 { throw ExitCode(code) }
            return
        }
        Output.line()
        Output.line("Apply \(report.run) (plan \(report.planHash.prefix(12))):")
        for region in report.regions {
            switch region.result {
            case .applied(let changed, let hosts):
                Output.line("  \(region.region): applied, \(changed) of \(hosts) host\(hosts == 1 ? "" : "s") changed")
            case .failed(let failures):
                Output.line("  \(region.region): FAILED")
                for failure in failures { Output.line("    \(failure)") }
            case .locked(let failures):
                Output.line("  \(region.region): LOCKED")
                for failure in failures { Output.line("    \(failure)") }
            case .rolledBack(let reasons):
                Output.line("  \(region.region): ROLLED BACK (back on the stable slot)")
                for reason in reasons { Output.line("    \(reason)") }
            case .notStarted(let reason):
                Output.line("  \(region.region): not started — \(reason)")
            }
        }
        for failure in planningFailures { Output.line("  \(failure.region): NOT PLANNED — \(failure)") }
        if code != 0 { throw ExitCode(code) }
    }

    /// Applies a plan saved by `meridian plan --out`.
    func applySaved(_ planFile: String, planning: PlanningSession, engine: ApplyEngine, stream: ApplyEventStream?) async throws -> ApplyReport {
        guard let data = FileManager.default.contents(atPath: planFile) else {
            fail("error: cannot read the plan file \(planFile)", stream)
            throw ExitCode(ExitStatus.failure)
        }
        var plan: Plan
        do {
            plan = try Plan.decode(data)
        } catch {
            fail("error: \(planFile): \(error)", stream)
            throw ExitCode(ExitStatus.failure)
        }
        // The basis covers the regions the plan was made for; --region narrows what is applied.
        let fleet = try planning.desiredFleet(regions: plan.regions.map(\.name))
        if !selection.regions.isEmpty {
            plan.regions = plan.regions.filter { selection.regions.contains($0.name) }
        }
        // A window that began after the plan was saved still holds.
        try planning.refuseFrozen(plan)
        stream?.plan(plan)
        return try await engine.apply(plan, fleet: fleet, events: events(for: plan, stream: stream))
    }

    /// Shows the plan apply made under its locks and decides whether to carry it out.
    func review(_ result: PlanningResult, planning: PlanningSession, stream: ApplyEventStream?, sink: ApplyEventSink) async throws -> PlanReview {
        let plan = result.plan
        do {
            try planning.refuseFrozen(plan)
        } catch let code as ExitCode {
            return .stop(exitCode: code.rawValue, reason: "refused: a change window forbids it; nothing was changed")
        }
        if let stream {
            stream.plan(plan)
            result.failures.forEach(stream.notPlanned)
        } else {
            Output.text(plan.renderText(style: PlanningSession.textStyle, leftOut: result.leftOut))
        }
        PlanningSession.report(result.failures)
        if !plan.summary.hasChanges {
            let code = result.failures.isEmpty ? ExitStatus.success : ExitStatus.failure
            return .stop(exitCode: code, reason: result.failures.isEmpty ? "nothing to change" : "nothing to change in the regions planned; some were left out")
        }
        do {
            try confirm()
        } catch let code as ExitCode {
            return .stop(exitCode: code.rawValue, reason: "not confirmed; nothing was changed")
        }
        sink.handler = events(for: plan, stream: stream)
        return .apply
    }

    /// JSON events when asked, a live view on a terminal, plain lines otherwise (logs, CI).
    func events(for plan: Plan, stream: ApplyEventStream?) -> @Sendable (ApplyEvent) -> Void {
        if let stream { return stream.handle }
        if ApplyLiveView.isAvailable {
            let live = ApplyLiveView(plan: plan)
            return { live.handle($0) }
        }
        return ApplyProgress.line
    }

    /// Asks on the terminal; without one (CI, a pipe) and without --auto-approve, refuses.
    func confirm() throws {
        guard !autoApprove else { return }
        guard isatty(STDIN_FILENO) == 1 else {
            Output.error("error: apply needs confirmation but standard input is not a terminal; review the plan and run `meridian apply --auto-approve`, or save it with `meridian plan --out FILE` and run `meridian apply FILE`")
            throw ExitCode(ExitStatus.usage)
        }
        Output.text("Apply this plan? Only 'yes' is accepted: ")
        guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else {
            Output.error("Apply cancelled; nothing was changed.")
            throw ExitCode(ExitStatus.failure)
        }
    }
}

/// Where apply's events go once the plan is known (the live view is made from it).
final class ApplyEventSink: @unchecked Sendable {
    private let lock = NSLock()
    private var current: @Sendable (ApplyEvent) -> Void = { _ in }

    var handler: @Sendable (ApplyEvent) -> Void {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }

    @Sendable func handle(_ event: ApplyEvent) { handler(event) }
}

extension ApplyCommand {
    /// Drives every unfinished rollout of `regions` to its end, as `rollout resume` does.
    func resumeUnfinishedRollouts(planning: PlanningSession, regions: [String]) async throws {
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let open = try await store.latestRollouts(region: nil).filter { !$0.terminal && regions.contains($0.region) }
        for region in Set(open.map(\.region)).sorted() {
            Output.line("Carrying on the unfinished rollouts of \(region):")
            try await RolloutTarget.send(nil, region: region, fleetOptions: fleetOptions, stateOptions: stateOptions)
        }
    }
}

/// Plain progress lines, one per step, prefixed by region and host.
enum ApplyProgress {
    @Sendable static func line(_ event: ApplyEvent) {
        switch event {
        case .observed(let region, let host):
            Output.line("[\(region)] \(host): observed and locked")
        case .stepStarted:
            break
        case .stepFinished(let region, let host, let step, let error):
            Output.line("[\(region)] \(host): \(step)" + (error.map { " — FAILED: \($0)" } ?? " — ok"))
        case .hostFinished(let region, let host, let error):
            Output.line("[\(region)] \(host): " + (error == nil ? "done" : "failed"))
        case .waveStarted(let wave, let regions):
            Output.line("— wave \(wave): \(regions.joined(separator: ", "))")
        case .waitingForApproval(let wave):
            Output.line("wave \(wave) waits for approval: run `meridian rollout promote --wave \(wave)`")
        case .rollout(.transition(let region, let component, let from, let to, let effect)):
            Output.line("[\(region)] rollout of \(component): \(from) → \(to)" + (effect == "none" ? "" : "; next: \(effect)"))
        }
    }
}
