import Foundation
import MeridianBasics
import MeridianModel
import Yams

/// Walks one YAML document by schema, recording where every value was
/// written and collecting a diagnostic for every value that does not fit —
/// it never stops at the first problem.
struct NodeReader {
    let file: String
    var diagnostics = Diagnostics()
    var sources = SourceMap()

    init(file: String) { self.file = file }

    func location(_ node: Node) -> SourceLocation {
        SourceLocation(file: file, line: node.mark?.line ?? 0, column: node.mark?.column ?? 0)
    }

    mutating func error(_ node: Node?, _ path: String, _ message: String) {
        diagnostics.error(node.map(location) ?? sources.location(file: file, path: path), path, message)
    }

    mutating func warning(_ node: Node?, _ path: String, _ message: String) {
        diagnostics.warning(node.map(location) ?? sources.location(file: file, path: path), path, message)
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    static func index(_ path: String, _ index: Int) -> String { "\(path)[\(index)]" }

    /// A short description of what a node holds, for "got …" in messages.
    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain, node.null != nil { return "nothing (null)" }
            let text = scalar.string.count > 40 ? String(scalar.string.prefix(40)) + "…" : scalar.string
            return "\"\(text.replacingOccurrences(of: "\n", with: "\\n"))\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// Reads a mapping with the given keys: reports unknown keys (with a
    /// suggestion), missing required keys and a non-mapping node. Returns the
    /// known entries by key.
    mutating func mapping(_ node: Node, _ path: String, known: [String], required: [String] = [], what: String = "a mapping") -> [String: Node]? {
        sources.record(location(node), path: path)
        guard case .mapping(let mapping) = node else {
            error(node, path, "expected \(what), got \(NodeReader.describe(node))")
            return nil
        }
        var entries: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                error(keyNode, path, "keys must be plain names, got \(NodeReader.describe(keyNode))")
                continue
            }
            let key = scalar.string
            let keyPath = NodeReader.join(path, key)
            if known.contains(key) {
                entries[key] = value
                sources.record(location(value), path: keyPath)
            } else {
                var message = "unknown key \"\(key)\""
                if let suggestion = Suggestion.closest(to: key, among: known) { message += "; did you mean \"\(suggestion)\"?" }
                else { message += "; expected one of: \(known.joined(separator: ", "))" }
                error(keyNode, keyPath, message)
            }
        }
        for key in required where entries[key] == nil {
            error(node, NodeReader.join(path, key), "missing required key \"\(key)\"")
        }
        return entries
    }

    /// Reads a mapping whose keys are free names (variables, versions).
    mutating func dictionary(_ node: Node, _ path: String) -> [(key: String, keyNode: Node, value: Node)]? {
        sources.record(location(node), path: path)
        guard case .mapping(let mapping) = node else {
            error(node, path, "expected a mapping of names to values, got \(NodeReader.describe(node))")
            return nil
        }
        var result: [(String, Node, Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode, !scalar.string.isEmpty else {
                error(keyNode, path, "keys must be plain names, got \(NodeReader.describe(keyNode))")
                continue
            }
            let keyPath = NodeReader.join(path, scalar.string)
            sources.record(location(value), path: keyPath)
            result.append((scalar.string, keyNode, value))
        }
        return result
    }

    mutating func sequence(_ node: Node, _ path: String, what: String = "a list") -> [Node]? {
        sources.record(location(node), path: path)
        guard case .sequence(let sequence) = node else {
            error(node, path, "expected \(what), got \(NodeReader.describe(node))")
            return nil
        }
        for (i, element) in sequence.enumerated() { sources.record(location(element), path: NodeReader.index(path, i)) }
        return Array(sequence)
    }

    /// A scalar's text. Numbers and booleans are accepted as their text.
    mutating func string(_ node: Node, _ path: String, what: String = "a string") -> String? {
        sources.record(location(node), path: path)
        guard case .scalar(let scalar) = node, !(scalar.style == .plain && node.null != nil) else {
            error(node, path, "expected \(what), got \(NodeReader.describe(node))")
            return nil
        }
        return scalar.string
    }

    mutating func nonEmptyString(_ node: Node, _ path: String, what: String = "a non-empty string") -> String? {
        guard let text = string(node, path, what: what) else { return nil }
        if text.trimmingCharacters(in: .whitespaces).isEmpty {
            error(node, path, "expected \(what), got an empty string")
            return nil
        }
        return text
    }

    /// A name: lower-case letters, digits and dashes, starting with a letter or digit.
    mutating func name(_ node: Node, _ path: String, what: String = "a name") -> String? {
        guard let text = string(node, path, what: what) else { return nil }
        guard NodeReader.isName(text) else {
            error(node, path, "expected \(what) of lower-case letters, digits, '-' and '_' (at most 63), got \"\(text)\"")
            return nil
        }
        return text
    }

    static func isName(_ text: String) -> Bool {
        guard let first = text.first, (1...63).contains(text.count), first.isASCII, first.isLowercase || first.isNumber else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    mutating func integer(_ node: Node, _ path: String, in range: ClosedRange<Int>, what: String = "an integer") -> Int? {
        sources.record(location(node), path: path)
        let bounds = "\(what) between \(range.lowerBound) and \(range.upperBound)"
        guard case .scalar(let scalar) = node, scalar.style == .plain,
              let value = Int(scalar.string.replacingOccurrences(of: "_", with: "")) else {
            error(node, path, "expected \(bounds), got \(NodeReader.describe(node))")
            return nil
        }
        guard range.contains(value) else {
            error(node, path, "expected \(bounds), got \(value)")
            return nil
        }
        return value
    }

    mutating func number(_ node: Node, _ path: String, in range: ClosedRange<Double>) -> Double? {
        sources.record(location(node), path: path)
        guard case .scalar(let scalar) = node, scalar.style == .plain, let value = Double(scalar.string), value.isFinite else {
            error(node, path, "expected a number between \(range.lowerBound) and \(range.upperBound), got \(NodeReader.describe(node))")
            return nil
        }
        guard range.contains(value) else {
            error(node, path, "expected a number between \(range.lowerBound) and \(range.upperBound), got \(scalar.string)")
            return nil
        }
        return value
    }

    mutating func boolean(_ node: Node, _ path: String) -> Bool? {
        sources.record(location(node), path: path)
        guard case .scalar(let scalar) = node, scalar.style == .plain else {
            error(node, path, "expected true or false, got \(NodeReader.describe(node))")
            return nil
        }
        switch scalar.string {
        case "true", "True", "TRUE", "yes", "Yes", "on": return true
        case "false", "False", "FALSE", "no", "No", "off": return false
        default:
            error(node, path, "expected true or false, got \(NodeReader.describe(node))")
            return nil
        }
    }

    mutating func duration(_ node: Node, _ path: String) -> Duration? {
        guard let text = string(node, path, what: "a duration") else { return nil }
        guard let duration = DurationText.parse(text) else {
            error(node, path, "expected a duration such as 500ms, 30s, 15m or 1h30m, got \"\(text)\"")
            return nil
        }
        return duration
    }

    mutating func version(_ node: Node, _ path: String) -> Version? {
        guard let text = string(node, path, what: "a version") else { return nil }
        guard let version = Version(text) else {
            error(node, path, "expected a version MAJOR.MINOR.PATCH such as 2.3.1, got \"\(text)\"")
            return nil
        }
        return version
    }

    mutating func jurisdiction(_ node: Node, _ path: String) -> Jurisdiction? {
        guard let text = string(node, path, what: "a jurisdiction") else { return nil }
        guard let jurisdiction = Jurisdiction(text) else {
            error(node, path, "expected a jurisdiction code of 2 to 8 upper-case letters or digits such as EU, US, UK, SG, got \"\(text)\"")
            return nil
        }
        return jurisdiction
    }

    mutating func stringList(_ node: Node, _ path: String, what: String = "a list of strings") -> [String]? {
        guard let items = sequence(node, path, what: what) else { return nil }
        var result: [String] = []
        for (i, item) in items.enumerated() {
            if let text = nonEmptyString(item, NodeReader.index(path, i)) { result.append(text) }
        }
        return result
    }

    /// A list, or a single value standing for a one-element list.
    mutating func stringOrList(_ node: Node, _ path: String) -> [String]? {
        if case .sequence = node { return stringList(node, path) }
        return nonEmptyString(node, path).map { [$0] }
    }
}
