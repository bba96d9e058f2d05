import Foundation
import MeridianBasics
import MeridianModel

/// The share of one component's traffic each slot takes, in percent.
/// Invariant: `blue + green == 100` and each is 0…100.
public struct TrafficSplit: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    public let blue: Int
    public let green: Int

    /// Nil unless both shares are 0…100 and add up to 100.
    public init?(blue: Int, green: Int) {
        guard (0...100).contains(blue), (0...100).contains(green), blue + green == 100 else { return nil }
        self.blue = blue
        self.green = green
    }

    /// Every request to `slot`: what a region without a rollout in progress serves.
    public static func all(on slot: Slot) -> TrafficSplit {
        switch slot {
        case .blue: return TrafficSplit(blue: 100, green: 0)!
        case .green: return TrafficSplit(blue: 0, green: 100)!
        }
    }

    /// `percent` of the traffic on `slot`, the rest on the other one (a canary step).
    public static func percent(_ percent: Int, on slot: Slot) -> TrafficSplit? {
        switch slot {
        case .blue: return TrafficSplit(blue: percent, green: 100 - percent)
        case .green: return TrafficSplit(blue: 100 - percent, green: percent)
        }
    }

    public func percent(_ slot: Slot) -> Int {
        switch slot {
        case .blue: return blue
        case .green: return green
        }
    }

    /// The nginx weight of each slot: the percentages divided by their
    /// greatest common divisor (90/10 → 9 and 1; 100/0 → 1 and 0). Every host
    /// of a component gets the same pair, so the split holds across hosts.
    public func weight(_ slot: Slot) -> Int {
        let divisor = Self.gcd(blue, green)
        return percent(slot) / divisor
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    public var description: String { "blue \(blue) % / green \(green) %" }
}

/// One slot of one host in a component's upstream. Invariant: `weight` is
/// 0 exactly when the slot takes no traffic; such a slot is written `down`.
public struct GatewayUpstreamServer: Codable, Sendable, Equatable {
    public var host: String
    public var address: String
    public var port: Int
    public var slot: Slot
    public var weight: Int

    public init(host: String, address: String, port: Int, slot: Slot, weight: Int) {
        self.host = host
        self.address = address
        self.port = port
        self.slot = slot
        self.weight = weight
    }

    /// `address:port` as nginx writes it in `$upstream_addr` (IPv6 in brackets).
    public var endpoint: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
}

/// One component behind the gateway: requests whose path starts with `path`
/// go to its upstream. Invariant: `servers` holds both slots of every host of
/// the region that runs the component, blue before green, hosts in region order.
public struct GatewayRoute: Codable, Sendable, Equatable {
    public var component: String
    /// A path prefix starting and ending with `/`, e.g. `/v1/`.
    public var path: String
    public var split: TrafficSplit
    public var servers: [GatewayUpstreamServer]

    public init(component: String, path: String, split: TrafficSplit, servers: [GatewayUpstreamServer]) {
        self.component = component
        self.path = path
        self.split = split
        self.servers = servers
    }

    /// The nginx upstream's name.
    public var upstream: String { "meridian_\(component)" }
}

/// The nginx configuration of one gateway host of a region, as a value; its
/// text is rendered in code (`text`), never through the template engine.
/// Invariant: every path in the text is relative to nginx's prefix
/// (`<root>/router/`, given with `-p`), so nothing nginx writes leaves the
/// host root, and the text does not depend on the root.
public struct GatewayConfig: Codable, Sendable, Equatable {
    /// Where the live configuration lives, relative to the host root.
    public static let path = "router/nginx.conf"
    /// nginx's prefix, relative to the host root.
    public static let prefix = "router/"
    /// The access log, relative to the host root (format `meridian-v1`).
    public static let accessLogPath = "router/logs/access.log"
    /// The error log, relative to the host root.
    public static let errorLogPath = "router/logs/error.log"
    /// The master's pid file, relative to the host root.
    public static let pidPath = "router/run/nginx.pid"
    /// The location that answers with the configuration's identity, only to the host itself.
    public static let identityLocation = "/.meridian/config"
    /// How many worker processes a gateway's nginx runs; a reload is
    /// confirmed only once no more than this many workers accept connections.
    public static let workerProcesses = 1
    public static let logFormatName = "meridian-v1"

