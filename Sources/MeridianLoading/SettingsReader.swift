import Foundation
import MeridianBasics
import MeridianModel
import Yams

/// Reads `meridian.yaml` into `FleetSettings`, with defaults for what is unset.
enum SettingsReader {
    static let keys = ["version", "name", "defaults", "components", "platform", "waves", "residency", "state"]

    static func read(_ node: Node, _ r: inout NodeReader) -> FleetSettings? {
        guard let top = r.mapping(node, "", known: keys, required: ["name", "components"], what: "a mapping with name, defaults, components, platform, waves and residency") else { return nil }
        if let version = top["version"], let number = r.integer(version, "version", in: 1...1000), number != 1 {
            r.error(version, "version", "this meridian reads fleet format version 1, the file says \(number): upgrade meridian")
        }
        let name = top["name"].flatMap { r.name($0, "name", what: "a fleet name") } ?? ""
        let defaults = top["defaults"].map { readDefaults($0, &r) } ?? FleetDefaults()
        var components: [Component] = []
        if let node = top["components"], let entries = r.dictionary(node, "components") {
            if entries.isEmpty { r.error(node, "components", "declare at least one component (inference, knowledge-base, …)") }
            for entry in entries {
                let path = NodeReader.join("components", entry.key)
                guard NodeReader.isName(entry.key) else {
                    r.error(entry.keyNode, path, "component names are lower-case letters, digits, '-' and '_', got \"\(entry.key)\"")
                    continue
                }
                if entry.key == "gateway" {
                    r.error(entry.keyNode, path, "\"gateway\" is a host role of its own, not a component name: rename the component")
                    continue
                }
                if let component = readComponent(entry.key, entry.value, path, &r) { components.append(component) }
            }
        }
        var platform: [String: Version] = [:]
        if let node = top["platform"], let entries = r.dictionary(node, "platform") {
            for entry in entries {
                if let version = r.version(entry.value, NodeReader.join("platform", entry.key)) { platform[entry.key] = version }
            }
        }
        var waves: [Wave] = []
        if let node = top["waves"], let items = r.sequence(node, "waves") {
            for (i, item) in items.enumerated() {
                if let wave = readWave(item, NodeReader.index("waves", i), &r) { waves.append(wave) }
            }
        }
        let residency = top["residency"].map { readResidency($0, &r) } ?? ResidencySettings()
        let state = top["state"].flatMap { readState($0, &r) }
        return FleetSettings(name: name, defaults: defaults, components: components, platform: platform, waves: waves, residency: residency, state: state)
    }

    /// `state: .meridian/state.db`, `state: postgresql://…`, or
    /// `state: {url: postgresql://…, password: env:NAME}`. A fleet file is
    /// shared and reviewed in the open: a password written into it is refused,
    /// and its value is never repeated in a message.
    static func readState(_ node: Node, _ r: inout NodeReader) -> StateSetting? {
        var locationNode = node
        var password: SecretReference?
        var path = "state"
        if case .mapping = node {
            path = "state.url"
            guard let map = r.mapping(node, "state", known: ["url", "password"], required: ["url"], what: "a mapping with url and password") else { return nil }
            guard let url = map["url"] else { return nil }
            locationNode = url
            if let secret = map["password"] {
                guard let text = r.nonEmptyString(secret, "state.password", what: "a secret reference") else { return nil }
                guard let reference = SecretReference(parsing: text) else {
                    r.error(secret, "state.password", "expected a secret reference (env:NAME or file:PATH), not a password: never write the password itself into a fleet file")
                    return nil
                }
                password = reference
            }
        }
        guard case .scalar(let scalar) = locationNode, !scalar.string.isEmpty else {
            r.error(locationNode, path, "expected a SQLite file inside the fleet (e.g. .meridian/state.db) or a postgresql:// URL")
            return nil
        }
        let text = scalar.string
        if PostgresURL.isPostgresURL(text) {
            switch PostgresURL.parse(text) {
            case .failure(let problem):
                r.error(locationNode, path, "\(problem)")
                return nil
            case .success(let url):
                if url.password != nil {
                    r.error(locationNode, path, "the URL holds a password in clear (\(url.redacted)): remove it and give state.password: env:NAME, or set PGPASSWORD or ~/.pgpass where meridian runs")
                    return nil
                }
                return StateSetting(location: text, password: password)
            }
        }
        if password != nil {
            r.error(locationNode, path, "a password only applies to a postgresql:// URL; a SQLite file needs none")
            return nil
        }
        guard HostPaths.isRelativeClean(text) else {
            r.error(locationNode, path, "a SQLite state file must be a relative path inside the fleet repository without '..' (e.g. .meridian/state.db); to keep it elsewhere pass --state or set MERIDIAN_STATE")
            return nil
        }
        return StateSetting(location: text)
    }

