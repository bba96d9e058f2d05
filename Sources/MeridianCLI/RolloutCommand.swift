import ArgumentParser
import Foundation
import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianState

/// `meridian rollout …`: watch and steer blue-green and canary rollouts.
struct RolloutCommandGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Show and steer blue-green and canary rollouts (docs/rollouts.md).",
        subcommands: [RolloutStatusCommand.self, RolloutPromoteCommand.self, RolloutAbortCommand.self, RolloutRollbackCommand.self, RolloutResumeCommand.self]
    )
}

/// The region argument the steering commands share, checked against the fleet.
struct RolloutTarget: ParsableArguments {
    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Argument(help: "The region.") var region: String

    func send(_ command: RolloutCommand?) async throws {
        try await Self.send(command, region: region, fleetOptions: fleetOptions, stateOptions: stateOptions)
    }

    /// The control for this fleet and store; an unknown region is a usage error (64).
    static func control(region: String, fleetOptions: FleetOptions, stateOptions: StateOptions) async throws -> RolloutControl {
        let session = try PlanningSession.open(fleetOptions: fleetOptions, selection: try RegionSelection.parse([]), format: .text)
        guard session.fleet.region(named: region) != nil else {
            Output.error("error: no region \"\(region)\" in the fleet")
            throw ExitCode(ExitStatus.usage)
        }
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        return RolloutControl(planning: session.engine, store: store)
    }

    /// Sends the command (or, for nil, resumes), prints what became of it and exits as apply would: 3 when rolled back.
    static func send(_ command: RolloutCommand?, region: String, fleetOptions: FleetOptions, stateOptions: StateOptions) async throws {
        let control = try await control(region: region, fleetOptions: fleetOptions, stateOptions: stateOptions)
        let outcome: RolloutControl.CommandOutcome
        do {
            outcome = try await control.send(command, region: region) { event in
                if case .transition(let region, let component, let from, let to, let effect) = event {
                    Output.line("[\(region)] rollout of \(component): \(from) → \(to)" + (effect == "none" ? "" : "; next: \(effect)"))
                }
            }
        } catch {
            Output.error("error: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
        switch outcome {
        case .queued(let holder):
            Output.line("Queued `\(command?.rawValue ?? "resume")` for region \(region): the run holding it takes it at its next decision (\(holder)).")
        case .nothingToDo(let reason):
            Output.error("error: \(reason)")
            throw ExitCode(ExitStatus.failure)
        case .driven(let records):
            for record in records {
                Output.line("\(region): \(record.component) \(record.fromVersion) → \(record.toVersion): \(record.phase)" + (record.reason.map { " — \($0)" } ?? ""))
            }
            if records.contains(where: { $0.phase == .failed }) { throw ExitCode(ExitStatus.failure) }
            if records.contains(where: { $0.phase == .rolledBack }) { throw ExitCode(ExitStatus.rolledBack) }
        }
    }
}

struct RolloutStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Each region's rollouts: phase, step, weights, analyses and the reason for the latest change.",
        discussion: "--watch redraws every second until interrupted. Exit 0, or 1 when the state cannot be read."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Argument(help: "Only this region.") var region: String?
    @Option(help: "text or json.") var format: OutputFormat = .text
    @Flag(help: "Show again every second.") var watch = false

    func run() async throws {
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        while true {
            let stored = try await store.latestRollouts(region: region)
            let entries = try stored.map { RolloutStatusEntry(stored: $0, record: try RolloutRecords.decode($0)) }
            switch format {
            case .json: Output.text(RolloutStatusRendering.json(entries))
            case .text: Output.text(RolloutStatusRendering.text(entries))
            }
            guard watch else { return }
            try await Task.sleep(for: .seconds(1))
            if format == .text { Output.line() }
        }
    }
}

struct RolloutPromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Go on past a held canary step (or cut a pause or grace period short); with --wave, approve a wave that waits.",
        discussion: "Exit 0, 1 when it cannot be done, 3 when the rollout driven here was rolled back."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Argument(help: "The region whose rollout goes on.") var region: String?
    @Option(help: "Approve this wave (approval: true) in the apply that waits for it.") var wave: String?

    func validate() throws {
        if (region == nil) == (wave == nil) { throw ValidationError("name a region, or a wave with --wave") }
    }

    func run() async throws {
        if let wave {
            let session = try PlanningSession.open(fleetOptions: fleetOptions, selection: try RegionSelection.parse([]), format: .text)
            guard session.fleet.settings.waves.contains(where: { $0.name == wave }) else {
                Output.error("error: no wave \"\(wave)\" in meridian.yaml")
                throw ExitCode(ExitStatus.usage)
            }
            let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
            try await RolloutControl(planning: session.engine, store: store).approve(wave: wave)
            Output.line("Approved wave \(wave): the apply that waits for it goes on.")
            return
        }
        try await RolloutTarget.send(.promote, region: region ?? "", fleetOptions: fleetOptions, stateOptions: stateOptions)
    }
}

struct RolloutAbortCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "All traffic back to the stable slot now, then stop the canary slot.",
        discussion: "Exit 0 when queued for the running apply, 3 when rolled back here, 1 on an error."
    )
    @OptionGroup var target: RolloutTarget
    func run() async throws { try await target.send(.abort) }
}

struct RolloutRollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Back to the previous release: during the grace period in one reload; after a finished rollout while it is still installed.",
        discussion: "Exit 0 when queued or done, 3 when the rollback itself was rolled back, 1 on an error."
    )
    @OptionGroup var target: RolloutTarget
    func run() async throws { try await target.send(.rollback) }
}

struct RolloutResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Carry on the region's unfinished rollouts from their records (after a crash or a dropped host).",
        discussion: "Each ends promoted or back on its stable slot. Exit 0 promoted, 3 rolled back, 1 on an error."
    )
    @OptionGroup var target: RolloutTarget
    func run() async throws { try await target.send(nil) }
}

/// The text and JSON `rollout status` prints.
enum RolloutStatusRendering {
    static func text(_ entries: [RolloutStatusEntry]) -> String {
        guard !entries.isEmpty else { return "No rollouts recorded.\n" }
        var out = ""
        for entry in entries {
            let r = entry.record
            let stable = 100 - r.canaryWeight
            out += "\(r.region)  \(r.component) \(r.fromVersion) → \(r.toVersion)  \(r.strategy.rawValue)  \(entry.stored.id)\n"
            out += "  phase:   \(r.phase)" + (r.phase.step.map { "  (step \($0 + 1) of \(r.settings.steps.count): \(r.weight(ofStep: $0))%)" } ?? "") + "\n"
            out += "  weights: \(r.stableSlot.rawValue) \(stable)%, \(r.canarySlot.rawValue) \(r.canaryWeight)%\n"
            if let wave = r.wave { out += "  wave:    \(wave)\n" }
            for analysis in r.analyses {
                out += "  step \(analysis.step + 1) (\(analysis.weight)%): \(analysis.verdict.rawValue) — \(analysis.summary)\n"
                for name in analysis.values.keys.sorted() { out += "      \(name) = \(analysis.values[name] ?? "")\n" }
            }
            if let reason = r.reason { out += "  reason:  \(reason)\n" }
        }
        return out
    }

    static func json(_ entries: [RolloutStatusEntry]) -> String {
        struct Entry: Encodable {
            var id: Int64
            var run: Int64?
            var record: RolloutRecord
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data = (try? encoder.encode(entries.map { Entry(id: $0.stored.id.rawValue, run: $0.stored.run?.rawValue, record: $0.record) })) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
