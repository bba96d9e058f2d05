import Foundation
import MeridianBasics
import MeridianModel

extension RoutingTable {
    /// The table for people, one line per data jurisdiction, columns padded
    /// with spaces and no trailing whitespace; ends with a newline.
    ///
    /// ```
    /// DATA  ALLOWED JURISDICTIONS  REGIONS (in order)
    /// EU    EU                     eu-central, eu-west
    /// UK    UK, EU                 uk-south, eu-central, eu-west
    /// ```
    public var text: String {
        let header = ["DATA", "ALLOWED JURISDICTIONS", "REGIONS (in order)"]
        let rows = entries.map { entry in
            [
                entry.data.code,
                entry.allowed.isEmpty ? "(none)" : entry.allowed.map(\.code).joined(separator: ", "),
                entry.regions.isEmpty ? "(none)" : entry.regions.map(\.name).joined(separator: ", "),
            ]
        }
        let all = [header] + rows
        let widths = (0..<2).map { column in all.map { $0[column].count }.max() ?? 0 }
        var out = ""
        for row in all {
            var line = ""
            for column in 0..<2 {
                line += row[column] + String(repeating: " ", count: widths[column] - row[column].count + 2)
            }
            out += line + row[2] + "\n"
        }
        return out
    }

    /// The table as indented JSON, keys sorted, ending with a newline; it
    /// decodes back into an equal table with `JSONDecoder`.
    public var jsonText: String { json.prettyText + "\n" }
}
