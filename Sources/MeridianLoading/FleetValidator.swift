import Foundation
import MeridianBasics
import MeridianModel

/// Checks what no single file can check on its own: names that must be
/// unique across the fleet, references between files, waves, versions and
/// ports. Every problem becomes a diagnostic placed at the offending value.
struct FleetValidator {
    let fleet: Fleet
    /// Every region read, including those too broken to join the fleet.
    let regions: [Region]
    let fileSystem: any FleetFileSystem
    let unreadable: UnreadableFiles
    var diagnostics = Diagnostics()

    init(fleet: Fleet, extraRegions: [Region], fileSystem: any FleetFileSystem, unreadable: UnreadableFiles) {
        self.fleet = fleet
        self.regions = (fleet.regions + extraRegions).sorted { ($0.name, $0.file) < ($1.name, $1.file) }
        self.fileSystem = fileSystem
        self.unreadable = unreadable
    }

    private mutating func error(_ file: String, _ path: String, _ message: String) {
        diagnostics.error(fleet.location(file, path), path, message)
    }

    private mutating func warning(_ file: String, _ path: String, _ message: String) {
        diagnostics.warning(fleet.location(file, path), path, message)
    }

    private var componentNames: [String] { (fleet.settings.components.map(\.name) + unreadable.components).sorted() }

    /// Whether `name` is a component, or one declared with errors already reported.
    private func isComponent(_ name: String) -> Bool {
        fleet.component(named: name) != nil || unreadable.components.contains(name)
    }

    private func suggest(_ name: String, _ candidates: [String]) -> String {
        Suggestion.closest(to: name, among: candidates).map { "; did you mean \"\($0)\"?" } ?? ""
    }

    mutating func validate() {
        checkComponents()
        checkRegionNames()
        checkHosts()
        for region in regions { checkRegion(region) }
        checkPolicies()
        checkWaves()
    }

    private mutating func checkComponents() {
        let settings = FleetLoader.settingsFile
        for (name, _) in fleet.settings.platform where !isComponent(name) {
            error(settings, "platform.\(name)", "no component \"\(name)\" is declared under components\(suggest(name, componentNames))")
        }
        for component in fleet.settings.components {
            let path = "components.\(component.name)"
            if case .path(let template) = component.artifact, !template.contains("{version}") {
                warning(settings, "\(path).artifact", "the artifact path has no {version}: every version of \(component.name) would use the same artifact")
            }
            if component.strategy == .canary, component.canary.steps.isEmpty {
                error(settings, "\(path).canary.steps", "a canary rollout needs steps, e.g. [10, 50, 100]")
            }
            if fleet.settings.platform[component.name] == nil,
               !regions.filter({ !$0.hosts(running: component.name).isEmpty }).allSatisfy({ $0.versions[component.name] != nil }) {
                error(settings, "platform", "component \"\(component.name)\" has no platform version: add platform.\(component.name), or pin versions.\(component.name) in every region that runs it")
            }
        }
        // Two components must not share a gateway route.
        var routes: [String: String] = [:]
        for component in fleet.settings.components {
            guard let route = component.route else { continue }
            if let other = routes[route] {
                error(settings, "components.\(component.name).route", "route \(route) is already the route of \(other): give every component its own path prefix")
            } else {
                routes[route] = component.name
            }
        }
        // Two components on one host must not share a port.
        var owners: [Int: String] = [:]
        for component in fleet.settings.components {
            for slot in Slot.allCases {
                let port = component.ports[slot]
                if let other = owners[port] {
                    error(settings, "components.\(component.name).ports.\(slot.rawValue)", "port \(port) is already used by \(other): give every component slot its own port")
                } else {
                    owners[port] = "\(component.name) (\(slot.rawValue))"
                }
            }
        }
    }

    private mutating func checkRegionNames() {
        var seen: [String: Region] = [:]
        for region in regions {
            if let first = seen[region.name] {
                error(region.file, "name", "region \"\(region.name)\" is also declared in \(first.file): region names must be unique")
            } else {
                seen[region.name] = region
            }
        }
    }

