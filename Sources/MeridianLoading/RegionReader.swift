import Foundation
import MeridianBasics
import MeridianModel
import Yams

/// Reads one `regions/NAME.yaml` into a `Region`.
enum RegionReader {
    static let keys = ["name", "jurisdiction", "gateway", "priority", "hosts", "variables", "config", "policies", "versions"]

    /// The region, and whether it is complete enough to join the fleet (its
    /// jurisdiction read); an incomplete one is still cross-checked.
    static func read(_ node: Node, stem: String, _ r: inout NodeReader) -> (region: Region, complete: Bool)? {
        guard let top = r.mapping(node, "", known: keys, required: ["jurisdiction", "hosts"], what: "a region: a mapping with jurisdiction, hosts, …") else { return nil }
        var name = stem
        if let n = top["name"], let v = r.name(n, "name", what: "a region name") {
            name = v
            if v != stem { r.warning(n, "name", "region \"\(v)\" is declared in a file named \(stem).yaml: rename one so they match") }
        } else if top["name"] == nil, !NodeReader.isName(stem) {
            r.error(node, "name", "the file name \"\(stem)\" is not a valid region name: rename the file or set name:")
        }
        let jurisdiction = top["jurisdiction"].flatMap { r.jurisdiction($0, "jurisdiction") }
        var gatewayPort = 8080
        if let n = top["gateway"], let map = r.mapping(n, "gateway", known: ["port"], required: ["port"]) {
            if let p = map["port"], let v = r.integer(p, "gateway.port", in: 1...65535) { gatewayPort = v }
        }
        var priority = 100
        if let n = top["priority"], let v = r.integer(n, "priority", in: 0...10_000) { priority = v }
        var hosts: [FleetHost] = []
        if let n = top["hosts"], let items = r.sequence(n, "hosts", what: "a list of hosts") {
            if items.isEmpty { r.error(n, "hosts", "a region needs at least one host") }
            for (i, item) in items.enumerated() {
                if let host = readHost(item, NodeReader.index("hosts", i), &r) { hosts.append(host) }
            }
        }
        var variables: [String: VariableValue] = [:]
        if let n = top["variables"], let entries = r.dictionary(n, "variables") {
            for entry in entries {
                let path = NodeReader.join("variables", entry.key)
                guard isVariableName(entry.key) else {
                    r.error(entry.keyNode, path, "variable names are letters, digits and '_', starting with a letter, got \"\(entry.key)\"")
                    continue
                }
                guard let text = r.string(entry.value, path, what: "a string, number or boolean") else { continue }
                let value = VariableValue(text)
                checkSecretReference(text, entry.value, path, &r)
                if case .plain = value, looksSecret(entry.key), !text.isEmpty, !text.hasPrefix("env:"), !text.hasPrefix("file:") {
                    r.warning(entry.value, path, "\"\(entry.key)\" looks like a secret written into the fleet: reference it instead with env:NAME or file:PATH")
                }
                variables[entry.key] = value
            }
        }
        var configFiles: [ConfigFile] = []
        if let n = top["config"], let items = r.sequence(n, "config", what: "a list of config files") {
            for (i, item) in items.enumerated() {
                if let file = readConfigFile(item, NodeReader.index("config", i), &r) { configFiles.append(file) }
            }
        }
        var policies: [String] = []
        if let n = top["policies"], let names = r.stringList(n, "policies", what: "a list of policy names") {
            policies = names
        }
        var versions: [String: Version] = [:]
        if let n = top["versions"], let entries = r.dictionary(n, "versions") {
            for entry in entries {
                if let v = r.version(entry.value, NodeReader.join("versions", entry.key)) { versions[entry.key] = v }
            }
        }
        let region = Region(name: name, file: r.file, jurisdiction: jurisdiction ?? Jurisdiction(unchecked: "?"), gatewayPort: gatewayPort, priority: priority, hosts: hosts, variables: variables, configFiles: configFiles, policies: policies, versions: versions)
        return (region, jurisdiction != nil)
    }

