import Foundation
import MeridianModel

/// The only place meridian writes to standard output and standard error.
enum Output {
    static func line(_ text: String = "") {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func text(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Pretty, key-sorted JSON of an Encodable value, with a final newline.
    static func json<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }

    /// Prints diagnostics (errors go to standard error in text form).
    static func diagnostics(_ diagnostics: Diagnostics, format: OutputFormat) {
        switch format {
        case .text:
            for diagnostic in diagnostics.sorted { error(diagnostic.description) }
            error(DiagnosticsReport.summary(diagnostics))
        case .json:
            json(DiagnosticsReport(diagnostics: diagnostics, extra: nil))
        }
    }
}

/// The JSON form of a validation result (docs/cli.md, format version 1).
struct DiagnosticsReport: Encodable {
    struct Entry: Encodable {
        var severity: String
        var file: String
        var line: Int
        var column: Int
        var path: String
        var message: String
    }

    var formatVersion = 1
    var valid: Bool
    var errors: Int
    var warnings: Int
    var diagnostics: [Entry]
    var bundles: [String: String]?

    init(diagnostics: Diagnostics, extra bundles: [String: String]?) {
        valid = !diagnostics.hasErrors
        errors = diagnostics.errorCount
        warnings = diagnostics.warningCount
        self.diagnostics = diagnostics.sorted.map {
            Entry(severity: $0.severity.rawValue, file: $0.location.file, line: $0.location.line, column: $0.location.column, path: $0.path, message: $0.message)
        }
        self.bundles = bundles
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", valid, errors, warnings, diagnostics, bundles
    }

    static func summary(_ diagnostics: Diagnostics) -> String {
        func count(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
        return "\(count(diagnostics.errorCount, "error")), \(count(diagnostics.warningCount, "warning"))."
    }
}
