import Foundation
import MeridianModel

/// The value of one template variable: plain text, or a reference to a secret
/// that a `SecretResolver` turns into text when the template is rendered.
public enum TemplateValue: Hashable, Sendable {
    case text(String)
    case secret(SecretReference)

    /// Interprets a region variable as written in a fleet file: `env:NAME` and
    /// `file:PATH` are secret references, everything else is text.
    public init(variable: String) {
        if let reference = SecretReference(parsing: variable) {
            self = .secret(reference)
        } else {
            self = .text(variable)
        }
    }
}

/// Turns secret references into their values. Planning uses
/// `MaskingSecretResolver` so that no secret ever reaches a plan; apply uses a
/// resolver that reads the real values.
public protocol SecretResolver: Sendable {
    /// The secret's value, or a thrown error whose description says why it is unavailable.
    func resolve(_ reference: SecretReference) throws -> String
}

/// Resolves every reference to a stable placeholder that names the reference
/// and never its value, so plan-time renderings are deterministic and safe to show.
public struct MaskingSecretResolver: SecretResolver {
    public init() {}

    public func resolve(_ reference: SecretReference) throws -> String {
        MaskingSecretResolver.placeholder(for: reference)
    }

    /// The text that stands for a secret in masked content. Diffs show every
    /// line containing `marker` as `(sensitive)`.
    public static func placeholder(for reference: SecretReference) -> String {
        "\(marker)\(reference)⟫"
    }

    /// The start of every placeholder; it is not expected in real configuration.
    public static let marker = "⟪sensitive:"
}

/// Resolves references from an environment map and from files on the control
/// plane, relative paths taken from `baseDirectory` (the fleet repository).
/// Used at apply time only.
public struct LocalSecretResolver: SecretResolver {
    public var environment: [String: String]
    public var baseDirectory: URL

    public init(environment: [String: String], baseDirectory: URL) {
        self.environment = environment
        self.baseDirectory = baseDirectory
    }

    /// A secret that could not be read, with the reason and the next step.
    public struct Unavailable: Error, CustomStringConvertible {
        public var reference: SecretReference
        public var reason: String
        public var description: String { "secret \(reference) is unavailable: \(reason)" }
    }

    public func resolve(_ reference: SecretReference) throws -> String {
        switch reference.source {
        case .environment:
            guard let value = environment[reference.name] else {
                throw Unavailable(reference: reference, reason: "the environment variable \(reference.name) is not set; export it before running apply")
            }
            return value
        case .file:
            let url = reference.name.hasPrefix("/")
                ? URL(fileURLWithPath: reference.name)
                : baseDirectory.appendingPathComponent(reference.name)
            let data: Data
            do {
                data = try Data(contentsOf: url)
            } catch {
                throw Unavailable(reference: reference, reason: "cannot read \(url.path): \(error.localizedDescription)")
            }
            guard var text = String(data: data, encoding: .utf8) else {
                throw Unavailable(reference: reference, reason: "\(url.path) is not UTF-8 text")
            }
            // Secret files are usually written with a trailing newline that is not part of the secret.
            if text.hasSuffix("\n") { text.removeLast() }
            return text
        }
    }
}

/// The text a template rendered to, with the secret references whose values
/// flowed into it. The text is sensitive whenever any reference did.
public struct RenderedText: Equatable, Sendable {
    public var text: String
    /// Sorted, without duplicates.
    public var secretReferences: [SecretReference]
    public var isSensitive: Bool { !secretReferences.isEmpty }
}

/// One problem found in a template, at a 1-based line and column of the
/// template text; its description starts with `line:column:` so that a
/// caller can prefix the file name.
public struct TemplateProblem: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case unterminatedTag
        case malformedTag(String)
        case unknownFilter(String)
        case missingVariable(String)
        case secretUnavailable(SecretReference, String)
    }

    public var line: Int
    public var column: Int
    public var kind: Kind

    public init(line: Int, column: Int, kind: Kind) {
        self.line = line
        self.column = column
        self.kind = kind
    }

    public var description: String {
        let message: String
        switch kind {
        case .unterminatedTag:
            message = "unterminated tag: `{{` has no closing `}}` (write {{ \"{{\" }} for literal braces)"
        case .malformedTag(let reason):
            message = "malformed tag: \(reason)"
        case .unknownFilter(let name):
            message = "unknown filter `\(name)`: expected `default \"text\"` or `json`"
        case .missingVariable(let name):
            message = "missing variable `\(name)`: define it in the region's variables or add `| default \"…\"`"
        case .secretUnavailable(let reference, let reason):
            message = "secret \(reference) is unavailable: \(reason)"
        }
        return "\(line):\(column): \(message)"
    }
}