    /// The names under `components:`, whether or not their declarations are valid.
    static func declaredComponentNames(in node: Node?) -> Set<String> {
        guard case .mapping(let top)? = node, case .mapping(let components)? = top["components"] else { return [] }
        return Set(components.keys.compactMap(\.string))
    }

    static func readDefaults(_ node: Node, _ r: inout NodeReader) -> FleetDefaults {
        var defaults = FleetDefaults()
        guard let map = r.mapping(node, "defaults", known: ["ssh", "root", "parallelism", "grace_period"]) else { return defaults }
        if let ssh = map["ssh"] { defaults.ssh = readSSH(ssh, &r) }
        if let root = map["root"], let text = r.nonEmptyString(root, "defaults.root") {
            if HostPaths.isAbsoluteClean(text) { defaults.root = text }
            else { r.error(root, "defaults.root", "expected an absolute path without '..' such as /srv/meridian, got \"\(text)\"") }
        }
        if let parallelism = map["parallelism"], let value = r.integer(parallelism, "defaults.parallelism", in: 1...1024) {
            defaults.parallelism = value
        }
        if let grace = map["grace_period"], let value = r.duration(grace, "defaults.grace_period") { defaults.gracePeriod = value }
        return defaults
    }

    static func readSSH(_ node: Node, _ r: inout NodeReader) -> SSHSettings {
        var ssh = SSHSettings()
        let keys = ["user", "port", "identity", "passphrase_env", "agent", "known_hosts", "connect_timeout", "command_timeout", "keepalive"]
        guard let map = r.mapping(node, "defaults.ssh", known: keys) else { return ssh }
        let p = "defaults.ssh"
        if let n = map["user"], let v = r.nonEmptyString(n, "\(p).user") { ssh.user = v }
        if let n = map["port"], let v = r.integer(n, "\(p).port", in: 1...65535) { ssh.port = v }
        if let n = map["identity"], let v = r.stringOrList(n, "\(p).identity") { ssh.identities = v }
        if let n = map["passphrase_env"], let v = r.nonEmptyString(n, "\(p).passphrase_env") { ssh.passphraseEnv = v }
        if let n = map["agent"], let v = r.boolean(n, "\(p).agent") { ssh.agent = v }
        if let n = map["known_hosts"], let v = r.nonEmptyString(n, "\(p).known_hosts") { ssh.knownHosts = v }
        if let n = map["connect_timeout"], let v = r.duration(n, "\(p).connect_timeout") { ssh.connectTimeout = v }
        if let n = map["command_timeout"], let v = r.duration(n, "\(p).command_timeout") { ssh.commandTimeout = v }
        if let n = map["keepalive"], let v = r.duration(n, "\(p).keepalive") { ssh.keepalive = v }
        return ssh
    }

