import Foundation
import MeridianBasics
import MeridianModel

/// Compiles the residency rules of every policy file and the regions of a
/// fleet into one fleet-wide routing table. Pure: the same fleet gives the
/// same table and the same diagnostics, whatever order its files were read in.
public enum ResidencyCompiler {
    /// The routing table and every problem found while building it.
    ///
    /// A data jurisdiction's own regions come first only when its rule lists
    /// it in `allowed`: a rule such as `data: UK, allowed: [EU]` keeps UK data
    /// out of UK regions on purpose, and the table must not second-guess it.
    public static func compile(_ fleet: Fleet) -> (RoutingTable, Diagnostics) {
        var diagnostics = Diagnostics()
        let rules = definitiveRules(fleet, &diagnostics)

        var entries: [RoutingTable.Entry] = []
        for rule in rules {
            let allowed = preferenceOrder(rule, fleet, &diagnostics)
            var regions: [RoutedRegion] = []
            for jurisdiction in allowed {
                let members = fleet.regions
                    .filter { $0.jurisdiction == jurisdiction }
                    .sorted(by: routingOrder)
                regions += members.map { RoutedRegion(name: $0.name, jurisdiction: $0.jurisdiction) }
            }
            if regions.isEmpty {
                let list = allowed.map(\.code)
                let because = list.isEmpty
                    ? "the rule allows no jurisdiction"
                    : "no region is in \(orList(list))"
                let remedy = list.isEmpty
                    ? "list at least one jurisdiction in allowed"
                    : "add a region in \(orList(list)) or allow another jurisdiction"
                diagnostics.error(rule.location, rule.path, "no region can process \(rule.data) data: \(because); \(remedy)")
            }
            entries.append(RoutingTable.Entry(data: rule.data, allowed: allowed, regions: regions))
        }

        let covered = Set(rules.map(\.data))
        for region in fleet.regions where !covered.contains(region.jurisdiction) {
            diagnostics.warning(
                fleet.location(region.file, "jurisdiction"), "jurisdiction",
                "no residency rule covers \(region.jurisdiction) data, so every gateway refuses requests that carry it (region \(region.name) is in \(region.jurisdiction)); add a rule with data: \(region.jurisdiction) to a policy file")
        }

        var assumed: Jurisdiction?
        switch fleet.settings.residency.missing {
        case .refuse:
            assumed = nil
        case .assume(let jurisdiction):
            assumed = jurisdiction
            if !covered.contains(jurisdiction) {
                diagnostics.warning(
                    fleet.location(GovernanceEvaluator.settingsFile, "residency.missing"), "residency.missing",
                    "requests without a residency header are treated as \(jurisdiction) data, but no residency rule covers \(jurisdiction), so they are all refused; add a rule with data: \(jurisdiction) or assume a covered jurisdiction")
            }
        }
        return (RoutingTable(entries: entries, assumeWhenMissing: assumed), diagnostics)
    }

    /// One rule per data jurisdiction, sorted by it. A jurisdiction defined in
    /// several places must be defined identically there; when it is not, the
    /// first definition in file, line, column order is kept and the conflict
    /// is an error at each later one.
    static func definitiveRules(_ fleet: Fleet, _ diagnostics: inout Diagnostics) -> [ResidencyRule] {
        let all = fleet.policies.flatMap(\.residency).sorted {
            ($0.data, $0.location, $0.path) < ($1.data, $1.location, $1.path)
        }
        var kept: [Jurisdiction: ResidencyRule] = [:]
        for rule in all {
            guard let first = kept[rule.data] else {
                kept[rule.data] = rule
                continue
            }
            if first.allowed != rule.allowed {
                diagnostics.error(rule.location, rule.path,
                    "data jurisdiction \(rule.data) is defined differently in \(first.location) (allowed \(listText(first.allowed))) and \(rule.location) (allowed \(listText(rule.allowed))); keep one definition or make them identical")
            }
        }
        return kept.values.sorted { $0.data < $1.data }
    }

    /// The rule's allowed jurisdictions in preference order: the data's own
    /// first when listed, the rest as written; a repeated one is an error and
    /// counts once.
    static func preferenceOrder(_ rule: ResidencyRule, _ fleet: Fleet, _ diagnostics: inout Diagnostics) -> [Jurisdiction] {
        var seen = Set<Jurisdiction>()
        var reported = Set<Jurisdiction>()
        var ordered: [Jurisdiction] = []
        for (index, jurisdiction) in rule.allowed.enumerated() {
            if seen.insert(jurisdiction).inserted {
                ordered.append(jurisdiction)
            } else if reported.insert(jurisdiction).inserted {
                let path = "\(rule.path).allowed[\(index)]"
                diagnostics.error(fleet.location(rule.location.file, path), path,
                    "\(jurisdiction) is listed twice in the jurisdictions allowed to process \(rule.data) data; list each jurisdiction once")
            }
        }
        if let own = ordered.firstIndex(of: rule.data), own > 0 {
            ordered.insert(ordered.remove(at: own), at: 0)
        }
        return ordered
    }

    /// Within one jurisdiction: lower priority first, then by name bytes.
    static func routingOrder(_ a: Region, _ b: Region) -> Bool {
        if a.priority != b.priority { return a.priority < b.priority }
        return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
    }

    static func listText(_ jurisdictions: [Jurisdiction]) -> String {
        "[" + jurisdictions.map(\.code).joined(separator: ", ") + "]"
    }

    static func orList(_ items: [String]) -> String {
        switch items.count {
        case 0: return ""
        case 1: return items[0]
        default: return items.dropLast().joined(separator: ", ") + " or " + items.last!
        }
    }
}
