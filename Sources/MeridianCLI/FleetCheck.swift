import Foundation
import ArgumentParser
import MeridianLoading
import MeridianModel
import MeridianPlanning

/// Everything `validate` checks, in one value: the fleet's own diagnostics,
/// then the residency table, governance rules and bundles, which need a
/// fleet that loaded.
struct FleetCheck {
    var fleet: Fleet?
    var diagnostics: Diagnostics
    var routes: RoutingTable?
    var bundles: [GovernanceBundle]

    var bundleHashes: [String: String] {
        Dictionary(uniqueKeysWithValues: bundles.map { ($0.region, $0.hash) })
    }

    static func run(root: URL, now: Date = Date()) -> FleetCheck {
        let loaded = FleetLoader(root: root).load()
        var diagnostics = loaded.diagnostics
        guard let fleet = loaded.fleet else { return FleetCheck(fleet: nil, diagnostics: diagnostics, routes: nil, bundles: []) }
        let (routes, residency) = ResidencyCompiler.compile(fleet)
        diagnostics.append(contentsOf: residency)
        diagnostics.append(contentsOf: GovernanceEvaluator.evaluate(fleet: fleet, now: now, changingRegions: nil))
        let bundles = fleet.regions.map { GovernanceBundle.render(region: $0, fleet: fleet, routes: routes) }
        // Render every template for every host it is written to, so a missing
        // variable is a validation error placed at the config entry that uses it.
        let templates = LocalFleetFileSystem(root: root).templateFiles(of: fleet).mapValues { String(decoding: $0, as: UTF8.self) }
        let renderer = DesiredStateRenderer(fleet: fleet, bundles: bundles, templates: templates, artifacts: [], requireArtifacts: false)
        let (_, templateDiagnostics) = renderer.render()
        // A template file that is missing was already reported by the loader.
        diagnostics.append(contentsOf: Diagnostics(templateDiagnostics.items.filter { !$0.message.hasSuffix("could not be read") }))
        return FleetCheck(fleet: fleet, diagnostics: diagnostics, routes: routes, bundles: bundles)
    }

    /// The checked fleet, or every diagnostic printed and exit 65.
    static func valid(root: URL, format: OutputFormat) throws -> FleetCheck {
        let check = run(root: root)
        guard check.fleet != nil, !check.diagnostics.hasErrors else {
            Output.diagnostics(check.diagnostics, format: format)
            throw ExitCode(ExitStatus.invalidFleet)
        }
        return check
    }
}
