import ArgumentParser
import Foundation
import MeridianModel
import MeridianPlanning

/// `meridian routes`: the residency routing table the gateways enforce.
struct RoutesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes",
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
