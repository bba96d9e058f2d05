import Foundation
import MeridianModel

/// The traffic split of every routed component is desired state that the
/// fleet files do not hold: a rollout moves it, and the hosts' manifests
/// record where it stands (each component's slot weights). The gateway
/// configuration is rendered from those records, so a plan, an apply or a
/// drift check made during a canary keeps the canary's weights, and one made
/// after a blue-green switch keeps all traffic on the new slot. Pure.
public enum RecordedSplits {
    /// Region → component → the split the manifests record, read from the
    /// first host (in the order given) of the region whose manifest has a
    /// valid entry for the component. Components no manifest records are absent.
    public static func splits(_ hosts: [DesiredHostState], observed: [HostID: ObservedHostState]) -> [String: [String: TrafficSplit]] {
        var splits: [String: [String: TrafficSplit]] = [:]
        for host in hosts {
            guard let recorded = observed[host.id]?.manifest.manifest?.components else { continue }
            for layout in host.components where splits[host.region]?[layout.component] == nil {
                guard let entry = recorded[layout.component],
                      let split = TrafficSplit(blue: entry.blue.weight, green: entry.green.weight) else { continue }
                splits[host.region, default: [:]][layout.component] = split
            }
        }
        return splits
    }

    /// The hosts with each gateway's configuration (and its managed file) at
    /// the recorded splits; hosts without a gateway are returned as they are.
    public static func applying(_ splits: [String: [String: TrafficSplit]], to hosts: [DesiredHostState]) -> [DesiredHostState] {
        hosts.map { host in
            guard let gateway = host.gateway, let regionSplits = splits[host.region] else { return host }
            var config = gateway
            for (component, split) in regionSplits { config = config.withSplit(split, for: component) }
            return host.withGateway(config)
        }
    }

    /// `applying(splits(hosts, observed:), to: hosts)`.
    public static func rendered(_ hosts: [DesiredHostState], observed: [HostID: ObservedHostState]) -> [DesiredHostState] {
        applying(splits(hosts, observed: observed), to: hosts)
    }
}

extension GatewayConfig {
    /// The configuration with `component`'s route at `split` (every server's
    /// weight from it); unchanged when the component has no route here.
    public func withSplit(_ split: TrafficSplit, for component: String) -> GatewayConfig {
        var next = self
        for index in next.routes.indices where next.routes[index].component == component {
            next.routes[index].split = split
            for server in next.routes[index].servers.indices {
                next.routes[index].servers[server].weight = split.weight(next.routes[index].servers[server].slot)
            }
        }
        return next
    }

    /// The split `component`'s route has here; nil when it has no route.
    public func split(of component: String) -> TrafficSplit? {
        routes.first { $0.component == component }?.split
    }
}

extension DesiredHostState {
    /// The host with `config` as its gateway configuration, its managed file included.
    public func withGateway(_ config: GatewayConfig) -> DesiredHostState {
        var next = self
        next.gateway = config
        for index in next.files.indices where next.files[index].path == GatewayConfig.path {
            next.files[index].content = .bytes(Data(config.text.utf8))
        }
        return next
    }
}
