import ArgumentParser
import Foundation
import MeridianSSH
import MeridianEngine
import MeridianModel
import MeridianPlanning

/// `meridian plan`: what apply would change on every host of every region.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what apply would change on every host, per region.",
        discussion: """
        Observes every host in one round trip and compares it with the fleet files. \
        Exit codes: 0 success (with --detailed-exitcode: no changes), 2 changes (--detailed-exitcode only), \
        1 a host could not be observed (its region is left out of the plan), 65 invalid fleet files or a governance violation.
        """
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var selection: RegionSelection
    @Option(help: ArgumentHelp("Also write the plan as JSON to this file, for `meridian apply FILE`.", valueName: "file")) var out: String?
    @Option(help: "text or json.") var format: OutputFormat = .text
    @Flag(help: "Exit 2 when the plan has changes, 0 when it has none.") var detailedExitcode = false
    @Option(help: "Hosts observed at once (default: the fleet's parallelism).") var parallelism: Int?

    func run() async throws {
        let planning = try PlanningSession.open(fleetOptions: fleetOptions, selection: selection, format: format)
        let result = try await planning.plan(regions: selection.regions, parallelism: parallelism)
        try planning.refuseFrozen(result.plan)
        if let out {
            do {
                try result.plan.renderJSON().write(to: URL(fileURLWithPath: out))
            } catch {
                Output.error("error: cannot write the plan to \(out): \(error.localizedDescription)")
                throw ExitCode(ExitStatus.failure)
            }
        }
        switch format {
        case .text: Output.text(result.plan.renderText(style: PlanningSession.textStyle, leftOut: result.leftOut))
        case .json: Output.text(String(decoding: result.plan.renderJSON(), as: UTF8.self))
        }
        PlanningSession.report(result.failures)
        if !result.failures.isEmpty { throw ExitCode(ExitStatus.failure) }
        if detailedExitcode && result.plan.summary.hasChanges { throw ExitCode(ExitStatus.changesOrDrift) }
    }
}

/// The fleet loaded, checked and ready to plan: shared by `plan` and `apply`.
struct PlanningSession {
    var engine: PlanEngine
    var fleet: Fleet
    var format: OutputFormat

    /// Loads and checks the fleet (exit 65 on any problem) and the selected regions (exit 64).
    static func open(fleetOptions: FleetOptions, selection: RegionSelection, format: OutputFormat, sessions: SSHSessionPool? = nil) throws -> PlanningSession {
        let check = try FleetCheck.valid(root: fleetOptions.root, format: format)
        // `valid` returns only checks whose fleet loaded.
        let fleet = check.fleet!
        do {
            try selection.check(against: fleet)
        } catch let error as ValidationError {
            Output.error("error: \(error.message)")
            throw ExitCode(ExitStatus.usage)
        }
        return PlanningSession(engine: PlanEngine(fleet: fleet, fleetRoot: fleetOptions.root, bundles: check.bundles, sessions: sessions), fleet: fleet, format: format)
    }

    /// A freeze window is violated only by a change: the regions `plan`
    /// changes, now. Each violation is printed at its rule and the command
    /// exits 65 before anything is saved or applied.
    func refuseFrozen(_ plan: Plan, now: Date = Date()) throws {
        let changing = Set(plan.regions.filter(\.hasChanges).map(\.name))
        guard !changing.isEmpty else { return }
        // `open` refused every other violation already; what is left is the freeze.
        let violations = GovernanceEvaluator.evaluate(fleet: fleet, now: now, changingRegions: changing)
        let frozen = Diagnostics(violations.items.filter { $0.severity == .error })
        guard frozen.hasErrors else { return }
        Output.diagnostics(frozen, format: format)
        throw ExitCode(ExitStatus.invalidFleet)
    }

    func parallelism(_ option: Int?) -> Int { option ?? fleet.settings.defaults.parallelism }

    func desiredFleet(regions: [String]) throws -> DesiredFleet {
        do {
            return try engine.desiredFleet(regions: regions)
        } catch let problems as DesiredStateProblems {
            Output.error(problems.description)
            throw ExitCode(ExitStatus.invalidFleet)
        }
    }

    func plan(regions: [String], parallelism option: Int?, secrets: KeyedComparison? = nil) async throws -> PlanningResult {
        do {
            return try await engine.plan(regions: regions, parallelism: parallelism(option), secrets: secrets)
        } catch let problems as DesiredStateProblems {
            Output.error(problems.description)
            throw ExitCode(ExitStatus.invalidFleet)
        }
    }

    /// Colour only on a terminal, and never when NO_COLOR is set.
    static var textStyle: PlanTextStyle {
        let noColor = ProcessInfo.processInfo.environment["NO_COLOR"].map { !$0.isEmpty } ?? false
        return PlanTextStyle(color: isatty(STDOUT_FILENO) == 1 && !noColor)
    }

    static func report(_ failures: [HostFailure]) {
        guard !failures.isEmpty else { return }
        let regions = Array(Set(failures.map(\.region))).sorted()
        Output.error("error: \(regions.count == 1 ? "region" : "regions") \(regions.joined(separator: ", ")) left out: some hosts could not be observed")
        for failure in failures { Output.error("  \(failure)") }
    }
}