    private mutating func checkHosts() {
        var names: [String: (Region, Int)] = [:]
        var endpoints: [String: (Region, Int)] = [:]
        // Slot ports in use at each service address: two hosts on one machine
        // (one address) running the same component would bind the same port.
        var listeners: [String: (Region, Int, String)] = [:]
        let defaults = fleet.settings.defaults
        for region in regions {
            for (i, host) in region.hosts.enumerated() {
                if let (other, j) = names[host.name] {
                    error(region.file, "hosts[\(i)].name", "host name \"\(host.name)\" is already used by \(other.file) hosts[\(j)]: host names must be unique in the fleet")
                } else {
                    names[host.name] = (region, i)
                }
                let endpoint = "\(host.address.lowercased()):\(host.effectivePort(defaults))"
                if let (other, j) = endpoints[endpoint] {
                    error(region.file, "hosts[\(i)].address", "\(host.address) port \(host.effectivePort(defaults)) is already host \(other.hosts[j].name) of region \(other.name): each host needs its own address or port")
                } else {
                    endpoints[endpoint] = (region, i)
                }
                // A host that repeats another's SSH endpoint is already an error; its ports would only repeat it.
                guard endpoints[endpoint]?.0.name == region.name, endpoints[endpoint]?.1 == i else { continue }
                let field = host.listen == nil ? "address" : "listen"
                for component in fleet.settings.components where host.components.contains(component.name) {
                    let keys = [component.ports.blue, component.ports.green].map { "\(host.serviceAddress.lowercased()) \($0)" }
                    if let key = keys.first(where: { listeners[$0] != nil }), let (other, j, otherComponent) = listeners[key] {
                        error(region.file, "hosts[\(i)].\(field)", "\(component.name) on \(host.name) would listen on \(host.serviceAddress) port \(key.split(separator: " ").last ?? ""), where \(otherComponent) of host \(other.hosts[j].name) (region \(other.name)) listens: give each host its own service address with listen, or run the component on one of them")
                    } else {
                        for key in keys { listeners[key] = (region, i, component.name) }
                    }
                }
            }
        }
    }

    private mutating func checkRegion(_ region: Region) {
        let file = region.file
        if !region.hosts.isEmpty, region.gateways.isEmpty {
            error(file, "hosts", "region \(region.name) has no host with the gateway role: give one host the role gateway")
        }
        var running = Set<String>()
        for (i, host) in region.hosts.enumerated() {
            for (k, role) in host.roles.enumerated() {
                guard case .component(let name) = role else { continue }
                if !isComponent(name) {
                    error(file, "hosts[\(i)].roles[\(k)]", "no component \"\(name)\" is declared in meridian.yaml\(suggest(name, componentNames + ["gateway"]))")
                } else {
                    running.insert(name)
                }
            }
            if host.roles.contains(.gateway) {
                let used = fleet.settings.components.filter { host.components.contains($0.name) }
                for component in used where [component.ports.blue, component.ports.green].contains(region.gatewayPort) {
                    error(file, "gateway.port", "the gateway port \(region.gatewayPort) is also a slot port of \(component.name) on host \(host.name)")
                }
            }
        }
        for component in fleet.settings.components where running.contains(component.name) {
            if fleet.version(of: component.name, in: region) == nil {
                error(file, "versions", "region \(region.name) runs \(component.name) but no version is set: add platform.\(component.name) in meridian.yaml or versions.\(component.name) here")
            }
        }
        for (name, _) in region.versions {
            if !isComponent(name) {
                error(file, "versions.\(name)", "no component \"\(name)\" is declared in meridian.yaml\(suggest(name, componentNames))")
            } else if !running.contains(name) {
                warning(file, "versions.\(name)", "region \(region.name) pins \(name) but none of its hosts runs it")
            }
        }
        for (i, name) in region.policies.enumerated() where fleet.policy(named: name) == nil && !unreadable.policies.contains(name) {
            error(file, "policies[\(i)]", "no policy \"\(name)\" in policies/\(suggest(name, fleet.policies.map(\.name)))")
        }
        var destinations: [String: Int] = [:]
        for (i, config) in region.configFiles.enumerated() {
            let path = "config[\(i)]"
            if !fileSystem.isFile(config.template) {
                let known = templateFiles()
                error(file, "\(path).template", "no template file \(config.template) in the fleet repository\(suggest(config.template, known))")
            }
            if let component = config.component {
                if !isComponent(component) {
                    error(file, "\(path).component", "no component \"\(component)\" is declared in meridian.yaml\(suggest(component, componentNames))")
                } else if !running.contains(component) {
                    warning(file, "\(path).component", "no host of region \(region.name) runs \(component): this file is written nowhere")
                }
            }
            if let j = destinations[config.destination] {
                error(file, "\(path).destination", "config[\(j)] already writes \(config.destination)")
            } else {
                destinations[config.destination] = i
            }
            if !config.destination.hasPrefix("/") {
                for reserved in ["releases", "slots", "governance", "router", "run", "state"] where config.destination == reserved || config.destination.hasPrefix(reserved + "/") {
                    error(file, "\(path).destination", "\(reserved)/ under the host root is meridian's own; put configuration under config/ instead")
                }
            }
        }
    }