    public var region: String
    public var host: String
    /// The gateway host's service address and the region's gateway port.
    public var listenAddress: String
    public var listenPort: Int
    /// Components with a route, in fleet order.
    public var routes: [GatewayRoute]
    /// The data-residency section (docs/residency.md), rendered by its own
    /// functions: maps and peer upstreams after the slot map, the check and
    /// its named locations at the top of the server block. Nil renders none.
    public var residency: GatewayResidency?

    public init(region: String, host: String, listenAddress: String, listenPort: Int, routes: [GatewayRoute], residency: GatewayResidency? = nil) {
        self.region = region
        self.host = host
        self.listenAddress = listenAddress
        self.listenPort = listenPort
        self.routes = routes
        self.residency = residency
    }

    /// The address a host's services are reached on from other hosts of its
    /// region (its `listen`, else its `address`); the gateway listens on its own.
    public static func serviceAddress(of host: FleetHost) -> String { host.serviceAddress }

    /// The configuration of `gateway` (a gateway host of `region`): a route
    /// for every component that declares one and runs on some host of the
    /// region, with `splits[component]` (all traffic on blue when absent).
    public static func forGateway(_ gateway: FleetHost, in region: Region, fleet: Fleet, splits: [String: TrafficSplit]) -> GatewayConfig {
        var routes: [GatewayRoute] = []
        for component in fleet.settings.components {
            guard let path = component.route else { continue }
            let hosts = region.hosts(running: component.name)
            guard !hosts.isEmpty else { continue }
            let split = splits[component.name] ?? .all(on: .blue)
            let servers = hosts.flatMap { host in
                Slot.allCases.map { slot in
                    GatewayUpstreamServer(host: host.name, address: serviceAddress(of: host), port: component.ports[slot], slot: slot, weight: split.weight(slot))
                }
            }
            routes.append(GatewayRoute(component: component.name, path: path, split: split, servers: servers))
        }
        return GatewayConfig(region: region.name, host: gateway.name, listenAddress: serviceAddress(of: gateway), listenPort: region.gatewayPort, routes: routes,
                             residency: GatewayResidency.forRegion(region, fleet: fleet, table: ResidencyCompiler.compile(fleet).0))
    }

    /// The script the residency section imports, written beside the
    /// configuration (`GatewayResidencyScript.path`); nil without a residency section.
    public var residencyScript: GatewayResidencyScript? { residency?.script }

    /// The configuration's identity: the SHA-256 of its text with the
    /// identity left out. The identity location answers with it, so meridian
    /// can tell which configuration a running nginx serves.
    public var identity: String { SHA256.hex(render(identity: "-")) }

    /// The nginx configuration file.
    public var text: String { render(identity: identity) }

    /// `listen` takes an IPv6 address in brackets (`geo` takes it bare).
    private var listenEndpoint: String {
        listenAddress.contains(":") ? "[\(listenAddress)]:\(listenPort)" : "\(listenAddress):\(listenPort)"
    }