    static func readComponent(_ name: String, _ node: Node, _ path: String, _ r: inout NodeReader) -> Component? {
        let keys = ["artifact", "start", "ports", "health", "smoke", "strategy", "canary", "route"]
        guard let map = r.mapping(node, path, known: keys, required: ["artifact", "start", "ports"]) else { return nil }
        var artifact: ArtifactSource?
        if let n = map["artifact"] { artifact = readArtifact(n, NodeReader.join(path, "artifact"), &r) }
        var start: [String]?
        if let n = map["start"] {
            start = r.stringList(n, NodeReader.join(path, "start"), what: "the start command as a list of arguments, e.g. [bin/serve, --port, \"{port}\"]")
            if start?.isEmpty == true { r.error(n, NodeReader.join(path, "start"), "the start command needs at least the program to run") ; start = nil }
            for (i, word) in (start ?? []).enumerated() {
                for placeholder in Component.placeholders(in: word) where !Component.startPlaceholders.contains(placeholder) {
                    var message = "unknown placeholder {\(placeholder)}: the start command can use \(Component.startPlaceholders.map { "{\($0)}" }.joined(separator: ", "))"
                    if let s = Suggestion.closest(to: placeholder, among: Component.startPlaceholders) { message += "; did you mean {\(s)}?" }
                    r.error(nil, NodeReader.index(NodeReader.join(path, "start"), i), message)
                }
            }
        }
        var ports: SlotPorts?
        if let n = map["ports"] { ports = readPorts(n, NodeReader.join(path, "ports"), &r) }
        var component = Component(name: name, artifact: artifact ?? .path(""), start: start ?? [], ports: ports ?? SlotPorts(blue: 0, green: 0))
        if let n = map["health"], let v = r.nonEmptyString(n, NodeReader.join(path, "health")) {
            if isRequestPath(v) { component.health = v }
            else { r.error(n, NodeReader.join(path, "health"), "expected an HTTP path starting with '/' without spaces (write %20), got \"\(v)\"") }
        }
        if let n = map["smoke"], let items = r.sequence(n, NodeReader.join(path, "smoke")) {
            for (i, item) in items.enumerated() {
                if let probe = readProbe(item, NodeReader.index(NodeReader.join(path, "smoke"), i), &r) { component.smoke.append(probe) }
            }
        }
        if let n = map["strategy"], let v = r.string(n, NodeReader.join(path, "strategy"), what: "a rollout strategy") {
            if let strategy = RolloutStrategy(rawValue: v) { component.strategy = strategy }
            else {
                let names = RolloutStrategy.allCases.map(\.rawValue)
                var message = "expected one of \(names.joined(separator: ", ")), got \"\(v)\""
                if let s = Suggestion.closest(to: v, among: names) { message += "; did you mean \"\(s)\"?" }
                r.error(n, NodeReader.join(path, "strategy"), message)
            }
        }
        if let n = map["canary"] { component.canary = readCanary(n, NodeReader.join(path, "canary"), &r) }
        if let n = map["route"], let v = r.nonEmptyString(n, NodeReader.join(path, "route")) {
            if let problem = GatewayRoutes.problem(v) { r.error(n, NodeReader.join(path, "route"), problem) }
            else { component.route = v }
        }
        guard artifact != nil, start != nil, ports != nil else { return nil }
        return component
    }

    static func readArtifact(_ node: Node, _ path: String, _ r: inout NodeReader) -> ArtifactSource? {
        if case .scalar = node {
            guard let text = r.nonEmptyString(node, path, what: "an artifact path or {url, sha256}") else { return nil }
            guard HostPaths.isRelativeClean(text) else {
                r.error(node, path, "expected a path inside the fleet repository such as artifacts/inference-{version}.tar.gz, got \"\(text)\"")
                return nil
            }
            return .path(text)
        }
        guard let map = r.mapping(node, path, known: ["url", "sha256"], required: ["url", "sha256"], what: "an artifact path or {url, sha256}") else { return nil }
        var url: String?
        if let n = map["url"], let v = r.nonEmptyString(n, NodeReader.join(path, "url")) {
            if v.hasPrefix("https://") || v.hasPrefix("http://") { url = v }
            else { r.error(n, NodeReader.join(path, "url"), "expected an http:// or https:// URL, got \"\(v)\"") }
        }
        var hashes: [String: String] = [:]
        if let n = map["sha256"], let entries = r.dictionary(n, NodeReader.join(path, "sha256")) {
            for entry in entries {
                let p = NodeReader.join(NodeReader.join(path, "sha256"), entry.key)
                if Version(entry.key) == nil { r.error(entry.keyNode, p, "expected a version such as 2.3.1 as the key, got \"\(entry.key)\"") }
                if let hash = r.string(entry.value, p, what: "a SHA-256 in hex") {
                    if hash.count == 64, hash.allSatisfy(\.isHexDigit) { hashes[entry.key] = hash.lowercased() }
                    else { r.error(entry.value, p, "expected a SHA-256 of 64 hex digits, got \"\(hash)\"") }
                }
            }
        }
        return url.map { .url($0, sha256: hashes) }
    }

    static func readPorts(_ node: Node, _ path: String, _ r: inout NodeReader) -> SlotPorts? {
        guard let map = r.mapping(node, path, known: ["blue", "green"], required: ["blue", "green"], what: "a mapping with a blue and a green port") else { return nil }
        let blue = map["blue"].flatMap { r.integer($0, NodeReader.join(path, "blue"), in: 1...65535) }
        let green = map["green"].flatMap { r.integer($0, NodeReader.join(path, "green"), in: 1...65535) }
        guard let blue, let green else { return nil }
        return SlotPorts(blue: blue, green: green)
    }

    /// A path (and query) meridian can send as it is on a request line.
    static func isRequestPath(_ text: String) -> Bool {
        text.hasPrefix("/") && !text.unicodeScalars.contains { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f }
    }

