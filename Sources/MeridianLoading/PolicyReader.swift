import Foundation
import MeridianBasics
import MeridianModel
import Yams

/// Reads one `policies/NAME.yaml` into a `Policy`.
enum PolicyReader {
    static func read(_ node: Node, stem: String, _ r: inout NodeReader) -> Policy? {
        guard let top = r.mapping(node, "", known: ["name", "residency", "governance"], what: "a policy: a mapping with residency and/or governance rules") else { return nil }
        var name = stem
        if let n = top["name"], let v = r.name(n, "name", what: "a policy name") { name = v }
        else if top["name"] == nil, !NodeReader.isName(stem) {
            r.error(node, "name", "the file name \"\(stem)\" is not a valid policy name: rename the file or set name:")
        }
        var policy = Policy(name: name, file: r.file)
        if let n = top["residency"], let items = r.sequence(n, "residency", what: "a list of residency rules") {
            for (i, item) in items.enumerated() {
                if let rule = readResidency(item, NodeReader.index("residency", i), &r) { policy.residency.append(rule) }
            }
        }
        if let n = top["governance"], let items = r.sequence(n, "governance", what: "a list of governance rules") {
            var ids: [String: Node] = [:]
            for (i, item) in items.enumerated() {
                let path = NodeReader.index("governance", i)
                guard let rule = readRule(item, path, &r) else { continue }
                if ids[rule.id] != nil { r.error(item, NodeReader.join(path, "id"), "rule id \"\(rule.id)\" is used twice in this policy: give each rule its own id") }
                ids[rule.id] = item
                policy.governance.append(rule)
            }
        }
        if top["residency"] == nil && top["governance"] == nil {
            r.warning(node, "", "the policy has neither residency nor governance rules")
        }
        return policy
    }

    static func readResidency(_ node: Node, _ path: String, _ r: inout NodeReader) -> ResidencyRule? {
        guard let map = r.mapping(node, path, known: ["data", "allowed"], required: ["data", "allowed"], what: "a residency rule: {data: EU, allowed: [EU]}") else { return nil }
        let data = map["data"].flatMap { r.jurisdiction($0, NodeReader.join(path, "data")) }
        var allowed: [Jurisdiction]?
        if let n = map["allowed"], let items = r.sequence(n, NodeReader.join(path, "allowed"), what: "a list of jurisdictions") {
            var list: [Jurisdiction] = []
            for (i, item) in items.enumerated() {
                let p = NodeReader.index(NodeReader.join(path, "allowed"), i)
                guard let j = r.jurisdiction(item, p) else { continue }
                if list.contains(j) { r.error(item, p, "jurisdiction \(j) is listed twice") } else { list.append(j) }
            }
            if items.isEmpty { r.error(n, NodeReader.join(path, "allowed"), "list at least one jurisdiction allowed to process this data") }
            allowed = list
        }
        guard let data, let allowed else { return nil }
        return ResidencyRule(data: data, allowed: allowed, location: r.location(node), path: path)
    }

