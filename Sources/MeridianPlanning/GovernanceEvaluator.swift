import Foundation
import MeridianBasics
import MeridianModel

/// Checks the desired state of every region against the governance rules of
/// the policies it references. Pure: a rule violation is an error diagnostic
/// placed at the offending value when there is one (else at the rule), and
/// its message names the rule, the rule's place, the region, the value and
/// the way out.
public enum GovernanceEvaluator {
    /// The file the fleet-wide settings live in, relative to the fleet root.
    static let settingsFile = "meridian.yaml"

    /// Every violation in the fleet.
    ///
    /// `changingRegions` are the regions the caller is about to change, and
    /// `now` the time it would change them: a freeze window is only violated
    /// by a change, so `validate` passes nil and no freeze is reported, while
    /// `plan` passes the regions its plan touches.
    public static func evaluate(fleet: Fleet, now: Date, changingRegions: Set<String>?) -> Diagnostics {
        var diagnostics = Diagnostics()
        for policy in fleet.policies {
            let governed = fleet.regions.filter { $0.policies.contains(policy.name) }
            guard !governed.isEmpty else { continue }
            for rule in policy.governance {
                let check = RuleCheck(fleet: fleet, rule: rule, regions: governed)
                switch rule.kind {
                case .requireVariable(let name, let allowed):
                    check.requireVariable(name, allowed: allowed, into: &diagnostics)
                case .versionRange(let component, let range):
                    check.versionRange(component, range, into: &diagnostics)
                case .rolloutStrategy(let component, let strategy):
                    check.rolloutStrategy(component, strategy, into: &diagnostics)
                case .maxVersionSkew(let component, let level, let max):
                    check.maxVersionSkew(component, level, max, into: &diagnostics)
                case .freezeWindow(let from, let to, let reason):
                    check.freezeWindow(from: from, to: to, reason: reason, now: now, changing: changingRegions, into: &diagnostics)
                }
            }
        }
        return diagnostics
    }

    /// Time as rules and messages write it: `2026-12-20T00:00:00Z`, in UTC.
    static func timeText(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!))
    }

    /// The regions of `regions` that run `component` on at least one host.
    static func running(_ component: String, in regions: [Region]) -> [Region] {
        regions.filter { region in region.hosts.contains { $0.roles.contains(.component(component)) } }
    }

    /// The path of a field of a component in meridian.yaml. Components may be
    /// recorded as a list (`components[0]`) or keyed by name
    /// (`components.inference`); the form the source map knows wins, so a
    /// diagnostic points at the line that declares the field either way.
    static func componentPath(_ fleet: Fleet, _ component: String, field: String) -> String {
        let listed = fleet.settings.components.firstIndex { $0.name == component }.map { "components[\($0)]" }
        if let listed, fleet.location(settingsFile, listed) != fleet.location(settingsFile, "components") {
            return "\(listed).\(field)"
        }
        return "components.\(component).\(field)"
    }
}

/// One rule applied to the regions that reference its policy.
struct RuleCheck {
    let fleet: Fleet
    let rule: GovernanceRule
    let regions: [Region]

    /// How every violation message of this rule begins.
    var prefix: String { "violates rule \"\(rule.id)\" (\(rule.location)): " }

    func report(_ file: String, _ path: String, _ message: String, into diagnostics: inout Diagnostics) {
        diagnostics.error(fleet.location(file, path), path, prefix + message)
    }

    func reportAtRule(_ message: String, into diagnostics: inout Diagnostics) {
        diagnostics.error(rule.location, rule.path, prefix + message)
    }

    func requireVariable(_ name: String, allowed: [String]?, into diagnostics: inout Diagnostics) {
        let allowedText = allowed.map(Self.choiceText)
        for region in regions {
            let path = "variables.\(name)"
            switch region.variables[name] {
            case nil:
                let target = allowedText.map { " to \($0)" } ?? ""
                report(region.file, "variables",
                       "region \(region.name) does not set variable \(name); set \(path)\(target) in \(region.file) or change the rule",
                       into: &diagnostics)
            case .secret(let reference)?:
                guard let allowed, let allowedText else { continue }
                report(region.file, path,
                       "variable \(name) of region \(region.name) is the secret reference \(reference), which cannot be compared with the allowed value\(allowed.count == 1 ? "" : "s") \(Self.quotedList(allowed)); set it to a plain value (\(allowedText)) or drop allowed from the rule",
                       into: &diagnostics)
            case .plain(let value)?:
                guard let allowed, let allowedText, !allowed.contains(value) else { continue }
                report(region.file, path,
                       "variable \(name) of region \(region.name) is \(Self.quoted(value)), not \(allowedText); set it to \(allowedText) or change the rule",
                       into: &diagnostics)
            }
        }
    }

    func versionRange(_ component: String, _ range: VersionRange, into diagnostics: inout Diagnostics) {
        for region in GovernanceEvaluator.running(component, in: regions) {
            guard let version = fleet.version(of: component, in: region), !range.contains(version) else { continue }
            let place = versionPlace(component, region)
            if place.pinned {
                report(place.file, place.path,
                       "version \(version) of \(component) in region \(region.name) is outside \(range); pin a version inside the range or change the rule",
                       into: &diagnostics)
            } else {
                report(place.file, place.path,
                       "version \(version) of \(component) in region \(region.name) (the platform version) is outside \(range); pin a version inside the range in \(region.file), change \(place.path) or change the rule",
                       into: &diagnostics)
            }
        }
    }

