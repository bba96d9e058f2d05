import Foundation
import MeridianLoading
import MeridianModel

/// Everything `validate` checks, in one value: the fleet's own diagnostics,
/// then governance and residency, which need a fleet that loaded.
struct FleetCheck {
    var fleet: Fleet?
    var diagnostics: Diagnostics
    var bundleHashes: [String: String]

    static func run(root: URL, now: Date = Date()) -> FleetCheck {
        let loaded = FleetLoader(root: root).load()
        return FleetCheck(fleet: loaded.fleet, diagnostics: loaded.diagnostics, bundleHashes: [:])
    }
}