    static func readRule(_ node: Node, _ path: String, _ r: inout NodeReader) -> GovernanceRule? {
        let kindKeys: [String: [String]] = [
            "require-variable": ["variable", "allowed"],
            "version-range": ["component", "range"],
            "rollout-strategy": ["component", "strategy"],
            "max-version-skew": ["component", "level", "max"],
            "freeze-window": ["from", "to", "reason"],
        ]
        let required: [String: [String]] = [
            "require-variable": ["variable"],
            "version-range": ["component", "range"],
            "rollout-strategy": ["component", "strategy"],
            "max-version-skew": ["component", "level", "max"],
            "freeze-window": ["from", "to"],
        ]
        // Read the kind first so the remaining keys can be checked against it.
        guard case .mapping(let raw) = node else {
            _ = r.mapping(node, path, known: [], what: "a governance rule: a mapping with id, kind and its parameters")
            return nil
        }
        var kind: String?
        if let n = raw["kind"], let v = r.string(n, NodeReader.join(path, "kind"), what: "a rule kind") {
            if kindKeys[v] != nil { kind = v }
            else {
                var message = "unknown rule kind \"\(v)\"; expected one of \(GovernanceRuleKind.keywords.joined(separator: ", "))"
                if let s = Suggestion.closest(to: v, among: GovernanceRuleKind.keywords) { message = "unknown rule kind \"\(v)\"; did you mean \"\(s)\"?" }
                r.error(n, NodeReader.join(path, "kind"), message)
            }
        }
        let common = ["id", "kind", "description"]
        let known = common + (kind.flatMap { kindKeys[$0] } ?? kindKeys.values.flatMap { $0 })
        guard let map = r.mapping(node, path, known: known, required: ["id", "kind"] + (kind.flatMap { required[$0] } ?? [])) else { return nil }
        let id = map["id"].flatMap { r.name($0, NodeReader.join(path, "id"), what: "a rule id") }
        let description = map["description"].flatMap { r.string($0, NodeReader.join(path, "description")) }
        guard let kind, let id else { return nil }
        let p = { (key: String) in NodeReader.join(path, key) }
        var parsed: GovernanceRuleKind?
        switch kind {
        case "require-variable":
            let variable = map["variable"].flatMap { r.nonEmptyString($0, p("variable")) }
            let allowed = map["allowed"].flatMap { r.stringList($0, p("allowed"), what: "a list of allowed values") }
            if let variable { parsed = .requireVariable(name: variable, allowed: allowed) }
        case "version-range":
            let component = map["component"].flatMap { r.name($0, p("component"), what: "a component name") }
            var range: VersionRange?
            if let n = map["range"], let text = r.nonEmptyString(n, p("range")) {
                switch VersionRange.parse(text) {
                case .success(let value): range = value
                case .failure(let error): r.error(n, p("range"), "invalid version range \"\(text)\": \(error.reason)")
                }
            }
            if let component, let range { parsed = .versionRange(component: component, range: range) }
        case "rollout-strategy":
            let component = map["component"].flatMap { r.name($0, p("component"), what: "a component name") }
            var strategy: RolloutStrategy?
            if let n = map["strategy"], let text = r.string(n, p("strategy")) {
                strategy = RolloutStrategy(rawValue: text)
                if strategy == nil { r.error(n, p("strategy"), "expected one of \(RolloutStrategy.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(text)\"") }
            }
            if let component, let strategy { parsed = .rolloutStrategy(component: component, strategy: strategy) }
        case "max-version-skew":
            let component = map["component"].flatMap { r.name($0, p("component"), what: "a component name") }
            var level: SkewLevel?
            if let n = map["level"], let text = r.string(n, p("level")) {
                level = SkewLevel(rawValue: text)
                if level == nil { r.error(n, p("level"), "expected major, minor or patch, got \"\(text)\"") }
            }
            let max = map["max"].flatMap { r.integer($0, p("max"), in: 0...1000) }
            if let component, let level, let max { parsed = .maxVersionSkew(component: component, level: level, max: max) }
        case "freeze-window":
            let from = map["from"].flatMap { readDate($0, p("from"), &r) }
            let to = map["to"].flatMap { readDate($0, p("to"), &r) }
            let reason = map["reason"].flatMap { r.string($0, p("reason")) }
            if let from, let to {
                if to <= from { r.error(map["to"], p("to"), "the freeze window ends before it starts: \"to\" must come after \"from\"") }
                else { parsed = .freezeWindow(from: from, to: to, reason: reason) }
            }
        default:
            return nil
        }
        guard let parsed else { return nil }
        return GovernanceRule(id: id, description: description, kind: parsed, location: r.location(node), path: path)
    }

    static func readDate(_ node: Node, _ path: String, _ r: inout NodeReader) -> Date? {
        guard let text = r.string(node, path, what: "a date-time") else { return nil }
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        r.error(node, path, "expected a date-time in RFC 3339 form such as 2026-12-20T00:00:00Z, got \"\(text)\"")
        return nil
    }
}
