import Foundation

/// Writes a fleet repository whose regions are a test cluster's hosts, so the
/// built CLI and the engine can be run against real sshd processes. Hosts are
/// split over regions in order; the first host of each region is its gateway.
public struct TestFleet {
    /// One region of the fleet: a name, a jurisdiction and how many hosts it takes.
    public struct RegionShape: Sendable {
        public var name: String
        public var jurisdiction: String
        public var hosts: Int
        public init(name: String, jurisdiction: String, hosts: Int = 1) {
            self.name = name
            self.jurisdiction = jurisdiction
            self.hosts = hosts
        }
    }

    /// How hosts' keys are made known: pinned in region files, or through the cluster's known_hosts file.
    public enum KeyPolicy: Sendable {
        case pinned
        case knownHosts
        /// A known_hosts file with no entries: every host is unknown.
        case emptyKnownHosts
    }

    public let directory: URL

    /// Writes meridian.yaml, regions/ and policies/ for `cluster` into `directory`.
    /// `components` adds component roles to every host and one component per
    /// name to meridian.yaml, with `extraSettings` appended to meridian.yaml.
    @discardableResult
    public static func write(
        cluster: TestHostCluster,
        regions shapes: [RegionShape],
        to directory: URL,
        keys: KeyPolicy = .pinned,
        extraSettings: String = ""
    ) throws -> TestFleet {
        let files = FileManager.default
        try files.createDirectory(at: directory.appendingPathComponent("regions"), withIntermediateDirectories: true)
        try files.createDirectory(at: directory.appendingPathComponent("policies"), withIntermediateDirectories: true)
        let needed = shapes.reduce(0) { $0 + $1.hosts }
        guard needed <= cluster.hosts.count else { throw TestHostError("the regions need \(needed) hosts; the cluster has \(cluster.hosts.count)") }
        var knownHosts = cluster.knownHostsFile
        if keys == .emptyKnownHosts {
            knownHosts = directory.appendingPathComponent(".meridian/known_hosts").path
            try files.createDirectory(atPath: (knownHosts as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try "".write(toFile: knownHosts, atomically: true, encoding: .utf8)
        }
        let settings = """
        version: 1
        name: test
        defaults:
          ssh:
            user: \(cluster.user)
            port: \(cluster.hosts[0].port)
            identity: \(cluster.identityFile)
            agent: false
            known_hosts: \(knownHosts)
            connect_timeout: 3s
            command_timeout: 30s
        components:
          inference:
            artifact: artifacts/inference/{version}
            start: [bin/serve, --address, "{address}", --port, "{port}"]
            ports: { blue: 18101, green: 18102 }
        platform:
          inference: 1.0.0

        """ + extraSettings
        try settings.write(to: directory.appendingPathComponent("meridian.yaml"), atomically: true, encoding: .utf8)
        var next = 0
        var residency = "residency:\n"
        for shape in shapes {
            var text = "name: \(shape.name)\njurisdiction: \(shape.jurisdiction)\nhosts:\n"
            for index in 0..<shape.hosts {
                let host = cluster.hosts[next]
                next += 1
                let roles = index == 0 ? "[gateway, inference]" : "[inference]"
                text += "  - name: \(host.name)\n    address: \(host.address)\n    root: \(host.root)\n    roles: \(roles)\n"
                if keys == .pinned { text += "    host_key: \(host.hostKeyLine)\n" }
            }
            text += "policies: [residency]\n"
            try text.write(to: directory.appendingPathComponent("regions/\(shape.name).yaml"), atomically: true, encoding: .utf8)
        }
        for jurisdiction in Set(shapes.map(\.jurisdiction)).sorted() {
            residency += "  - data: \(jurisdiction)\n    allowed: [\(jurisdiction)]\n"
        }
        try residency.write(to: directory.appendingPathComponent("policies/residency.yaml"), atomically: true, encoding: .utf8)
        return TestFleet(directory: directory)
    }
}
