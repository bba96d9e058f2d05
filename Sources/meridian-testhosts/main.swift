// Real sshd test hosts on loopback, by hand: for trying meridian against a
// throw-away fleet and for scripts. See docs/ssh.md.
import Foundation
import MeridianTestHosts

let usage = """
    usage: meridian-testhosts up --count N --dir DIR [--prefix 127.0.50] [--port 22] [--extra-ports 2201-2209]
           meridian-testhosts down --dir DIR
           meridian-testhosts kill|pause|resume --dir DIR HOST
           meridian-testhosts pg-up --dir DIR [--address 127.0.77.1] [--port-offset 1]
           meridian-testhosts pg-down --dir DIR
      up     starts N sshd processes on PREFIX.1…PREFIX.N (loopback only), each with
             its own host key, root folder, home and log under DIR, and prints them;
             --extra-ports makes each also listen on those ports (scale benchmarks)
      down   stops every host started with --dir DIR
      kill   SIGKILLs one host (refuses connections), pause SIGSTOPs it (connections
             hang), resume continues it
      pg-up  starts a PostgreSQL server (initdb + pg_ctl, as the unprivileged user
             meridian-pg when run as root) in DIR on ADDRESS:15432+OFFSET, trusting
             loopback logins as superuser meridian, and prints its URL
      pg-down stops it and removes DIR
    """

func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(code)
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let verb = arguments.first else { fail(usage, code: 64) }
arguments.removeFirst()
var values: [String: String] = [:]
var positional: [String] = []
while !arguments.isEmpty {
    let word = arguments.removeFirst()
    if word.hasPrefix("--") {
        guard !arguments.isEmpty else { fail("\(word) needs a value\n\(usage)", code: 64) }
        values[word] = arguments.removeFirst()
    } else {
        positional.append(word)
    }
}
guard let directory = values["--dir"] else { fail("--dir is required\n\(usage)", code: 64) }
let absolute = URL(fileURLWithPath: directory).standardizedFileURL.path

do {
    switch verb {
    case "up":
        guard let count = Int(values["--count"] ?? ""), count >= 1 else { fail("--count N is required\n\(usage)", code: 64) }
        var extraPorts: [Int] = []
        if let range = values["--extra-ports"] {
            let bounds = range.split(separator: "-").compactMap { Int($0) }
            guard (1...2).contains(bounds.count), let low = bounds.first, let high = bounds.last, 1 <= low, low <= high, high <= 65535 else {
                fail("--extra-ports takes a port or a range such as 2201-2209, got \(range)", code: 64)
            }
            extraPorts = Array(low...high)
        }
        let cluster = try TestHostCluster(
            count: count, addressPrefix: values["--prefix"] ?? "127.0.50", port: Int(values["--port"] ?? "22") ?? 22, directory: absolute,
            extraPorts: extraPorts)
        cluster.detach()
        print("identity file: \(cluster.identityFile)")
        print("known_hosts:   \(cluster.knownHostsFile)")
        print("user:          \(cluster.user)")
        for host in cluster.hosts {
            print("")
            print("\(host.name)  \(host.address):\(host.port)")
            print("  root:     \(host.root)")
            print("  host key: \(host.hostKeyLine)")
            print("  log:      \(host.logFile)")
        }
        if let first = cluster.hosts.first {
            print("")
            print("try: ssh -i \(cluster.identityFile) -o UserKnownHostsFile=\(cluster.knownHostsFile) -p \(first.port) \(cluster.user)@\(first.address) true")
        }
    case "down":
        let stopped = try TestHostCluster.stopAll(inDirectory: absolute)
        print("stopped \(stopped) host(s) of \(absolute)")
    case "pg-up":
        let offset = Int(values["--port-offset"] ?? "1") ?? 1
        let server = try TestPostgresServer(addressOctet: offset, address: values["--address"] ?? "127.0.77.1", directory: absolute)
        server.detach()
        print(server.url(database: "postgres"))
    case "pg-down":
        try TestPostgresServer.stop(directory: absolute)
        print("stopped the PostgreSQL server of \(absolute)")
    case "kill", "pause", "resume":
        guard let name = positional.first else { fail("\(verb) needs a HOST name\n\(usage)", code: 64) }
        guard let host = try TestHostCluster.hosts(inDirectory: absolute).first(where: { $0.name == name }) else {
            fail("no host \(name) in \(absolute)/cluster.json")
        }
        let signal: Int32 = verb == "kill" ? SIGKILL : verb == "pause" ? SIGSTOP : SIGCONT
        let reached = TestHostCluster.send(signal, to: host)
        if verb == "kill" { try? FileManager.default.removeItem(atPath: host.pidFile) }
        print("\(verb): \(host.name) at \(host.address):\(host.port) (\(reached) process(es))")
    default:
        fail(usage, code: 64)
    }
} catch {
    fail("meridian-testhosts: \(error)")
}
