import Foundation
import MeridianBasics
import MeridianModel
import Yams

/// Parses one fleet file into a YAML node tree, turning every failure into a
/// located diagnostic. Input that could exhaust the parser (huge files, deep
/// nesting) is refused before parsing.
enum YAMLDocument {
    static let maximumBytes = 1 << 20
    static let maximumNesting = 64

    static func parse(_ data: Data, file: String, into diagnostics: inout Diagnostics) -> Node? {
        let whole = SourceLocation(file: file, line: 1, column: 1)
        guard data.count <= maximumBytes else {
            diagnostics.error(whole, "", "the file is \(data.count) bytes; fleet files may be at most \(maximumBytes) bytes: split it or remove what does not belong")
            return nil
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            let (line, column) = position(ofFirstInvalidUTF8In: data)
            diagnostics.error(SourceLocation(file: file, line: line, column: column), "", "the file is not valid UTF-8 text: save it as UTF-8")
            return nil
        }
        if let (line, column) = firstControlCharacter(in: text) {
            diagnostics.error(SourceLocation(file: file, line: line, column: column), "", "the file contains a control character YAML does not allow: remove it")
            return nil
        }
        if let line = nestingTooDeep(text) {
            diagnostics.error(SourceLocation(file: file, line: line, column: 1), "", "values are nested more than \(maximumNesting) levels deep: fleet files need only a few levels")
            return nil
        }
        do {
            guard let node = try Yams.compose(yaml: text) else {
                diagnostics.error(whole, "", "the file holds no YAML document: it is empty or only comments")
                return nil
            }
            var foreign: [(Mark?, String)] = []
            var budget = maximumTagChecks
            unknownTags(in: node, into: &foreign, budget: &budget)
            for (mark, tag) in foreign {
                diagnostics.error(SourceLocation(file: file, line: max(1, mark?.line ?? 1), column: max(1, mark?.column ?? 1)), "",
                                  "unknown YAML tag \(tag): fleet files hold plain strings, numbers, booleans, lists and mappings; remove the tag")
            }
            return foreign.isEmpty ? node : nil
        } catch let error as YamlError {
            let (mark, message) = describe(error)
            diagnostics.error(SourceLocation(file: file, line: max(1, mark?.line ?? 1), column: max(1, mark?.column ?? 1)), "", message)
            return nil
        } catch {
            diagnostics.error(whole, "", "could not be read as YAML: \(error)")
            return nil
        }
    }

    /// The tags YAML's core schema resolves plain values to; any other tag
    /// (`!!python/object:…`, `!custom`) would be read as a string and is refused instead.
    static let knownTags: Set<String> = ["str", "int", "float", "bool", "null", "map", "seq", "merge", "timestamp"].reduce(into: ["!", "?"]) {
        $0.insert("tag:yaml.org,2002:" + $1)
    }

    /// Nodes looked at for tags: aliases share nodes, so an alias bomb would
    /// otherwise be walked exponentially (the reader refuses such a file anyway).
    static let maximumTagChecks = 100_000

    private static func unknownTags(in node: Node, into found: inout [(Mark?, String)], budget: inout Int) {
        guard budget > 0 else { return }
        budget -= 1
        let name = node.tag.rawValue
        if !knownTags.contains(name), !name.isEmpty {
            let shown = name.hasPrefix("tag:yaml.org,2002:") ? "!!" + name.dropFirst("tag:yaml.org,2002:".count) : name
            found.append((node.mark, String(shown.prefix(80))))
        }
        switch node {
        case .scalar, .alias: break
        case .mapping(let mapping):
            for (key, value) in mapping {
                unknownTags(in: key, into: &found, budget: &budget)
                unknownTags(in: value, into: &found, budget: &budget)
            }
        case .sequence(let sequence):
            for item in sequence { unknownTags(in: item, into: &found, budget: &budget) }
        }
    }

    /// The 1-based line and column of the first byte that breaks UTF-8.
    private static func position(ofFirstInvalidUTF8In data: Data) -> (Int, Int) {
        var line = 1, column = 1
        var iterator = data.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                if scalar == "\n" { line += 1; column = 1 } else { column += 1 }
            case .emptyInput, .error:
                return (line, column)
            }
        }
    }

    private static func describe(_ error: YamlError) -> (Mark?, String) {
        switch error {
        case let .scanner(context, problem, mark, _),
             let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            var message = "YAML syntax error: \(problem)"
            if let context { message += " (\(context.text) at \(context.mark.line):\(context.mark.column))" }
            return (mark, message)
        case let .duplicatedKeysInMapping(duplicates, context):
            let names = duplicates.map { "\"\($0)\"" }.joined(separator: ", ")
            return (context.mark, "duplicate key \(names) in one mapping: keep one of them")
        case let .reader(problem, _, _, _):
            return (nil, "YAML reader error: \(problem)")
        case .no, .memory, .writer, .emitter, .representer, .dataCouldNotBeDecoded:
            return (nil, "YAML error: \(error)")
        }
    }

    /// libyaml refuses most C0 controls anyway; catching them here gives a precise place.
    private static func firstControlCharacter(in text: String) -> (Int, Int)? {
        var line = 1, column = 1
        for scalar in text.unicodeScalars {
            if scalar == "\n" { line += 1; column = 1; continue }
            if scalar.value < 0x20 && scalar != "\t" && scalar != "\r" { return (line, column) }
            if scalar.value == 0x7f || scalar == "\u{FEFF}" && !(line == 1 && column == 1) { return (line, column) }
            column += 1
        }
        return nil
    }

    /// A conservative upper bound of the nesting a line can open: its
    /// indentation, the block indicators on it and the open flow brackets so
    /// far. Never underestimates, so what passes cannot nest deeper.
    private static func nestingTooDeep(_ text: String) -> Int? {
        let limit = maximumNesting * 4
        var flow = 0
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var indent = 0
            var indicators = 0
            var atStart = true
            var previous: Character = " "
            for character in line {
                if atStart {
                    if character == " " { indent += 1; continue }
                    atStart = false
                }
                switch character {
                case "[", "{": flow += 1
                case "]", "}": flow = max(0, flow - 1)
                case "-", "?", ":": if previous == " " || previous == "\t" || indicators == 0 { indicators += 1 }
                default: break
                }
                previous = character
            }
            if indent + indicators + flow > limit || flow > maximumNesting { return lineNumber }
        }
        return nil
    }
}

