/// An address and a port as HTTP Host headers, nginx and messages write them:
/// `127.0.1.2:8101`, or `[::1]:8101` for an IPv6 address.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// The bare address (no brackets).
    public var address: String
    public var port: Int

    public init(_ address: String, _ port: Int) {
        self.address = address
        self.port = port
    }

    public var description: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
}