    static func readHost(_ node: Node, _ path: String, _ r: inout NodeReader) -> FleetHost? {
        let keys = ["name", "address", "listen", "port", "user", "host_key", "roles", "root"]
        guard let map = r.mapping(node, path, known: keys, required: ["name", "address", "roles"], what: "a host: a mapping with name, address and roles") else { return nil }
        let name = map["name"].flatMap { r.name($0, NodeReader.join(path, "name"), what: "a host name") }
        var address: String?
        if let n = map["address"], let v = r.nonEmptyString(n, NodeReader.join(path, "address")) {
            if HostAddress.isValid(v) { address = v }
            else { r.error(n, NodeReader.join(path, "address"), "expected an IPv4 or IPv6 address or a DNS name, got \"\(v)\"") }
        }
        var host = FleetHost(name: name ?? "", address: address ?? "", roles: [])
        if let n = map["listen"], let v = r.nonEmptyString(n, NodeReader.join(path, "listen")) {
            if !HostAddress.isValid(v) {
                r.error(n, NodeReader.join(path, "listen"), "expected the IPv4 or IPv6 address or DNS name where the host's services listen, got \"\(v)\"")
            } else if HostAddress.isUnspecified(v) {
                r.error(n, NodeReader.join(path, "listen"), "\(v) means every address and cannot be reached: give the one address the region's gateway reaches this host on")
            } else {
                host.listen = v
            }
        }
        if let n = map["port"] { host.port = r.integer(n, NodeReader.join(path, "port"), in: 1...65535) }
        if let n = map["user"] { host.user = r.nonEmptyString(n, NodeReader.join(path, "user")) }
        if let n = map["host_key"], let keys = r.stringOrList(n, NodeReader.join(path, "host_key")) {
            for (i, key) in keys.enumerated() where !HostKeyText.isValid(key) {
                let p = keys.count > 1 || { if case .sequence = n { return true } else { return false } }() ? NodeReader.index(NodeReader.join(path, "host_key"), i) : NodeReader.join(path, "host_key")
                r.error(n, p, "expected an OpenSSH public key line (\"ssh-ed25519 AAAA…\") or a fingerprint (\"SHA256:…\"), got \"\(key.prefix(40))\"; `meridian trust HOST` prints the right value")
            }
            host.hostKeys = keys
        }
        if let n = map["roles"], let roles = r.stringList(n, NodeReader.join(path, "roles"), what: "a list of roles: gateway and component names") {
            if roles.isEmpty { r.error(n, NodeReader.join(path, "roles"), "a host needs at least one role: gateway or a component name") }
            var seen = Set<String>()
            for (i, role) in roles.enumerated() where !seen.insert(role).inserted {
                r.error(nil, NodeReader.index(NodeReader.join(path, "roles"), i), "role \"\(role)\" is listed twice")
            }
            host.roles = roles.map(Role.init)
        }
        if let n = map["root"], let v = r.nonEmptyString(n, NodeReader.join(path, "root")) {
            if HostPaths.isAbsoluteClean(v) { host.root = v }
            else { r.error(n, NodeReader.join(path, "root"), "expected an absolute path without '..' such as /srv/meridian, got \"\(v)\"") }
        }
        guard name != nil, address != nil else { return nil }
        return host
    }

    static func readConfigFile(_ node: Node, _ path: String, _ r: inout NodeReader) -> ConfigFile? {
        let keys = ["template", "destination", "component", "mode", "outside_root"]
        guard let map = r.mapping(node, path, known: keys, required: ["template", "destination"], what: "a config file: a mapping with template and destination") else { return nil }
        var template: String?
        if let n = map["template"], let v = r.nonEmptyString(n, NodeReader.join(path, "template")) {
            if HostPaths.isRelativeClean(v) { template = v }
            else { r.error(n, NodeReader.join(path, "template"), "expected a path inside the fleet repository such as templates/inference.yaml.tmpl, got \"\(v)\"") }
        }
        // Observation, plan, apply and drift all work relative to the host
        // root, so a file outside it is refused here rather than accepted and
        // then written somewhere else.
        if let n = map["outside_root"], let v = r.boolean(n, NodeReader.join(path, "outside_root")), v {
            r.error(n, NodeReader.join(path, "outside_root"), "outside_root is not supported: meridian writes only under the host root; give a destination such as config/inference/server.yaml and point the service at that path")
        }
        var destination: String?
        if let n = map["destination"], let v = r.nonEmptyString(n, NodeReader.join(path, "destination")) {
            let p = NodeReader.join(path, "destination")
            if v.hasPrefix("/") {
                r.error(n, p, "\"\(v)\" is outside the host root; give a path relative to the root such as config/inference/server.yaml")
            } else if HostPaths.isRelativeClean(v) {
                destination = v
            } else {
                r.error(n, p, "\"\(v)\" escapes the host root: remove '..' (and '.' or empty parts) from the destination")
            }
        }
        var file = ConfigFile(template: template ?? "", destination: destination ?? "", outsideRoot: false)
        if let n = map["component"] { file.component = r.name(n, NodeReader.join(path, "component"), what: "a component name") }
        if let n = map["mode"], let text = r.string(n, NodeReader.join(path, "mode"), what: "a file mode") {
            if let mode = parseMode(text) { file.mode = mode }
            else { r.error(n, NodeReader.join(path, "mode"), "expected an octal file mode such as \"0644\" or \"0600\", got \"\(text)\"") }
        }
        guard template != nil, destination != nil else { return nil }
        return file
    }