/// Every problem a template rendering ran into, in the order of the template text.
public struct TemplateFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var problems: [TemplateProblem]
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// A configuration template parsed once into literal text and tags; see
/// docs/templates.md for the syntax. Invariant: `parts` and `parseProblems`
/// together account for the whole source text.
public struct Template: Equatable, Sendable {
    public enum Filter: Equatable, Sendable {
        case defaultValue(String)
        case json
    }

    public enum Expression: Equatable, Sendable {
        case variable(String)
        case literal(String)
    }

    public struct Tag: Equatable, Sendable {
        public var expression: Expression
        public var filters: [Filter]
        public var line: Int
        public var column: Int
    }

    public enum Part: Equatable, Sendable {
        case text(String)
        case tag(Tag)
    }

    public let source: String
    public private(set) var parts: [Part] = []
    public private(set) var parseProblems: [TemplateProblem] = []

    public init(_ source: String) {
        self.source = source
        var scanner = TemplateScanner(Array(source))
        (parts, parseProblems) = scanner.parse()
    }

    /// Every variable name the template uses, sorted, without duplicates.
    public var variableNames: [String] {
        var names = Set<String>()
        for case .tag(let tag) in parts {
            if case .variable(let name) = tag.expression { names.insert(name) }
        }
        return names.sorted()
    }

    /// Renders against `variables` (keyed by full dotted name, e.g.
    /// `vars.max_tokens`). Returns the text or every problem at once: parse
    /// problems, missing variables and secrets the resolver could not provide.
    public func render(
        _ variables: [String: TemplateValue],
        secrets: any SecretResolver
    ) -> Result<RenderedText, TemplateFailure> {
        var problems = parseProblems
        var output = ""
        var references = Set<SecretReference>()
        for part in parts {
            switch part {
            case .text(let text):
                output += text
            case .tag(let tag):
                var value: String?
                switch tag.expression {
                case .literal(let text):
                    value = text
                case .variable(let name):
                    switch variables[name] {
                    case .none:
                        value = nil
                    case .text(let text):
                        value = text
                    case .secret(let reference):
                        references.insert(reference)
                        do {
                            value = try secrets.resolve(reference)
                        } catch {
                            let reason = (error as? LocalSecretResolver.Unavailable)?.reason ?? "\(error)"
                            problems.append(TemplateProblem(line: tag.line, column: tag.column, kind: .secretUnavailable(reference, reason)))
                            value = ""
                        }
                    }
                }
                for filter in tag.filters {
                    switch filter {
                    case .defaultValue(let fallback):
                        if value == nil { value = fallback }
                    case .json:
                        value = value.map(Template.jsonQuoted)
                    }
                }
                if let value {
                    output += value
                } else if case .variable(let name) = tag.expression {
                    problems.append(TemplateProblem(line: tag.line, column: tag.column, kind: .missingVariable(name)))
                }
            }
        }
        problems.sort { ($0.line, $0.column) < ($1.line, $1.column) }
        if !problems.isEmpty { return .failure(TemplateFailure(problems: problems)) }
        return .success(RenderedText(text: output, secretReferences: references.sorted()))
    }

    /// A JSON string literal for `text` (RFC 8259 escapes, non-ASCII kept as is).
    public static func jsonQuoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// Reads template source character by character, tracking line and column.
private struct TemplateScanner {
    let chars: [Character]
    var index = 0
    var line = 1
    var column = 1

    init(_ chars: [Character]) { self.chars = chars }

    func peek(_ offset: Int = 0) -> Character? {
        index + offset < chars.count ? chars[index + offset] : nil
    }

    mutating func advance() {
        if chars[index] == "\n" { line += 1; column = 1 } else { column += 1 }
        index += 1
    }

    mutating func skipSpaces() {
        while let c = peek(), c == " " || c == "\t" || c == "\n" || c == "\r" { advance() }
    }

    func atClose() -> Bool { peek() == "}" && peek(1) == "}" }

