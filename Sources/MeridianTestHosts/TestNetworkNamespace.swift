import Foundation

/// A network namespace of the test's own, reached from this machine over
/// veth pairs, one per link, so that a test can cut one path silently (no
/// FIN, no RST: packets just stop) while the others keep working. Link `i`
/// is the /30 `10.77.N.(4i)`: this side `.4i+1`, the namespace's `.4i+2`,
/// with N taken from this process id so test processes side by side do not
/// collide. Needs root. Invariant: `remove()` (or releasing the value)
/// deletes the namespace and its links.
public final class TestNetworkNamespace: @unchecked Sendable {
    public let name: String
    public let links: Int
    private let subnet: Int
    private let lock = NSLock()
    private var removed = false

    public init(links: Int) throws {
        guard geteuid() == 0 else { throw TestHostError("a network namespace needs root; run the tests as root (CI does)") }
        guard (1...8).contains(links) else { throw TestHostError("a test namespace has 1 to 8 links, not \(links)") }
        let pid = Int(getpid())
        name = "mrd-\(pid)"
        subnet = pid % 250 + 1
        self.links = links
        do {
            try? Self.ip(["netns", "delete", name])
            try Self.ip(["netns", "add", name])
            try Self.ip(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
            for link in 0..<links {
                try Self.ip(["link", "add", outside(link), "type", "veth", "peer", "name", inside(link)])
                try Self.ip(["link", "set", inside(link), "netns", name])
                try Self.ip(["addr", "add", "\(hostAddress(link))/30", "dev", outside(link)])
                try Self.ip(["link", "set", outside(link), "up"])
                try Self.ip(["netns", "exec", name, "ip", "addr", "add", "\(address(link))/30", "dev", inside(link)])
                try Self.ip(["netns", "exec", name, "ip", "link", "set", inside(link), "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    deinit { remove() }

    /// The namespace's end of link `i`: where a server inside listens.
    public func address(_ link: Int) -> String { "10.77.\(subnet).\(4 * link + 2)" }
    /// This side's end of link `i`: where connections from here come from.
    public func hostAddress(_ link: Int) -> String { "10.77.\(subnet).\(4 * link + 1)" }
    /// Every address a connection from this side may come from, for a server's access rules.
    public var hostNetwork: String { "10.77.\(subnet).0/24" }

    func outside(_ link: Int) -> String { "mrdo\(link)-\(getpid())" }
    func inside(_ link: Int) -> String { "mrdi\(link)-\(getpid())" }

    /// Cuts link `i` silently: this side goes down, so nothing crosses it either way.
    public func cut(_ link: Int) throws { try Self.ip(["link", "set", outside(link), "down"]) }
    /// Puts link `i` back.
    public func restore(_ link: Int) throws { try Self.ip(["link", "set", outside(link), "up"]) }

    /// The argv that runs `argv` inside the namespace.
    public func command(_ argv: [String]) -> [String] { ["/usr/sbin/ip", "netns", "exec", name] + argv }

    /// Deletes the namespace; its veth pairs go with it.
    public func remove() {
        let already = lock.withLock { () -> Bool in
            defer { removed = true }
            return removed
        }
        if already { return }
        for link in 0..<links { try? Self.ip(["link", "delete", outside(link)]) }
        try? Self.ip(["netns", "delete", name])
    }

    static func ip(_ arguments: [String]) throws {
        try TestPostgresServer.run("/usr/sbin/ip", arguments, asService: false)
    }
}
