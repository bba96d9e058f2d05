import Foundation
import MeridianBasics
import MeridianModel

/// The data-residency section of one region's gateway configuration: for each
/// data jurisdiction, whether this region may process it and which other
/// regions' gateways to try, in routing-table order. Invariant: every region
/// in `routes[…].hops` is one the routing table lists for that data, never
/// `region` itself, and has an entry in `peers`; the rendered nginx text sends
/// a request nowhere else (docs/residency.md).
public struct GatewayResidency: Codable, Sendable, Equatable {
    /// The response header naming the region whose stack served the request.
    public static let servedByHeader = "X-Meridian-Served-By"
    /// The response header of a refusal: its reason token.
    public static let refusedHeader = "X-Meridian-Refused"
    /// The response header of a refusal: the region whose gateway refused.
    public static let refusedByHeader = "X-Meridian-Refused-By"
    /// The forwarding mark: a request carrying it is never forwarded again.
    /// Its value is the region whose gateway forwarded it.
    public static let markHeader = "X-Meridian-Forwarded"
    /// The response header of a forwarded request: the gateway that forwarded it.
    public static let forwardedByHeader = "X-Meridian-Forwarded-By"
    /// The response header of a non-idempotent request whose region failed
    /// after it was sent: the request was not sent anywhere else.
    public static let notReplayedHeader = "X-Meridian-Not-Replayed"
    /// The status nginx uses internally to jump to a named location; it never
    /// reaches a client (`ResidencySettings.reservedRefuseStatuses`).
    public static let jumpStatus = 599
    /// Methods RFC 9110 calls idempotent: only these are sent to another region
    /// after a region failed with the request already sent to it.
    public static let idempotentMethods = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]

    /// One data jurisdiction as this gateway routes it.
    public struct Route: Codable, Sendable, Equatable {
        public var data: Jurisdiction
        /// Whether this region's jurisdiction is allowed for the data.
        public var servesLocally: Bool
        /// The other allowed regions, in routing-table order.
        public var hops: [String]

        public init(data: Jurisdiction, servesLocally: Bool, hops: [String]) {
            self.data = data
            self.servesLocally = servesLocally
            self.hops = hops
        }
    }

    /// Another region's gateway: every gateway host's service address and the region's gateway port.
    public struct Peer: Codable, Sendable, Equatable {
        public var region: String
        public var endpoints: [String]

        public init(region: String, endpoints: [String]) {
            self.region = region
            self.endpoints = endpoints
        }

        static let upstreamPrefix = "meridian_region_"
        public var upstream: String { Self.upstreamPrefix + region }
    }

    /// Why a gateway refuses; the token is sent in `refusedHeader`.
    public enum Refusal: String, Codable, Sendable, CaseIterable {
        /// No header, and the fleet assumes no jurisdiction.
        case missingResidency = "missing-residency"
        /// The header is not exactly a jurisdiction code with a rule.
        case unknownJurisdiction = "unknown-jurisdiction"
        /// No allowed region could serve it.
        case noHealthyRegion = "no-healthy-region"
        /// A forwarded (marked) request reached a region not allowed for its data.
        case notAllowedHere = "not-allowed-here"
        /// A forwarded (marked) request reached an allowed region whose stack failed.
        case notServedHere = "not-served-here"
        /// Two residency header lines whose values differ after trimming.
        case conflictingJurisdictions = "conflicting-jurisdictions"

        var location: String { "@meridian_refuse_" + rawValue.replacingOccurrences(of: "-", with: "_") }
    }

    public var region: String
    /// The request header naming the data's jurisdiction.
    public var header: String
    public var refuseStatus: Int
    /// The jurisdiction a request without the header is treated as; nil refuses it.
    public var assumeWhenMissing: Jurisdiction?
    /// One per data jurisdiction of the routing table, in its order.
    public var routes: [Route]
    /// Every region some route's hops name, in name order.
    public var peers: [Peer]

    public init(region: String, header: String, refuseStatus: Int, assumeWhenMissing: Jurisdiction?, routes: [Route], peers: [Peer]) {
        self.region = region
        self.header = header
        self.refuseStatus = refuseStatus
        self.assumeWhenMissing = assumeWhenMissing
        self.routes = routes
        self.peers = peers
    }

    /// The section of region `local`'s gateways for `table`; nil when the
    /// fleet has no residency rule at all, so declares nothing to enforce
    /// (its gateways then route by path alone, and `validate` warns about
    /// every region's uncovered jurisdiction).
    public static func forRegion(_ local: Region, fleet: Fleet, table: RoutingTable) -> GatewayResidency? {
        guard !table.entries.isEmpty else { return nil }
        let routes = table.entries.map { entry in
            Route(data: entry.data, servesLocally: entry.admits(region: local.name),
                  hops: entry.regions.map(\.name).filter { $0 != local.name })
        }
        let named = Set(routes.flatMap(\.hops))
        let peers = fleet.regions
            .filter { named.contains($0.name) }
            .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            .map { region in
                Peer(region: region.name, endpoints: region.gateways.map { HostPort(GatewayConfig.serviceAddress(of: $0), region.gatewayPort).description })
            }
        return GatewayResidency(region: local.name, header: fleet.settings.residency.header,
                                refuseStatus: fleet.settings.residency.refuseStatus,
                                assumeWhenMissing: table.assumeWhenMissing, routes: routes, peers: peers)
    }

    /// The script that reads every residency header line of a request.
    public var script: GatewayResidencyScript { GatewayResidencyScript(header: header) }

    /// The nginx variable of a request header (`X-Data-Residency` → `$http_x_data_residency`).
    static func variable(ofHeader name: String) -> String {
        "$http_" + name.lowercased().replacingOccurrences(of: "-", with: "_")
    }

    /// The most hops any route has: the number of hop locations.
    var hopCount: Int { routes.map(\.hops.count).max() ?? 0 }

    static func hopLocation(_ k: Int) -> String { "@meridian_hop_\(k)" }

    /// Where a request goes after hop `k` (0: the local stack) failed.
    func afterFailure(_ route: Route, hop k: Int) -> String {
        k < route.hops.count ? Self.hopLocation(k + 1) : Refusal.noHealthyRegion.location
    }

    /// What the gateway does first with an unmarked (`marked == false`) or
    /// marked request for `route`: `local`, or the named location to jump to.
    func start(_ route: Route, marked: Bool) -> String {
        if route.servesLocally { return "local" }
        if marked { return Refusal.notAllowedHere.location }
        return route.hops.isEmpty ? Refusal.noHealthyRegion.location : Self.hopLocation(1)
    }

    /// The attempt just failed with the request sent, by a region that did not
    /// refuse it, and the method is not idempotent: sending it elsewhere could
    /// run it twice. Matched against `METHOD|$upstream_status|$upstream_bytes_sent`,
    /// whose last values are the last attempt's.
    var unsafeReplayPattern: String {
        let methods = Self.idempotentMethods.joined(separator: "|")
        return "^(?!(?:\(methods))\\|)[^|]*\\|(?:[^|]* )?(?!\(refuseStatus)\\|)[0-9]+\\|(?:[^|]* )?[1-9][0-9]*$"
    }

    /// Lines inside `http { }`, after the slot map and before the server block.
    func httpLines() -> [String] {
        var out = NginxLines(indent: 1)
        out.add("")
        out.add("# Data residency (docs/residency.md). Every \(header) line of the request, each without the spaces and tabs")
        out.add("# around it, read by \(script.fileName) (nginx shows only the first line to $http_ variables):")
        out.add("# \(GatewayResidencyScript.none), \(GatewayResidencyScript.valuePrefix)VALUE when every line says VALUE, or \(GatewayResidencyScript.conflict) when two differ.")
        out.add("js_import \(GatewayResidencyScript.module) from \(script.fileName);")
        out.add("js_set $meridian_residency_lines \(GatewayResidencyScript.module).\(GatewayResidencyScript.function);")
        out.add("# The data's jurisdiction, matched exactly (case-sensitive regexes; a map's plain strings would ignore case).")
        out.add("map $meridian_residency_lines $meridian_data {")
        let missing = assumeWhenMissing?.code ?? "-missing"
        out.add(1, "\(GatewayResidencyScript.none) \(missing);")
        out.add(1, "\(GatewayResidencyScript.valuePrefix) \(missing);")
        out.add(1, "\(GatewayResidencyScript.conflict) -conflict;")
        for route in routes { out.add(1, "\"~^\(GatewayResidencyScript.valuePrefix)\(route.data.code)$\" \(route.data.code);") }
        out.add(1, "default -unknown;")
        out.add("}")
        out.add("# The forwarding mark: a request another gateway forwarded is never forwarded again.")
        out.add("map \(Self.variable(ofHeader: Self.markHeader)) $meridian_marked {")
        out.add(1, "\"\" 0;")
        out.add(1, "default 1;")
        out.add("}")
        out.add("# The gateway's own location carries no data and no residency header.")
        out.add("map $uri $meridian_own {")
        out.add(1, "~^\(NSRegularExpression.escapedPattern(for: GatewayConfig.identityLocation))$ 1;")
        out.add(1, "default 0;")
        out.add("}")
        out.add("# First step, keyed own|marked|data: serve here (local), or the named location to go to.")
        out.add("map \"$meridian_own|$meridian_marked|$meridian_data\" $meridian_residency {")
        out.add(1, "~^1\\| local;")
        for marked in ["0", "1"] {
            out.add(1, "\"0|\(marked)|-missing\" \(Refusal.missingResidency.location);")
            out.add(1, "\"0|\(marked)|-unknown\" \(Refusal.unknownJurisdiction.location);")
            out.add(1, "\"0|\(marked)|-conflict\" \(Refusal.conflictingJurisdictions.location);")
        }
        for route in routes {
            out.add(1, "\"0|0|\(route.data.code)\" \(start(route, marked: false));")
            out.add(1, "\"0|1|\(route.data.code)\" \(start(route, marked: true));")
        }
        out.add(1, "default \(Refusal.unknownJurisdiction.location);")
        out.add("}")
        out.add("# After the local stack failed: the first other allowed region; a marked request is refused instead.")
        out.add("map \"$meridian_marked|$meridian_data\" $meridian_after_0 {")
        for route in routes where route.servesLocally {
            out.add(1, "\"0|\(route.data.code)\" \(afterFailure(route, hop: 0));")
            out.add(1, "\"1|\(route.data.code)\" \(Refusal.notServedHere.location);")
        }
        out.add(1, "default \(Refusal.noHealthyRegion.location);")
        out.add("}")
        for k in stride(from: 1, through: hopCount, by: 1) {
            out.add("# Hop \(k): the region tried, and where to go when it fails or cannot serve it.")
            out.add("map $meridian_data $meridian_hop_\(k) {")
            for route in routes where route.hops.count >= k {
                out.add(1, "\(route.data.code) \(route.hops[k - 1]);")
            }
            out.add(1, "default \"\";")
            out.add("}")
            out.add("map $meridian_data $meridian_after_\(k) {")
            for route in routes where route.hops.count >= k {
                out.add(1, "\(route.data.code) \(afterFailure(route, hop: k));")
            }
            out.add(1, "default \(Refusal.noHealthyRegion.location);")
            out.add("}")
        }
        for peer in peers {
            out.add("# The gateway of \(peer.region), tried again at once after a failure (max_fails=0).")
            out.add("upstream \(peer.upstream) {")
            out.add(1, "zone \(peer.upstream) 64k;")
            for endpoint in peer.endpoints { out.add(1, "server \(endpoint) max_fails=0;") }
            out.add(1, "keepalive 8;")
            out.add(1, "keepalive_timeout 20s;")
            out.add("}")
        }
        return out.lines
    }

    /// Lines inside `server { }`, before its locations.
    func serverLines() -> [String] {
        var out = NginxLines(indent: 2)
        let refuse = refuseStatus
        out.add("")
        out.add("# Data residency: every request is checked before a location serves it (server-level rewrites run first).")
        out.add("recursive_error_pages on;")
        out.add("add_header \(Self.servedByHeader) \(region) always;")
        out.add("proxy_hide_header \(Self.servedByHeader);")
        out.add("# The local stack failed (nginx could not reach a slot): try the next allowed region.")
        out.add("error_page 502 504 = @meridian_after_0;")
        out.add("error_page \(Self.jumpStatus) = $meridian_residency;")
        out.add("if ($meridian_residency != local) {")
        out.add(1, "return \(Self.jumpStatus);")
        out.add("}")
        for k in stride(from: 0, through: hopCount, by: 1) {
            out.add("")
            out.add("location @meridian_after_\(k) {")
            // Its own error_page list: the server's 502 page must not catch the not-replayed answer.
            out.add(1, "error_page \(Self.jumpStatus) = $meridian_after_\(k);")
            out.add(1, "set $meridian_attempt \"$request_method|$upstream_status|$upstream_bytes_sent\";")
            out.add(1, "if ($meridian_attempt ~ \"\(unsafeReplayPattern)\") {")
            out.add(2, "add_header \(Self.notReplayedHeader) \(k == 0 ? region : "$meridian_hop_\(k)") always;")
            out.add(2, "return 502 \"the region failed after the request was sent: a $request_method request is not sent to another region\\n\";")
            out.add(1, "}")
            out.add(1, "return \(Self.jumpStatus);")
            out.add("}")
        }
        for k in stride(from: 1, through: hopCount, by: 1) {
            out.add("")
            out.add("location \(Self.hopLocation(k)) {")
            out.add(1, "proxy_pass http://\(Peer.upstreamPrefix)$meridian_hop_\(k);")
            out.add(1, "proxy_http_version 1.1;")
            out.add(1, "proxy_set_header Connection \"\";")
            out.add(1, "proxy_set_header Host $host;")
            out.add(1, "proxy_set_header \(Self.markHeader) \(region);")
            out.add(1, "proxy_hide_header \(Self.forwardedByHeader);")
            out.add(1, "proxy_connect_timeout 2s;")
            out.add(1, "proxy_next_upstream error timeout;")
            out.add(1, "proxy_intercept_errors on;")
            out.add(1, "error_page \(refuse) 502 504 = @meridian_after_\(k);")
            out.add(1, "add_header \(Self.forwardedByHeader) \(region) always;")
            out.add("}")
        }
        for refusal in Refusal.allCases {
            out.add("")
            out.add("location \(refusal.location) {")
            out.add(1, "default_type text/plain;")
            out.add(1, "add_header \(Self.refusedHeader) \(refusal.rawValue) always;")
            out.add(1, "add_header \(Self.refusedByHeader) \(region) always;")
            out.add(1, "return \(refuse) \"refused by the gateway of \(region): \(refusal.rawValue)\\n\";")
            out.add("}")
        }
        return out.lines
    }
}