    mutating func parse() -> ([Template.Part], [TemplateProblem]) {
        var parts: [Template.Part] = []
        var problems: [TemplateProblem] = []
        var text = ""
        while index < chars.count {
            if peek() == "{" && peek(1) == "{" {
                let startLine = line, startColumn = column
                // A tag ends at the first `}}` outside a string literal; without one it is unterminated.
                guard let end = closingIndex(from: index + 2) else {
                    problems.append(TemplateProblem(line: startLine, column: startColumn, kind: .unterminatedTag))
                    while index < chars.count { text.append(chars[index]); advance() }
                    break
                }
                if !text.isEmpty { parts.append(.text(text)); text = "" }
                advance(); advance()
                switch parseTag(end: end, line: startLine, column: startColumn) {
                case .success(let tag): parts.append(.tag(tag))
                case .failure(let problem): problems.append(problem)
                }
                while index < end + 2 { advance() }
            } else {
                text.append(chars[index])
                advance()
            }
        }
        if !text.isEmpty { parts.append(.text(text)) }
        return (parts, problems)
    }

    func closingIndex(from start: Int) -> Int? {
        var i = start
        var inString = false
        while i < chars.count {
            let c = chars[i]
            if inString {
                if c == "\\" { i += 2; continue }
                if c == "\"" { inString = false }
                if c == "\n" { return nil }
            } else {
                if c == "\"" { inString = true }
                if c == "}" && i + 1 < chars.count && chars[i + 1] == "}" { return i }
            }
            i += 1
        }
        return nil
    }

    mutating func parseTag(end: Int, line tagLine: Int, column tagColumn: Int) -> Result<Template.Tag, TemplateProblem> {
        func problem(_ kind: TemplateProblem.Kind) -> Result<Template.Tag, TemplateProblem> {
            .failure(TemplateProblem(line: line, column: column, kind: kind))
        }
        skipSpaces()
        let expression: Template.Expression
        if peek() == "\"" {
            switch stringLiteral(end: end) {
            case .success(let text): expression = .literal(text)
            case .failure(let p): return .failure(p)
            }
        } else {
            guard let name = identifierPath(end: end) else {
                return problem(.malformedTag("expected a variable name such as `vars.port` or a string literal"))
            }
            expression = .variable(name)
        }
        var filters: [Template.Filter] = []
        skipSpaces()
        while index < end {
            guard peek() == "|" else {
                return problem(.malformedTag("expected `|` or `}}` after the expression"))
            }
            advance()
            skipSpaces()
            let filterLine = line, filterColumn = column
            var name = ""
            while index < end, let c = peek(), c.isLetter || c == "_" { name.append(c); advance() }
            switch name {
            case "default":
                skipSpaces()
                guard peek() == "\"" else { return problem(.malformedTag("`default` needs a string literal, e.g. default \"8080\"")) }
                switch stringLiteral(end: end) {
                case .success(let text): filters.append(.defaultValue(text))
                case .failure(let p): return .failure(p)
                }
            case "json":
                filters.append(.json)
            case "":
                return problem(.malformedTag("expected a filter name after `|`"))
            default:
                return .failure(TemplateProblem(line: filterLine, column: filterColumn, kind: .unknownFilter(name)))
            }
            skipSpaces()
        }
        return .success(Template.Tag(expression: expression, filters: filters, line: tagLine, column: tagColumn))
    }

    mutating func identifierPath(end: Int) -> String? {
        var name = ""
        var segmentStart = true
        while index < end, let c = peek() {
            if segmentStart {
                guard c.isASCII && (c.isLetter || c == "_") else { return nil }
                segmentStart = false
            } else if c == "." {
                segmentStart = true
            } else if !(c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-")) {
                break
            }
            name.append(c)
            advance()
        }
        return name.isEmpty || segmentStart ? nil : name
    }

    mutating func stringLiteral(end: Int) -> Result<String, TemplateProblem> {
        advance()  // opening quote
        var text = ""
        while index < end {
            let c = chars[index]
            if c == "\"" { advance(); return .success(text) }
            if c == "\\" {
                let escapeLine = line, escapeColumn = column
                advance()
                guard index < end else { break }
                switch chars[index] {
                case "\"": text.append("\"")
                case "\\": text.append("\\")
                case "n": text.append("\n")
                case "t": text.append("\t")
                default:
                    return .failure(TemplateProblem(line: escapeLine, column: escapeColumn, kind: .malformedTag("unknown escape `\\\(chars[index])` in a string literal; use \\\" \\\\ \\n or \\t")))
                }
                advance()
                continue
            }
            text.append(c)
            advance()
        }
        return .failure(TemplateProblem(line: line, column: column, kind: .malformedTag("unterminated string literal")))
    }
}
