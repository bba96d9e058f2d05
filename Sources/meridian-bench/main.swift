// Benchmarks that time meridian against a baseline measured in the same run
// on the same machine; see docs/benchmarks.md.
import Foundation
import MeridianBasics
import MeridianSSH
import MeridianTestHosts

let usage = """
    usage: meridian-bench ssh [--hosts 10,50] [--runs 3] [--prefix 127.0.60]
      Starts test sshd hosts on loopback and times `true` on every host:
      OpenSSH's client in parallel (xargs -P N) with its default key exchange
      and with curve25519-sha256, then meridian's fan-out; prints medians and
      ratios, and the memory of open sessions.
    usage: meridian-bench artifact [--mib 1024] [--prefix 127.0.62] [--dir D]
      Packs, hashes and uploads an artifact of the given size to one test
      host and prints the peak resident memory of each phase.
    """

struct Options {
    var hostCounts = [10, 50]
    var runs = 3
    var prefix = "127.0.60"
}

func parse(_ arguments: [String]) -> Options? {
    guard arguments.first == "ssh" else { return nil }
    var options = Options()
    var rest = arguments.dropFirst()
    while let flag = rest.popFirst() {
        guard let value = rest.popFirst() else { return nil }
        switch flag {
        case "--hosts":
            let counts = value.split(separator: ",").compactMap { Int($0) }
            guard !counts.isEmpty, counts.allSatisfy({ (1...250).contains($0) }) else { return nil }
            options.hostCounts = counts
        case "--runs":
            guard let runs = Int(value), runs >= 1 else { return nil }
            options.runs = runs
        case "--prefix":
            options.prefix = value
        default:
            return nil
        }
    }
    return options
}

/// Wall time and controller CPU time (this process and its children) of one measurement.
struct Sample {
    var wall: Double
    var cpu: Double
}

func cpuSeconds() -> Double {
    var own = rusage()
    var children = rusage()
    getrusage(RUSAGE_SELF.rawValue, &own)
    getrusage(RUSAGE_CHILDREN.rawValue, &children)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(own.ru_utime) + seconds(own.ru_stime) + seconds(children.ru_utime) + seconds(children.ru_stime)
}

func measure(_ body: () async throws -> Void) async rethrows -> Sample {
    let cpuBefore = cpuSeconds()
    let start = ContinuousClock.now
    try await body()
    let elapsed = ContinuousClock.now - start
    let (seconds, attoseconds) = elapsed.components
    return Sample(wall: Double(seconds) + Double(attoseconds) / 1e18, cpu: cpuSeconds() - cpuBefore)
}

func median(_ samples: [Sample]) -> Sample {
    let walls = samples.map(\.wall).sorted()
    let cpus = samples.map(\.cpu).sorted()
    return Sample(wall: walls[walls.count / 2], cpu: cpus[cpus.count / 2])
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
}

/// `ssh … HOST true` for every host, N at a time, through xargs -P.
func openSSHInParallel(_ cluster: TestHostCluster, hosts: [TestHost], kex: String?) throws {
    let list = cluster.directory + "/bench-hosts"
    try hosts.map(\.address).joined(separator: "\n").appending("\n").write(toFile: list, atomically: true, encoding: .utf8)
    var sshArguments = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=\(cluster.knownHostsFile)", "-o", "ControlMaster=no",
        "-i", cluster.identityFile, "-l", cluster.user,
    ]
    if let kex { sshArguments += ["-o", "KexAlgorithms=\(kex)"] }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/xargs")
    process.arguments = ["-P", String(hosts.count), "-I", "{}"] + sshArguments + ["{}", "true"]
    process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: list))
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw BenchError(description: "OpenSSH run failed with status \(process.terminationStatus)")
    }
}

func endpoints(_ cluster: TestHostCluster, _ hosts: [TestHost]) -> [SSHEndpoint] {
    hosts.map { host in
        SSHEndpoint(
            region: "bench", hostName: host.name, address: host.address, port: host.port, user: cluster.user,
            identityFiles: [cluster.identityFile], hostKeyPolicy: HostKeyPolicy(knownHostsFile: cluster.knownHostsFile),
            keepaliveInterval: nil)
    }
}