/// The njs script a gateway's residency section imports: one function that
/// reads every line of the residency header as received (`r.rawHeadersIn`),
/// trims spaces and tabs around each, and says `none`, `value:V` when every
/// line says V, or `conflict` when two differ. Invariant: its file name holds
/// the SHA-256 of its text, so a new script never overwrites the one a running
/// nginx was started with, and the configuration naming it is the one swap.
public struct GatewayResidencyScript: Sendable, Equatable {
    public static let module = "meridian_residency"
    public static let function = "lines"
    public static let none = "none"
    public static let valuePrefix = "value:"
    public static let conflict = "conflict"
    /// Every script's path relative to the host root starts with this and ends with `suffix`.
    public static let pathPrefix = GatewayConfig.prefix + "residency-"
    public static let suffix = ".js"

    /// The header, as received in any case (letters, digits and `-`, as `validate` requires).
    public var header: String

    public init(header: String) { self.header = header }

    /// Whether `path` (relative to the host root) is a residency script's.
    public static func isScriptPath(_ path: String) -> Bool {
        path.hasPrefix(pathPrefix) && path.hasSuffix(suffix) && !path.dropFirst(pathPrefix.count).contains("/")
    }

    public var text: String {
        let name = header.lowercased().filter { $0.isLetter || $0.isNumber || $0 == "-" }
        return """
        // Written by meridian (docs/residency.md): the \(header) lines of a request, for the gateway's
        // $meridian_residency_lines. An edit by hand is reported by `meridian drift` (gateway-config-modified).
        function \(Self.function)(r) {
            var seen = null;
            var received = r.rawHeadersIn;
            for (var i = 0; i < received.length; i++) {
                if (received[i][0].toLowerCase() !== '\(name)') { continue; }
                var value = received[i][1].replace(/^[ \\t]+|[ \\t]+$/g, '');
                if (seen === null) { seen = value; } else if (seen !== value) { return '\(Self.conflict)'; }
            }
            return seen === null ? '\(Self.none)' : '\(Self.valuePrefix)' + seen;
        }
        export default { \(Self.function): \(Self.function) };

        """
    }

    /// `residency-<first 16 hex digits of the text's SHA-256>.js`.
    public var fileName: String { "residency-" + SHA256.hex(text).prefix(16) + Self.suffix }

    /// Relative to the host root.
    public var path: String { GatewayConfig.prefix + fileName }
}

/// Lines of nginx configuration at one block depth, four spaces per level.
struct NginxLines {
    let indent: Int
    var lines: [String] = []

    mutating func add(_ line: String) { add(0, line) }

    mutating func add(_ extra: Int, _ line: String) {
        lines.append(line.isEmpty ? "" : String(repeating: "    ", count: indent + extra) + line)
    }
}
