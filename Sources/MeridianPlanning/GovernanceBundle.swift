import Foundation
import MeridianBasics
import MeridianModel

/// The rules in force in one region, as the one document pushed to every
/// host of the region (`<root>/governance/bundle.json`). Invariant: `hash` is
/// the SHA-256 of `canonicalData`, and the document depends only on the
/// fleet's content — never on the time, the machine or where the fleet
/// repository is checked out — so the same fleet always gives the same bytes.
public struct GovernanceBundle: Sendable, Equatable {
    public static let formatVersion = 1

    public var region: String
    public var document: CanonicalJSON
    /// The canonical bytes: what is written to hosts and hashed.
    public let canonicalData: Data
    /// SHA-256 of `canonicalData`, lowercase hex.
    public let hash: String

    public init(region: String, document: CanonicalJSON) {
        self.region = region
        self.document = document
        self.canonicalData = document.canonicalData
        self.hash = SHA256.hex(canonicalData)
    }

    /// The document indented for people (what `meridian bundle` shows), with
    /// a trailing newline; its hash is still that of the canonical form.
    public var prettyText: String { document.prettyText + "\n" }

    /// The bundle of one region, with the fleet-wide routing table `routes`
    /// (every entry: a gateway forwards data of any jurisdiction).
    ///
    /// Layout (keys sorted in the serialized forms):
    /// ```
    /// format_version  1
    /// fleet           the fleet's name
    /// region          {name, jurisdiction}
    /// versions        {component: version} for the components the region runs
    /// policies        the policy names in force, in the order the region lists them
    /// rules           [{policy, id, kind, description?, parameters}] in policy, then rule order
    /// residency       {header, missing, refuse_status, routes}
    /// ```
    public static func render(region: Region, fleet: Fleet, routes: RoutingTable) -> GovernanceBundle {
        render(region: region, fleet: fleet, residency: residencySection(fleet.settings.residency, routes))
    }

    /// The `residency` member, the same for every region of a fleet: built
    /// once per fleet, since it holds the whole routing table.
    static func residencySection(_ settings: ResidencySettings, _ routes: RoutingTable) -> CanonicalJSON {
        var residency: [String: CanonicalJSON] = [
            "header": .string(settings.header),
            "refuse_status": .integer(settings.refuseStatus),
        ]
        if case .object(let table) = routes.json {
            residency["missing"] = table["missing"]
            residency["routes"] = table["routes"]
        }
        return .object(residency)
    }

    static func render(region: Region, fleet: Fleet, residency: CanonicalJSON) -> GovernanceBundle {
        var policyNames: [String] = []
        for name in region.policies where !policyNames.contains(name) && fleet.policy(named: name) != nil {
            policyNames.append(name)
        }
        var rules: [CanonicalJSON] = []
        for name in policyNames {
            for rule in fleet.policy(named: name)!.governance {
                var entry: [String: CanonicalJSON] = [
                    "policy": .string(name),
                    "id": .string(rule.id),
                    "kind": .string(rule.kind.keyword),
                    "parameters": parameters(of: rule.kind),
                ]
                if let description = rule.description { entry["description"] = .string(description) }
                rules.append(.object(entry))
            }
        }

        var versions: [String: CanonicalJSON] = [:]
        for component in Set(region.hosts.flatMap(\.components)) {
            if let version = fleet.version(of: component, in: region) { versions[component] = .string(version.description) }
        }

        let document: CanonicalJSON = [
            "format_version": .integer(formatVersion),
            "fleet": .string(fleet.settings.name),
            "region": ["name": .string(region.name), "jurisdiction": .string(region.jurisdiction.code)],
            "versions": .object(versions),
            "policies": .array(policyNames.map { .string($0) }),
            "rules": .array(rules),
            "residency": residency,
        ]
        return GovernanceBundle(region: region.name, document: document)
    }

    /// The bundle of every region, in region order, with the fleet's routing
    /// table and the diagnostics of compiling it.
    public static func renderAll(_ fleet: Fleet) -> ([GovernanceBundle], Diagnostics) {
        let (routes, diagnostics) = ResidencyCompiler.compile(fleet)
        let residency = residencySection(fleet.settings.residency, routes)
        return (fleet.regions.map { render(region: $0, fleet: fleet, residency: residency) }, diagnostics)
    }

    /// A rule's parameters under the names policy files write them with.
    static func parameters(of kind: GovernanceRuleKind) -> CanonicalJSON {
        switch kind {
        case .requireVariable(let name, let allowed):
            var object: [String: CanonicalJSON] = ["variable": .string(name)]
            if let allowed { object["allowed"] = .array(allowed.map { .string($0) }) }
            return .object(object)
        case .versionRange(let component, let range):
            return ["component": .string(component), "range": .string(range.source)]
        case .rolloutStrategy(let component, let strategy):
            return ["component": .string(component), "strategy": .string(strategy.rawValue)]
        case .maxVersionSkew(let component, let level, let max):
            return ["component": .string(component), "level": .string(level.rawValue), "max": .integer(max)]
        case .freezeWindow(let from, let to, let reason):
            var object: [String: CanonicalJSON] = [
                "from": .string(GovernanceEvaluator.timeText(from)),
                "to": .string(GovernanceEvaluator.timeText(to)),
            ]
            if let reason { object["reason"] = .string(reason) }
            return .object(object)
        }
    }
}
