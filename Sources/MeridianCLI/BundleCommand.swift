import ArgumentParser
import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning

/// `meridian bundle REGION`: the governance bundle meridian pushes to every host of a region.
struct BundleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Print a region's governance bundle (the rules in force there) and its SHA-256."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Argument(help: "The region.") var region: String
    @Option(help: "Output format: text (the bundle, then its hash) or json (exactly the bytes that are hashed).") var format: OutputFormat = .text

    func run() throws {
        let check = try FleetCheck.valid(root: fleetOptions.root, format: .text)
        guard let bundle = check.bundles.first(where: { $0.region == region }) else {
            let names = check.bundles.map(\.region)
            var message = "error: no region \"\(region)\" in the fleet"
            if let suggestion = Suggestion.closest(to: region, among: names) { message += "; did you mean \"\(suggestion)\"?" }
            else { message += "; regions: \(names.joined(separator: ", "))" }
            Output.error(message)
            throw ExitCode(ExitStatus.failure)
        }
        switch format {
        case .text:
            Output.text(bundle.prettyText)
            Output.line("sha256:\(bundle.hash)")
        case .json:
            FileHandle.standardOutput.write(bundle.canonicalData + Data("\n".utf8))
        }
    }
}