    static func parseMode(_ text: String) -> Int? {
        var digits = Substring(text)
        if digits.hasPrefix("0o") { digits = digits.dropFirst(2) }
        guard (3...4).contains(digits.count), digits.allSatisfy({ ("0"..."7").contains($0) }), let mode = Int(digits, radix: 8) else { return nil }
        return mode <= 0o777 ? mode : nil
    }

    static func isVariableName(_ text: String) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter, text.count <= 64 else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    static func looksSecret(_ name: String) -> Bool {
        let words = name.lowercased().split(separator: "_").map(String.init)
        if words.contains(where: { ["password", "passwd", "secret", "token", "apikey", "credentials"].contains($0) }) { return true }
        return zip(words, words.dropFirst()).contains { ["api", "private", "access", "secret"].contains($0) && $1 == "key" }
    }

    /// A value that starts like a secret reference but is not a valid one is an error,
    /// so a typo cannot turn a secret's location into plain text on a host.
    static func checkSecretReference(_ text: String, _ node: Node, _ path: String, _ r: inout NodeReader) {
        guard text.hasPrefix("env:") || text.hasPrefix("file:"), SecretReference(parsing: text) == nil else { return }
        if text.hasPrefix("env:") {
            r.error(node, path, "expected env:NAME with an environment variable name of letters, digits and '_', got \"\(text)\"")
        } else {
            r.error(node, path, "expected file:PATH naming the file that holds the secret, got \"\(text)\"")
        }
    }
}

/// Syntax checks for host addresses.
public enum HostAddress {
    public static func isValid(_ text: String) -> Bool {
        if isIPv4(text) { return true }
        if text.contains(":") { return isIPv6(text) }
        return isDNSName(text)
    }

    public static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isNumber) && (Int(part) ?? 256) <= 255 && !(part.count > 1 && part.first == "0")
        }
    }

    /// `0.0.0.0` or `::`: an address to bind every interface, never one to reach a host at.
    public static func isUnspecified(_ text: String) -> Bool {
        if isIPv4(text) { return text == "0.0.0.0" }
        guard isIPv6(text) else { return false }
        var address = text
        if address.hasPrefix("[") && address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        var buffer = in6_addr()
        _ = address.withCString { inet_pton(AF_INET6, $0, &buffer) }
        return withUnsafeBytes(of: &buffer) { $0.allSatisfy { $0 == 0 } }
    }

    public static func isIPv6(_ text: String) -> Bool {
        var address = text
        if address.hasPrefix("[") && address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        var buffer = in6_addr()
        return address.withCString { inet_pton(AF_INET6, $0, &buffer) } == 1
    }

    static func isDNSName(_ text: String) -> Bool {
        guard (1...253).contains(text.count), !text.allSatisfy({ $0.isNumber || $0 == "." }) else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            (1...63).contains(label.count) && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }
}

/// Syntax checks for pinned host keys.
public enum HostKeyText {
    public static let keyTypes = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]

    public static func isValid(_ text: String) -> Bool {
        if text.hasPrefix("SHA256:") {
            let body = text.dropFirst(7)
            return (40...44).contains(body.count) && body.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/" || $0 == "=") }
        }
        let words = text.split(separator: " ")
        guard words.count >= 2, keyTypes.contains(String(words[0])) else { return false }
        return Data(base64Encoded: String(words[1])) != nil
    }
}