func meridianFanOut(_ cluster: TestHostCluster, hosts: [TestHost]) async throws {
    let outcomes = await SSHFanOut.run(endpoints(cluster, hosts), parallelism: hosts.count) { session in
        try await session.run(RemoteCommand(["true"]))
    }
    for outcome in outcomes {
        if case .failure(let error) = outcome.result { throw error }
    }
}

/// A memory figure of this process from /proc/self/status, in KiB:
/// `VmRSS` (resident now) or `VmHWM` (the peak so far).
func statusKiB(_ field: String) -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}

func residentKiB() -> Int { statusKiB("VmRSS") }

func format(_ value: Double) -> String { String(format: "%.2f", value) }

func runSSHBenchmark(_ options: Options) async throws {
    let largest = options.hostCounts.max() ?? 1
    print("starting \(largest) sshd test hosts on \(options.prefix).1–\(largest)…")
    let cluster = try TestHostCluster(count: largest, addressPrefix: options.prefix)
    // Memory, measured before any fan-out so freed heap is not reused: open
    // one session first so libssh2 and OpenSSL are loaded, then hold one
    // session (that ran one command) to every other host.
    let all = endpoints(cluster, cluster.hosts)
    let first = try await SSHSession.open(all[0])
    let before = residentKiB()
    var held: [SSHSession] = []
    for endpoint in all.dropFirst() {
        let session = try await SSHSession.open(endpoint)
        _ = try await session.run(RemoteCommand(["true"]))
        held.append(session)
    }
    let after = residentKiB()
    print("")
    if held.isEmpty {
        print("memory: needs at least 2 hosts")
    } else {
        print("memory: \(held.count) more open sessions: VmRSS \(before) KiB → \(after) KiB, \((after - before) / held.count) KiB per session")
    }
    for session in held { await session.close() }
    await first.close()
    // Warm-up: first connections pay for page cache and sshd's first fork.
    try openSSHInParallel(cluster, hosts: cluster.hosts, kex: "curve25519-sha256")
    try await meridianFanOut(cluster, hosts: cluster.hosts)

    print("")
    print("exec `true` on every host, median of \(options.runs) (wall s / controller CPU s)")
    print("hosts | OpenSSH default kex | OpenSSH curve25519 | meridian      | meridian ÷ OpenSSH curve25519 | meridian ÷ OpenSSH default")
    for count in options.hostCounts {
        let hosts = Array(cluster.hosts.prefix(count))
        var openDefault: [Sample] = []
        var openCurve: [Sample] = []
        var meridian: [Sample] = []
        for _ in 0..<options.runs {
            openDefault.append(try await measure { try openSSHInParallel(cluster, hosts: hosts, kex: nil) })
            openCurve.append(try await measure { try openSSHInParallel(cluster, hosts: hosts, kex: "curve25519-sha256") })
            meridian.append(try await measure { try await meridianFanOut(cluster, hosts: hosts) })
        }
        let (d, c, m) = (median(openDefault), median(openCurve), median(meridian))
        print("\(String(count).padding(toLength: 5, withPad: " ", startingAt: 0)) | \(format(d.wall)) / \(format(d.cpu))         | \(format(c.wall)) / \(format(c.cpu))        | \(format(m.wall)) / \(format(m.cpu)) | \(format(m.wall / c.wall))                          | \(format(m.wall / d.wall))")
    }

}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    if arguments.first == "artifact" {
        guard let options = ArtifactBenchmarkOptions.parse(arguments.dropFirst()) else {
            print(usage)
            exit(64)
        }
        try await runArtifactBenchmark(options)
    } else {
        guard let options = parse(arguments) else {
            print(usage)
            exit(64)
        }
        try await runSSHBenchmark(options)
    }
} catch {
    print("meridian-bench: \(error)")
    exit(1)
}
