import ArgumentParser
import MeridianBasics
import MeridianModel

/// `--region R` (repeatable): the regions a command works on; none means all.
struct RegionSelection: ParsableArguments {
    @Option(name: .customLong("region"), help: ArgumentHelp("Only this region (repeatable; default: every region).", valueName: "region"))
    var regions: [String] = []

    /// Checks every named region exists, suggesting a close name when one does not.
    func check(against fleet: Fleet) throws {
        let names = fleet.regions.map(\.name)
        for region in regions where !names.contains(region) {
            var message = "no region \"\(region)\" in the fleet"
            if let suggestion = Suggestion.closest(to: region, among: names) { message += "; did you mean \"\(suggestion)\"?" }
            else { message += "; regions: \(names.joined(separator: ", "))" }
            throw ValidationError(message)
        }
    }
}
