/// A place in a fleet file: the file relative to the fleet root, and a
/// 1-based line and column. Line 0 means "the file as a whole".
public struct SourceLocation: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int = 0, column: Int = 0) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { line > 0 ? "\(file):\(line):\(column)" : file }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}

/// One problem found in a fleet, with its place and the path of the bad value
/// inside the document (`hosts[1].port`). Its text form is
/// `FILE:LINE:COL: PATH: message`.
public struct Diagnostic: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Severity: String, Sendable, Codable, Hashable {
        case error
        case warning
    }

    public var severity: Severity
    public var location: SourceLocation
    /// The path of the value inside its document; empty for the document itself.
    public var path: String
    public var message: String

    public init(_ severity: Severity = .error, at location: SourceLocation, path: String, _ message: String) {
        self.severity = severity
        self.location = location
        self.path = path
        self.message = message
    }

    public var description: String {
        var text = "\(location): "
        if !path.isEmpty { text += "\(path): " }
        if severity == .warning { text += "warning: " }
        return text + message
    }
}

/// An ordered collection of diagnostics that keeps every problem, so that a
/// command reports all of them at once and stops only at `hasErrors`.
public struct Diagnostics: Sendable, Equatable, Sequence {
    public private(set) var items: [Diagnostic] = []

    public init(_ items: [Diagnostic] = []) { self.items = items }

    public var hasErrors: Bool { items.contains { $0.severity == .error } }
    public var errorCount: Int { items.count { $0.severity == .error } }
    public var warningCount: Int { items.count { $0.severity == .warning } }
    public var isEmpty: Bool { items.isEmpty }

    public mutating func append(_ diagnostic: Diagnostic) { items.append(diagnostic) }
    public mutating func append(contentsOf other: Diagnostics) { items.append(contentsOf: other.items) }
    public mutating func error(_ location: SourceLocation, _ path: String, _ message: String) {
        items.append(Diagnostic(.error, at: location, path: path, message))
    }
    public mutating func warning(_ location: SourceLocation, _ path: String, _ message: String) {
        items.append(Diagnostic(.warning, at: location, path: path, message))
    }

    /// Diagnostics in file, line, column order, duplicates removed.
    public var sorted: [Diagnostic] {
        var seen = Set<Diagnostic>()
        return items.filter { seen.insert($0).inserted }.sorted {
            ($0.location, $0.path, $0.message) < ($1.location, $1.path, $1.message)
        }
    }

    public func makeIterator() -> IndexingIterator<[Diagnostic]> { items.makeIterator() }
}

/// Thrown when a fleet cannot be used; carries every problem found.
public struct FleetInvalid: Error, Sendable, CustomStringConvertible {
    public var diagnostics: Diagnostics
    public init(_ diagnostics: Diagnostics) { self.diagnostics = diagnostics }
    public var description: String { diagnostics.sorted.map(\.description).joined(separator: "\n") }
}
