import Foundation
import MeridianBasics
import MeridianModel

/// One release artifact as the control plane prepared it: the file uploaded
/// to hosts (content-addressed by its SHA-256).
public struct PreparedArtifact: Sendable, Equatable, Hashable {
    public var component: String
    public var version: String
    /// The artifact's file name on hosts, e.g. `inference-2.3.1.tar`.
    public var fileName: String
    public var sha256: String

    public init(component: String, version: String, fileName: String, sha256: String) {
        self.component = component
        self.version = version
        self.fileName = fileName
        self.sha256 = sha256
    }
}

/// Turns a validated fleet into the desired state of every host: rendered
/// configuration files (secrets masked), the region's governance bundle, the
/// releases its components need and their slot layout. Pure: templates and
/// prepared artifacts come in as values.
public struct DesiredStateRenderer: Sendable {
    public let fleet: Fleet
    public let bundles: [String: GovernanceBundle]
    /// Template path → its text.
    public let templates: [String: String]
    /// "component@version" → the prepared artifact.
    public let artifacts: [String: PreparedArtifact]
    /// Whether a component version without a prepared artifact is an error;
    /// `validate` renders without artifacts, only to check the templates.
    public let requireArtifacts: Bool
    /// The gateway's traffic split per region and component, for rollouts in
    /// progress; a component without one sends all traffic to its active slot.
    public let trafficSplits: [String: [String: TrafficSplit]]

    public init(fleet: Fleet, bundles: [GovernanceBundle], templates: [String: String], artifacts: [PreparedArtifact], requireArtifacts: Bool = true,
                trafficSplits: [String: [String: TrafficSplit]] = [:]) {
        self.requireArtifacts = requireArtifacts
        self.trafficSplits = trafficSplits
        self.fleet = fleet
        // Two region files may declare one name (validate reports it and still
        // renders the templates): the first bundle stands for that name.
        self.bundles = Dictionary(bundles.map { ($0.region, $0) }, uniquingKeysWith: { first, _ in first })
        self.templates = templates
        self.artifacts = Dictionary(artifacts.map { ("\($0.component)@\($0.version)", $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The desired state of every host of the named regions (all when nil),
    /// and a diagnostic for every template problem or missing artifact.
    public func render(regions wanted: Set<String>? = nil) -> ([DesiredHostState], Diagnostics) {
        var states: [DesiredHostState] = []
        var diagnostics = Diagnostics()
        for region in fleet.regions where wanted?.contains(region.name) ?? true {
            for host in region.hosts {
                states.append(renderHost(host, in: region, &diagnostics))
            }
        }
        return (states, diagnostics)
    }

    func renderHost(_ host: FleetHost, in region: Region, _ diagnostics: inout Diagnostics) -> DesiredHostState {
        let defaults = fleet.settings.defaults
        let root = host.effectiveRoot(defaults)
        var files: [ManagedFile] = []
        var releases: [ReleaseRequirement] = []
        var layouts: [ComponentSlotLayout] = []
        let runs = host.components

        if let bundle = bundles[region.name] {
            files.append(ManagedFile(path: DesiredHostState.governanceBundlePath, content: .bytes(bundle.canonicalData), mode: 0o644, source: "governance bundle of \(region.name)"))
        }
        for (index, config) in region.configFiles.enumerated() {
            if let component = config.component, !runs.contains(component) { continue }
            // Files outside the host root are written by the engine only when declared so; the
            // desired state keeps root-relative paths, which is what every host-side check relies on.
            guard !config.destination.hasPrefix("/") else { continue }
            let path = "config[\(index)]"
            guard let text = templates[config.template] else {
                diagnostics.error(fleet.location(region.file, "\(path).template"), "\(path).template", "template \(config.template) could not be read")
                continue
            }
            let component = config.component.flatMap { fleet.component(named: $0) }
            let variables = templateVariables(region: region, host: host, root: root, component: component)
            switch ManagedFile.rendering(Template(text), templatePath: config.template, variables: variables, path: config.destination, mode: config.mode, source: "\(region.file) \(path)", component: config.component) {
            case .success(let file):
                files.append(file)
            case .failure(let failure):
                let location = fleet.location(region.file, "\(path).template")
                for message in failure.messages {
                    diagnostics.error(location, "\(path).template", message)
                }
            }
        }
        for name in runs {
            guard let component = fleet.component(named: name), let version = fleet.version(of: name, in: region) else { continue }
            let key = "\(name)@\(version)"
            guard let artifact = artifacts[key] else {
                guard requireArtifacts else { continue }
                diagnostics.error(fleet.location(FleetLoaderPaths.settings, "components.\(name).artifact"), "components.\(name).artifact",
                                  "no artifact for \(name) \(version) (\(component.artifact.resolved(for: version))): add it to the fleet repository")
                continue
            }
            releases.append(ReleaseRequirement(component: name, version: version.description, artifact: artifact.fileName, sha256: artifact.sha256))
            layouts.append(ComponentSlotLayout(component: name, version: version.description, strategy: component.strategy, address: host.serviceAddress,
                                               bluePort: component.ports.blue, greenPort: component.ports.green,
                                               startCommand: component.start, healthPath: component.health, smoke: component.smoke))
        }
        var gateway: GatewayConfig?
        if host.roles.contains(.gateway) {
            let config = GatewayConfig.forGateway(host, in: region, fleet: fleet, splits: splits(in: region))
            files.append(ManagedFile(path: GatewayConfig.path, content: .bytes(Data(config.text.utf8)), mode: 0o644, source: "gateway of \(region.name)"))
            if let script = config.residencyScript {
                files.append(ManagedFile(path: script.path, content: .bytes(Data(script.text.utf8)), mode: 0o644, source: "gateway of \(region.name)"))
            }
            gateway = config
        }
        return DesiredHostState(region: region.name, host: host.name, address: host.address, root: root,
                                roles: host.roles.map(\.description), files: files, releases: releases, components: layouts, gateway: gateway)
    }

    /// Each component's split in `region`: the one given, else all traffic on
    /// the active slot (the slot `renderHost` lays out; blue until rollouts
    /// record another, and then they give the split).
    func splits(in region: Region) -> [String: TrafficSplit] {
        var splits: [String: TrafficSplit] = [:]
        for component in fleet.settings.components {
            splits[component.name] = trafficSplits[region.name]?[component.name] ?? .all(on: Self.activeSlot)
        }
        return splits
    }

    /// The slot a component's version runs in when no rollout says otherwise.
    static let activeSlot: Slot = .blue

    /// The names a template can use (docs/templates.md).
    func templateVariables(region: Region, host: FleetHost, root: String, component: Component?) -> [String: TemplateValue] {
        var variables: [String: TemplateValue] = [
            "region.name": .text(region.name),
            "region.jurisdiction": .text(region.jurisdiction.code),
            "host.name": .text(host.name),
            "host.address": .text(host.address),
            "host.listen": .text(host.serviceAddress),
            "host.root": .text(root),
        ]
        for (name, value) in region.variables {
            switch value {
            case .plain(let text): variables["vars.\(name)"] = .text(text)
            case .secret(let reference): variables["vars.\(name)"] = .secret(reference)
            }
        }
        if let component, let version = fleet.version(of: component.name, in: region) {
            variables["component.name"] = .text(component.name)
            variables["component.version"] = .text(version.description)
            variables["component.port"] = .text(String(component.ports.blue))
        }
        return variables
    }
}

/// Fleet file names the planning layer refers to in diagnostics.
enum FleetLoaderPaths {
    static let settings = "meridian.yaml"
}
