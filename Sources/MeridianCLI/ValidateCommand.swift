import ArgumentParser
import Foundation
import MeridianLoading
import MeridianModel

/// `meridian validate`: reads every fleet file and reports every problem at once.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check the fleet files, the governance rules and the residency table; report every problem.",
        discussion: "Exits 0 when the fleet is valid (warnings allowed) and 65 when it is not."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func run() throws {
        let result = FleetCheck.run(root: fleetOptions.root)
        switch format {
        case .text:
            for diagnostic in result.diagnostics.sorted { Output.error(diagnostic.description) }
            if result.diagnostics.hasErrors {
                Output.error(DiagnosticsReport.summary(result.diagnostics))
            } else if let fleet = result.fleet {
                let hosts = fleet.regions.reduce(0) { $0 + $1.hosts.count }
                var summary = "Fleet \"\(fleet.settings.name)\" is valid: \(fleet.regions.count) regions, \(hosts) hosts, \(fleet.policies.count) policies"
                let warnings = result.diagnostics.warningCount
                if warnings > 0 { summary += ", \(warnings) warning\(warnings == 1 ? "" : "s")" }
                Output.line(summary + ".")
                if !result.bundleHashes.isEmpty {
                    Output.line("Governance bundles:")
                    let width = result.bundleHashes.keys.map(\.count).max() ?? 0
                    for (region, hash) in result.bundleHashes.sorted(by: { $0.key < $1.key }) {
                        Output.line("  \(region.padding(toLength: width, withPad: " ", startingAt: 0))  sha256:\(hash)")
                    }
                }
            }
        case .json:
            Output.json(DiagnosticsReport(diagnostics: result.diagnostics, extra: result.diagnostics.hasErrors ? nil : result.bundleHashes))
        }
        if result.diagnostics.hasErrors { throw ExitCode(ExitStatus.invalidFleet) }
    }
}
