/// Names one host of the fleet: its region and its name there. Written
/// `region/host` in messages, plans and keys; region names hold no `/`, so
/// the text form reads back unambiguously (at the first `/`).
public struct HostID: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral, Codable {
    public var region: String
    public var host: String

    public init(region: String, host: String) {
        self.region = region
        self.host = host
    }

    /// Reads `region/host`; text without a `/` is a host in an unnamed region.
    public init(_ text: String) {
        if let slash = text.firstIndex(of: "/") {
            self.init(region: String(text[..<slash]), host: String(text[text.index(after: slash)...]))
        } else {
            self.init(region: "", host: text)
        }
    }

    public init(stringLiteral text: String) { self.init(text) }

    public var description: String { "\(region)/\(host)" }

    public static func < (a: HostID, b: HostID) -> Bool { (a.region, a.host) < (b.region, b.host) }

    public init(from decoder: Decoder) throws {
        self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
