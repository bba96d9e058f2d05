import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning

/// Renders a sensitive file's real content from its masked rendering: each
/// placeholder (`MaskingSecretResolver.placeholder`) is replaced by the
/// secret's value, JSON-quoted where the template JSON-quoted it. Apply is
/// the only caller; the result goes to the host and nowhere else.
public enum SensitiveRendering {
    public static func render(_ file: ManagedFile, secrets: any SecretResolver) throws -> Data {
        switch file.content {
        case .bytes(let data):
            return data
        case .sensitive(let masked, let references):
            var text = masked
            for reference in references {
                let value: String
                do {
                    value = try secrets.resolve(reference)
                } catch {
                    throw SensitiveFileError(path: file.path, source: file.source, reason: "\(error)")
                }
                let placeholder = MaskingSecretResolver.placeholder(for: reference)
                text = text.replacingOccurrences(of: jsonQuoted(placeholder), with: jsonQuoted(value))
                text = text.replacingOccurrences(of: placeholder, with: value)
            }
            return Data(text.utf8)
        }
    }

    /// A JSON string literal, exactly as the template's `json` filter writes one.
    static func jsonQuoted(_ text: String) -> String { Template.jsonQuoted(text) }
}

/// A sensitive file whose secrets could not be read at apply time.
public struct SensitiveFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var source: String
    public var reason: String
    public var description: String { "\(path) (\(source)): \(reason)" }
}
