import Foundation

/// A reference to a secret that lives outside the fleet repository: an
/// environment variable of the control plane (`env:NAME`) or a file on the
/// control plane (`file:PATH`). A reference names where a secret is, never the
/// secret itself, so it may appear in plans and logs.
public struct SecretReference: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public enum Source: String, Codable, Sendable {
        case environment = "env"
        case file = "file"
    }

    public var source: Source
    /// The environment variable name or the file path.
    public var name: String

    public init(source: Source, name: String) {
        self.source = source
        self.name = name
    }

    /// Reads `env:NAME` (NAME made of letters, digits and `_`, not starting
    /// with a digit) or `file:PATH` (any non-empty path); anything else is not
    /// a secret reference and yields nil.
    public init?(parsing text: String) {
        if text.hasPrefix("env:") {
            let name = String(text.dropFirst(4))
            guard let first = name.unicodeScalars.first,
                  first == "_" || (first.isASCII && CharacterSet.letters.contains(first)),
                  name.unicodeScalars.allSatisfy({ $0 == "_" || ($0.isASCII && CharacterSet.alphanumerics.contains($0)) })
            else { return nil }
            self.init(source: .environment, name: name)
        } else if text.hasPrefix("file:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { return nil }
            self.init(source: .file, name: path)
        } else {
            return nil
        }
    }

    public var description: String { "\(source.rawValue):\(name)" }

    public static func < (lhs: SecretReference, rhs: SecretReference) -> Bool {
        lhs.description < rhs.description
    }
}