    private func templateFiles() -> [String] {
        var result: [String] = []
        var folders = [FleetLoader.templatesFolder]
        var budget = 1000
        while let folder = folders.popLast(), budget > 0 {
            for name in fileSystem.list(folder) {
                budget -= 1
                let path = "\(folder)/\(name)"
                if fileSystem.isDirectory(path) { folders.append(path) } else { result.append(path) }
            }
        }
        return result
    }

    private mutating func checkPolicies() {
        var seen: [String: Policy] = [:]
        for policy in fleet.policies {
            if let first = seen[policy.name] {
                error(policy.file, "name", "policy \"\(policy.name)\" is also declared in \(first.file): policy names must be unique")
            } else {
                seen[policy.name] = policy
            }
            for rule in policy.governance {
                let component: String?
                switch rule.kind {
                case .versionRange(let name, _), .rolloutStrategy(let name, _), .maxVersionSkew(let name, _, _): component = name
                case .requireVariable, .freezeWindow: component = nil
                }
                if let component, !isComponent(component) {
                    error(policy.file, "\(rule.path).component", "no component \"\(component)\" is declared in meridian.yaml\(suggest(component, componentNames))")
                }
            }
        }
    }

    private mutating func checkWaves() {
        let settings = FleetLoader.settingsFile
        let waves = fleet.settings.waves
        guard !waves.isEmpty else { return }
        let regionNames = Set(regions.map(\.name)).union(unreadable.regions)
        var placed: [String: String] = [:]
        var waveNames = Set<String>()
        for (w, wave) in waves.enumerated() {
            if !waveNames.insert(wave.name).inserted {
                error(settings, "waves[\(w)].name", "wave name \"\(wave.name)\" is used twice")
            }
            if wave.regions.isEmpty { error(settings, "waves[\(w)].regions", "wave \(wave.name) has no regions") }
            for (i, name) in wave.regions.enumerated() {
                let path = "waves[\(w)].regions[\(i)]"
                if !regionNames.contains(name) {
                    error(settings, path, "no region \"\(name)\" in regions/\(suggest(name, fleet.regions.map(\.name)))")
                } else if let first = placed[name] {
                    error(settings, path, "region \(name) is already in wave \(first): each region belongs to exactly one wave")
                } else {
                    placed[name] = wave.name
                }
            }
        }
        for region in regions where placed[region.name] == nil {
            error(settings, "waves", "region \(region.name) is in no wave: add it to one so upgrades reach it")
        }
    }
}
