import Foundation
import Testing
import MeridianTestHosts

/// `meridian hosts check` and `meridian trust` against real sshd test hosts
/// on 127.0.70.x.
@Suite(.serialized) struct HostsCommandTests {
    @Test func checkReportsEveryHostAndFailsForADeadOne() throws {
        let cluster = try TestHostCluster(count: 3, addressPrefix: "127.0.70")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU", hosts: 2), .init(name: "us-east", jurisdiction: "US")], to: folder)

        let healthy = try CLI.run(["hosts", "check", "--fleet", folder.path])
        #expect(healthy.status == 0, "\(healthy.stderr)")
        let lines = healthy.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("REGION") == true)
        #expect(lines.filter { $0.hasSuffix("ok") && $0.contains("trusted") }.count == 3, "\(healthy.stdout)")
        #expect(healthy.stdout.contains("3 of 3 hosts ok."))

        let onlyUS = try CLI.run(["hosts", "check", "--fleet", folder.path, "--region", "us-east"])
        #expect(onlyUS.stdout.contains("1 of 1 hosts ok."))
        #expect(try CLI.run(["hosts", "check", "--fleet", folder.path, "--region", "us-est"]).stderr.contains("did you mean \"us-east\"?"))

        cluster.kill(cluster.hosts[1])
        let degraded = try CLI.run(["hosts", "check", "--fleet", folder.path])
        #expect(degraded.status == 1)
        #expect(degraded.stdout.contains("2 of 3 hosts ok."))
        #expect(degraded.stderr.contains("eu-west/host2 (127.0.70.2:22)"), "\(degraded.stderr)")
    }

    @Test func unknownHostsAreRefusedUntilTrusted() throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.71")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU")], to: folder, keys: .emptyKnownHosts)
        let host = cluster.hosts[0]

        let refused = try CLI.run(["hosts", "check", "--fleet", folder.path])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("UNKNOWN"))
        #expect(refused.stderr.contains("meridian trust host1 --region eu-west"), "\(refused.stderr)")

        // Without a terminal and without --yes nothing is recorded.
        let knownHosts = folder.appendingPathComponent(".meridian/known_hosts").path
        let unconfirmed = try CLI.run(["trust", "host1", "--fleet", folder.path])
        #expect(unconfirmed.status == 64)
        #expect(unconfirmed.stderr.contains("no terminal to confirm on"), "\(unconfirmed.stderr)")
        let fingerprint = try sshKeygenFingerprint(host)
        #expect(unconfirmed.stdout.contains(fingerprint), "\(unconfirmed.stdout) lacks \(fingerprint)")
        #expect(try String(contentsOfFile: knownHosts, encoding: .utf8) == "", "trust without confirmation wrote known_hosts")

        let trusted = try CLI.run(["trust", "host1", "--fleet", folder.path, "--yes"])
        #expect(trusted.status == 0, "\(trusted.stderr)")
        #expect(try String(contentsOfFile: knownHosts, encoding: .utf8) == "\(host.address) \(host.hostKeyLine)\n")
        #expect(try CLI.run(["hosts", "check", "--fleet", folder.path]).status == 0)
    }

    /// The fingerprint as OpenSSH's own tool prints it for the host's public key.
    func sshKeygenFingerprint(_ host: TestHost) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        process.arguments = ["-l", "-f", host.directory + "/ssh_host_ed25519_key.pub"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return String(output.split(separator: " ")[1])
    }
}