    static func readProbe(_ node: Node, _ path: String, _ r: inout NodeReader) -> SmokeProbe? {
        guard let map = r.mapping(node, path, known: ["name", "method", "path", "expect_status", "expect_body"], required: ["path"]) else { return nil }
        guard let probePath = map["path"].flatMap({ r.nonEmptyString($0, NodeReader.join(path, "path")) }) else { return nil }
        guard isRequestPath(probePath) else {
            r.error(map["path"], NodeReader.join(path, "path"), "expected an HTTP path starting with '/' without spaces (write %20), got \"\(probePath)\"")
            return nil
        }
        var probe = SmokeProbe(name: probePath, path: probePath)
        if let n = map["name"], let v = r.nonEmptyString(n, NodeReader.join(path, "name")) { probe.name = v }
        if let n = map["method"], let v = r.nonEmptyString(n, NodeReader.join(path, "method")) {
            if ["GET", "HEAD", "POST"].contains(v) { probe.method = v }
            else { r.error(n, NodeReader.join(path, "method"), "expected GET, HEAD or POST, got \"\(v)\"") }
        }
        if let n = map["expect_status"], let v = r.integer(n, NodeReader.join(path, "expect_status"), in: 100...599) { probe.expectStatus = v }
        if let n = map["expect_body"], let v = r.string(n, NodeReader.join(path, "expect_body")) { probe.expectBodyContains = v }
        return probe
    }

    static func readCanary(_ node: Node, _ path: String, _ r: inout NodeReader) -> CanarySettings {
        var canary = CanarySettings()
        guard let map = r.mapping(node, path, known: ["steps", "pause", "analysis", "inconclusive"]) else { return canary }
        if let n = map["steps"], let items = r.sequence(n, NodeReader.join(path, "steps"), what: "a list of traffic percentages such as [10, 50, 100]") {
            var steps: [Int] = []
            for (i, item) in items.enumerated() {
                let p = NodeReader.index(NodeReader.join(path, "steps"), i)
                guard let weight = r.integer(item, p, in: 1...100, what: "a traffic percentage") else { continue }
                if let last = steps.last, weight <= last {
                    r.error(item, p, "canary weights must increase step by step: \(weight) follows \(last)")
                }
                steps.append(weight)
            }
            if items.isEmpty { r.error(n, NodeReader.join(path, "steps"), "a canary needs at least one step, e.g. [10, 50, 100]") }
            canary.steps = steps
        }
        if let n = map["pause"], let v = r.duration(n, NodeReader.join(path, "pause")) { canary.pause = v }
        if let n = map["analysis"] {
            let p = NodeReader.join(path, "analysis")
            let keys = ["max_error_rate", "max_p99_latency", "min_requests", "max_error_rate_increase", "max_latency_ratio", "confidence"]
            if let a = r.mapping(n, p, known: keys) {
                if let n = a["max_error_rate"], let v = r.number(n, NodeReader.join(p, "max_error_rate"), in: 0...1) { canary.analysis.maxErrorRate = v }
                if let n = a["max_p99_latency"], let v = r.duration(n, NodeReader.join(p, "max_p99_latency")) { canary.analysis.maxP99Latency = v }
                if let n = a["min_requests"], let v = r.integer(n, NodeReader.join(p, "min_requests"), in: 1...10_000_000) { canary.analysis.minRequests = v }
                if let n = a["max_error_rate_increase"], let v = r.number(n, NodeReader.join(p, "max_error_rate_increase"), in: 0...1) { canary.analysis.maxErrorRateIncrease = v }
                if let n = a["max_latency_ratio"], let v = r.number(n, NodeReader.join(p, "max_latency_ratio"), in: 1...1000) { canary.analysis.maxLatencyRatio = v }
                if let n = a["confidence"], let v = r.number(n, NodeReader.join(p, "confidence"), in: 0.5...0.9999) { canary.analysis.confidence = v }
            }
        }
        if let n = map["inconclusive"] { canary.inconclusive = readInconclusive(n, NodeReader.join(path, "inconclusive"), &r) }
        return canary
    }