    func rolloutStrategy(_ component: String, _ strategy: RolloutStrategy, into diagnostics: inout Diagnostics) {
        guard let declared = fleet.component(named: component), declared.strategy != strategy else { return }
        let affected = GovernanceEvaluator.running(component, in: regions)
        guard !affected.isEmpty else { return }
        let names = affected.map(\.name)
        let path = GovernanceEvaluator.componentPath(fleet, component, field: "strategy")
        report(GovernanceEvaluator.settingsFile, path,
               "component \(component) is rolled out with \(declared.strategy.rawValue), but \(names.count == 1 ? "region" : "regions") \(Self.andList(names)) \(names.count == 1 ? "requires" : "require") \(strategy.rawValue); set \(path) to \(strategy.rawValue) in \(GovernanceEvaluator.settingsFile) or change the rule",
               into: &diagnostics)
    }

    func maxVersionSkew(_ component: String, _ level: SkewLevel, _ max: Int, into diagnostics: inout Diagnostics) {
        let versions: [(region: Region, version: Version)] = GovernanceEvaluator.running(component, in: regions).compactMap { region in
            fleet.version(of: component, in: region).map { (region, $0) }
        }
        // Among equal versions the first region by name is named, so the
        // report does not depend on input order.
        func lower(_ a: (region: Region, version: Version), _ b: (region: Region, version: Version)) -> Bool {
            if !a.version.samePrecedence(as: b.version) { return a.version < b.version }
            return a.region.name.utf8.lexicographicallyPrecedes(b.region.name.utf8)
        }
        func higher(_ a: (region: Region, version: Version), _ b: (region: Region, version: Version)) -> Bool {
            if !a.version.samePrecedence(as: b.version) { return b.version < a.version }
            return a.region.name.utf8.lexicographicallyPrecedes(b.region.name.utf8)
        }
        guard let lowest = versions.min(by: lower), let highest = versions.min(by: higher) else { return }
        let high = highest.version, low = lowest.version
        // Nil: the versions differ above `level`, which exceeds any skew counted at it.
        let distance: Int?
        switch level {
        case .major: distance = high.major - low.major
        case .minor: distance = high.major == low.major ? high.minor - low.minor : nil
        case .patch: distance = (high.major, high.minor) == (low.major, low.minor) ? high.patch - low.patch : nil
        }
        func counted(_ count: Int) -> String { "\(count) \(level.rawValue) version\(count == 1 ? "" : "s")" }
        let observed = "\(component) runs \(high) in region \(highest.region.name) and \(low) in region \(lowest.region.name)"
        let message: String
        switch distance {
        case let apart? where apart > max:
            message = "\(observed), \(counted(apart)) apart, more than the \(max) allowed; bring the versions closer or change the rule"
        case .some:
            return
        case nil:
            let differing = level == .minor ? "major version" : "major or minor version"
            message = "\(observed), which differ in their \(differing), while at most \(counted(max)) of skew is allowed; bring the versions closer or change the rule"
        }
        // The offending value is a pin: the platform version is the same everywhere.
        let highPlace = versionPlace(component, highest.region)
        let lowPlace = versionPlace(component, lowest.region)
        let place = highPlace.pinned ? highPlace : lowPlace
        if place.pinned {
            report(place.file, place.path, message, into: &diagnostics)
        } else {
            reportAtRule(message, into: &diagnostics)
        }
    }

    func freezeWindow(from: Date, to: Date, reason: String?, now: Date, changing: Set<String>?, into diagnostics: inout Diagnostics) {
        guard let changing, from <= now, now < to else { return }
        let why = reason.map { " (\($0))" } ?? ""
        for region in regions where changing.contains(region.name) {
            reportAtRule(
                "changes to region \(region.name) are frozen from \(GovernanceEvaluator.timeText(from)) to \(GovernanceEvaluator.timeText(to))\(why) and it is \(GovernanceEvaluator.timeText(now)); wait until the window ends or leave region \(region.name) out of this change",
                into: &diagnostics)
        }
    }

    /// Where a region's version of a component is declared: its pin in the
    /// region file, else the fleet's platform version in meridian.yaml.
    func versionPlace(_ component: String, _ region: Region) -> (file: String, path: String, pinned: Bool) {
        if region.versions[component] != nil { return (region.file, "versions.\(component)", true) }
        return (GovernanceEvaluator.settingsFile, "platform.\(component)", false)
    }

    static func quoted(_ value: String) -> String {
        CanonicalJSON.string(value).canonicalText
    }

    static func quotedList(_ values: [String]) -> String {
        values.map(quoted).joined(separator: ", ")
    }

    /// `"30"` for one allowed value, `one of "14", "30"` for several.
    static func choiceText(_ values: [String]) -> String {
        values.count == 1 ? quoted(values[0]) : "one of \(quotedList(values))"
    }

    static func andList(_ items: [String]) -> String {
        switch items.count {
        case 0: return ""
        case 1: return items[0]
        default: return items.dropLast().joined(separator: ", ") + " and " + items.last!
        }
    }
}