    /// Whether `address` is an IP literal `geo` accepts (a DNS name is not).
    static func isIPLiteral(_ address: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, address, &v4) == 1 || inet_pton(AF_INET6, address, &v6) == 1
    }

    private func render(identity: String) -> String {
        var lines: [String] = []
        func add(_ indent: Int, _ line: String) { lines.append(line.isEmpty ? "" : String(repeating: "    ", count: indent) + line) }

        add(0, "# nginx configuration of the gateway of region \(region) on host \(host).")
        add(0, "# Written by meridian: an edit by hand is reported by `meridian drift` (gateway-config-modified)")
        add(0, "# and undone by the next apply. Paths are relative to the prefix <root>/router/ (nginx -p).")
        if residency != nil {
            // A path of Debian 12's package (docs/gateway.md): `hosts check` and apply name what to install when it is missing.
            add(0, "load_module \(NginxJavaScriptModule.path);")
        }
        add(0, "worker_processes \(Self.workerProcesses);")
        add(0, "pid run/nginx.pid;")
        add(0, "error_log logs/error.log notice;")
        add(0, "")
        add(0, "events {")
        add(1, "worker_connections 1024;")
        add(0, "}")
        add(0, "")
        add(0, "http {")
        add(1, "default_type application/octet-stream;")
        add(1, "server_tokens off;")
        add(1, "client_body_temp_path temp/client_body;")
        add(1, "proxy_temp_path temp/proxy;")
        add(1, "fastcgi_temp_path temp/fastcgi;")
        add(1, "uwsgi_temp_path temp/uwsgi;")
        add(1, "scgi_temp_path temp/scgi;")
        add(1, "")
        add(1, "# meridian-v1: one TAB-separated line per request (docs/gateway.md).")
        add(1, "log_format \(Self.logFormatName) escape=default '$msec\\t$meridian_component\\t$upstream_addr\\t$meridian_slot\\t$status\\t$request_time\\t$upstream_response_time';")
        add(1, "access_log logs/access.log \(Self.logFormatName);")
        add(1, "")
        add(1, "# Idle client connections are closed by nginx after this long, never by surprise mid-request.")
        add(1, "keepalive_timeout 30s;")
        add(1, "")
        add(1, "# The slot of the one server that answered; a retried request lists several and logs -.")
        add(1, "map $upstream_addr $meridian_slot {")
        add(2, "default -;")
        for route in routes {
            for server in route.servers {
                add(2, "\"\(server.endpoint)\" \(server.slot.rawValue);")
            }
        }
        add(1, "}")
        add(1, "")
        add(1, "# The host itself: loopback, and its own address (where SSH direct-tcpip connections come from).")
        add(1, "geo $meridian_local {")
        add(2, "default 0;")
        add(2, "127.0.0.1 1;")
        add(2, "::1 1;")
        if Self.isIPLiteral(listenAddress), listenAddress != "127.0.0.1", listenAddress != "::1" {
            add(2, "\(listenAddress) 1;")
        }
        add(1, "}")
        lines += residency?.httpLines() ?? []
        for route in routes {
            add(1, "")
            add(1, "# \(route.component): \(route.split)")
            add(1, "upstream \(route.upstream) {")
            add(2, "zone \(route.upstream) 64k;")
            for server in route.servers {
                let weight = server.weight == 0 ? "down" : "weight=\(server.weight)"
                add(2, "server \(server.endpoint) \(weight);  # \(server.host) \(server.slot.rawValue)")
            }
            add(2, "keepalive 16;")
            add(2, "keepalive_timeout 20s;")
            add(1, "}")
        }
        add(1, "")
        add(1, "server {")
        add(2, "listen \(listenEndpoint);")
        add(2, "set $meridian_component -;")
        lines += residency?.serverLines() ?? []
        add(2, "")
        add(2, "location = \(Self.identityLocation) {")
        add(3, "access_log off;")
        // `return` runs in the rewrite phase, before allow/deny would: the check is an `if` before it.
        add(3, "if ($meridian_local = 0) {")
        add(4, "return 403;")
        add(3, "}")
        add(3, "default_type text/plain;")
        add(3, "return 200 \"\(identity)\\n\";")
        add(2, "}")
        for route in routes {
            add(2, "")
            add(2, "location \(route.path) {")
            add(3, "set $meridian_component \(route.component);")
            add(3, "proxy_pass http://\(route.upstream);")
            add(3, "proxy_http_version 1.1;")
            add(3, "proxy_set_header Connection \"\";")
            add(3, "proxy_set_header Host $host;")
            add(3, "proxy_connect_timeout 2s;")
            add(3, "proxy_next_upstream error timeout;")
            add(3, "proxy_next_upstream_tries 3;")
            add(2, "}")
        }
        add(2, "")
        add(2, "location / {")
        add(3, "return 404;")
        add(2, "}")
        add(1, "}")
        add(0, "}")
        return lines.joined(separator: "\n") + "\n"
    }
}