    static func readInconclusive(_ node: Node, _ path: String, _ r: inout NodeReader) -> InconclusiveHandling {
        var handling = InconclusiveHandling()
        guard let map = r.mapping(node, path, known: ["wait", "then"], what: "a mapping such as { wait: 5m, then: hold }") else { return handling }
        if let n = map["wait"], let v = r.duration(n, NodeReader.join(path, "wait")) {
            if v <= .seconds(86_400) { handling.wait = v }
            else { r.error(n, NodeReader.join(path, "wait"), "expected at most 1d of extra waiting, got \(DurationText.format(v)): use then: hold to leave a step to an operator") }
        }
        if let n = map["then"], let v = r.string(n, NodeReader.join(path, "then"), what: "fail or hold") {
            if let outcome = InconclusiveOutcome(rawValue: v) { handling.then = outcome }
            else {
                let names = InconclusiveOutcome.allCases.map(\.rawValue)
                var message = "expected fail (roll back) or hold (wait for meridian rollout promote), got \"\(v)\""
                if let s = Suggestion.closest(to: v, among: names) { message += "; did you mean \"\(s)\"?" }
                r.error(n, NodeReader.join(path, "then"), message)
            }
        }
        return handling
    }

    static func readWave(_ node: Node, _ path: String, _ r: inout NodeReader) -> Wave? {
        guard let map = r.mapping(node, path, known: ["name", "regions", "approval", "parallelism"], required: ["name", "regions"]) else { return nil }
        let name = map["name"].flatMap { r.name($0, NodeReader.join(path, "name"), what: "a wave name") }
        let regions = map["regions"].flatMap { r.stringList($0, NodeReader.join(path, "regions"), what: "a list of region names") }
        guard let name, let regions else { return nil }
        var wave = Wave(name: name, regions: regions)
        if let n = map["approval"], let v = r.boolean(n, NodeReader.join(path, "approval")) { wave.approval = v }
        if let n = map["parallelism"], let v = r.integer(n, NodeReader.join(path, "parallelism"), in: 1...1024) { wave.parallelism = v }
        return wave
    }

    static func readResidency(_ node: Node, _ r: inout NodeReader) -> ResidencySettings {
        var settings = ResidencySettings()
        guard let map = r.mapping(node, "residency", known: ["header", "missing", "refuse_status"]) else { return settings }
        if let n = map["header"], let v = r.nonEmptyString(n, "residency.header") {
            if v.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) { settings.header = v }
            else { r.error(n, "residency.header", "expected an HTTP header name of letters, digits and '-', got \"\(v)\"") }
        }
        if let n = map["missing"], let v = r.nonEmptyString(n, "residency.missing") {
            if v == "refuse" { settings.missing = .refuse }
            else if let j = Jurisdiction(v) { settings.missing = .assume(j) }
            else { r.error(n, "residency.missing", "expected \"refuse\" or a jurisdiction code to assume such as EU, got \"\(v)\"") }
        }
        if let n = map["refuse_status"], let v = r.integer(n, "residency.refuse_status", in: 400...599, what: "an HTTP error status") { settings.refuseStatus = v }
        return settings
    }
}

/// Path rules for files meridian writes on hosts and reads in the fleet.
/// What a component's `route` may be: a path prefix the gateway's nginx can
/// take as a location without quoting.
public enum GatewayRoutes {
    /// Paths under this prefix are the gateway's own.
    public static let reserved = "/.meridian/"

    /// Nil when `route` is acceptable, else the sentence that says why not.
    public static func problem(_ route: String) -> String? {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        let segments = route.split(separator: "/", omittingEmptySubsequences: false).dropFirst().dropLast()
        guard route.count >= 3, route.hasPrefix("/"), route.hasSuffix("/"),
              segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." && $0.allSatisfy(allowed.contains) })
        else {
            return "expected a path prefix that starts and ends with '/', such as /v1/, made of letters, digits, '-', '.', '_' and '~', got \"\(route)\""
        }
        if route.hasPrefix(reserved) { return "paths under \(reserved) are the gateway's own: choose another route than \"\(route)\"" }
        return nil
    }
}

public enum HostPaths {
    /// An absolute path with no `.`, `..` or empty components.
    public static func isAbsoluteClean(_ path: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        return path == "/" || components(path.dropFirst()).allSatisfy(isPlainComponent)
    }

    /// A relative path that stays inside its base: no leading '/', no `..`, `.` or empty components.
    public static func isRelativeClean(_ path: String) -> Bool {
        guard !path.isEmpty, !path.hasPrefix("/") else { return false }
        return components(Substring(path)).allSatisfy(isPlainComponent)
    }

    static func components(_ path: Substring) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: false)
    }

    static func isPlainComponent(_ component: Substring) -> Bool {
        !component.isEmpty && component != "." && component != ".." && !component.contains("\0") && !component.contains("\n")
    }
}
