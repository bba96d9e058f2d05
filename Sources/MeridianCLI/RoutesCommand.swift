import ArgumentParser
import Foundation
import MeridianEngine
import MeridianModel
import MeridianPlanning
import MeridianState

/// `meridian routes`: the residency routing table the gateways enforce, and
/// `meridian routes verify`, which proves the live gateways follow it.
struct RoutesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes",
        abstract: "The residency routing table: print it, or verify the live gateways follow it.",
        subcommands: [RoutesShow.self, RoutesVerify.self],
        defaultSubcommand: RoutesShow.self
    )
}

/// `meridian routes [show]`: the table itself.
struct RoutesShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the residency routing table: for each data jurisdiction, the regions allowed to process it, in order."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: ArgumentHelp("Only this data jurisdiction.", valueName: "J")) var jurisdiction: String?
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func validate() throws {
        if let jurisdiction, Jurisdiction(jurisdiction) == nil {
            throw ValidationError("--jurisdiction takes an upper-case code such as EU, US, UK or SG, got \"\(jurisdiction)\"")
        }
    }

    func run() throws {
        let check = try FleetCheck.valid(root: fleetOptions.root, format: format)
        guard var table = check.routes else { throw ExitCode(ExitStatus.invalidFleet) }
        if let code = jurisdiction, let wanted = Jurisdiction(code) {
            guard table.entry(for: wanted) != nil else {
                let known = table.entries.map(\.data.code).joined(separator: ", ")
                Output.error("error: no residency rule covers data of jurisdiction \(code): requests carrying it are refused everywhere. Rules exist for: \(known).")
                throw ExitCode(ExitStatus.failure)
            }
            table = table.restricted(to: wanted)
        }
        switch format {
        case .text: Output.text(table.text)
        case .json: Output.text(table.jsonText)
        }
    }
}

/// `meridian routes verify`: one request per data jurisdiction, one without
/// the header and one with an unknown value through every gateway host (over
/// SSH), each answer checked against the table and the regions' health.
struct RoutesVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Send requests through every gateway over SSH and check where each went against the routing table.",
        discussion: """
        Prints a matrix (gateway × jurisdiction → serving region or refusal, ✓/✗). Exits 1 on any violation or unreachable host. \
        The result is recorded in the state store (a run of kind routes-verify), where `meridian status` shows it.
        """
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var selection: RegionSelection
    @OptionGroup var stateOptions: StateOptions
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() async throws {
        let (fleet, _) = try fleetOptions.loadValid()
        try selection.check(against: fleet)
        let table = ResidencyCompiler.compile(fleet).0
        let verifier = ResidencyVerifier(fleet: fleet, table: table, endpoints: FleetEndpoints(fleet: fleet, fleetRoot: fleetOptions.root),
                                         parallelism: fleet.settings.defaults.parallelism)
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let recorder = try await RouteVerificationRecorder.start(store: store, fleet: fleet, selected: selection.regions)
        let result: ResidencyVerifier.Result
        do {
            result = try await verifier.verify(regions: selection.regions)
        } catch let error as ResidencyVerifier.VerifyError {
            try await recorder.fail("\(error)")
            Output.error("error: \(error)")
            throw ExitCode(ExitStatus.failure)
        } catch {
            // The run is finished on the record whatever stopped it, so it is never taken for one still going.
            try? await recorder.fail("\(error)")
            throw error
        }
        try await recorder.finish(fleet: fleet, selected: selection.regions, result: result)
        switch format {
        case .text: Output.text(ResidencyVerification.matrixText(result.checks, healthy: result.healthy, regions: fleet.regions.map(\.name)))
        case .json: Output.text(ResidencyVerification.json(result.checks, healthy: result.healthy).prettyText + "\n")
        }
        for line in result.unreachable { Output.error("error: \(line)") }
        if result.checks.contains(where: { !$0.ok }) || !result.unreachable.isEmpty { throw ExitCode(ExitStatus.failure) }
    }
}
