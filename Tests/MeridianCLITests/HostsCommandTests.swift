import Foundation
import Testing
import MeridianBasics
import MeridianTestHosts

/// `meridian hosts check` and `meridian trust` against real sshd test hosts
/// on 127.0.70.x (and 127.0.71–72, 127.0.149, 127.0.73).
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

    @Test func aRefusedLoginIsReachableAndADeadHostIsNot() throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.149")
        let folder = URL(fileURLWithPath: cluster.directory).appendingPathComponent("fleet")
        try TestFleet.write(cluster: cluster, regions: [.init(name: "eu-west", jurisdiction: "EU", hosts: 2)], to: folder)
        // A key that no host authorizes.
        let stranger = cluster.directory + "/stranger_key"
        let keygen = Process()
        keygen.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        keygen.arguments = ["-q", "-t", "ed25519", "-N", "", "-f", stranger]
        try keygen.run()
        keygen.waitUntilExit()
        let settings = folder.appendingPathComponent("meridian.yaml")
        try String(contentsOf: settings, encoding: .utf8).replacingOccurrences(of: cluster.identityFile, with: stranger)
            .write(to: settings, atomically: true, encoding: .utf8)
        cluster.kill(cluster.hosts[1])
        let check = try CLI.run(["hosts", "check", "--fleet", folder.path])
        #expect(check.status == 1)
        let rows = check.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        let refused = try #require(rows.first { $0.count > 1 && $0[1] == "host1" }, "\(check.stdout)")
        let dead = try #require(rows.first { $0.count > 1 && $0[1] == "host2" }, "\(check.stdout)")
        #expect(Array(refused[3...5]) == ["yes", "trusted", "no"], "\(check.stdout)")
        #expect(Array(dead[3...5]) == ["no", "-", "no"], "\(check.stdout)")
        #expect(check.stderr.contains("authentication refused"), "\(check.stderr)")
        #expect(check.stderr.contains("unreachable") || check.stderr.contains("connect timeout"), "\(check.stderr)")
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

    /// Restarts the host's sshd in a mount namespace of its own whose
    /// `/usr/lib/nginx/modules` is an empty tmpfs: every session on it sees a
    /// gateway host without nginx's JavaScript module, and nothing outside
    /// that namespace changes.
    func relaunchWithoutJavaScriptModule(_ host: TestHost, in cluster: TestHostCluster) throws {
        cluster.kill(host)
        let folder = (NginxJavaScriptModule.path as NSString).deletingLastPathComponent
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        process.arguments = ["--mount", "--propagation", "private", "/bin/sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$1\" && exec /usr/sbin/sshd -f \"$2\" -E \"$3\"",
                             "relaunch", folder, host.configFile, host.logFile]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "sshd of \(host.name) did not start in its own mount namespace")
        let up = (0..<1000).contains { _ in
            if FileManager.default.fileExists(atPath: host.pidFile), TestHostCluster.accepts(address: host.address, port: host.port) { return true }
            usleep(10_000)
            return false
        }
        #expect(up, "sshd of \(host.name) did not accept within 10 s of its restart")
    }

    @Test func aGatewayHostWithoutNginxsJavaScriptModuleFailsTheCheckAndApplyBeforeAnythingChanges() throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.73")
        let fleet = try ApplyTestFleet(cluster: cluster, regions: ["north", "south"], portBase: 19940)
        defer { fleet.tearDown() }
        let bare = cluster.hosts[0]
        try relaunchWithoutJavaScriptModule(bare, in: cluster)
        // The module is really gone for sessions on that host only.
        #expect(FileManager.default.fileExists(atPath: NginxJavaScriptModule.path))

        let check = try fleet.meridian(["hosts", "check"])
        #expect(check.status == 1, "\(check.stdout)\n\(check.stderr)")
        let rows = check.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        let north = try #require(rows.first { $0.first == "north" }, "\(check.stdout)")
        let south = try #require(rows.first { $0.first == "south" }, "\(check.stdout)")
        #expect(north.suffix(3) == ["missing", "nginx-js", "FAIL"], "\(check.stdout)")
        #expect(south.suffix(2) == ["ok", "ok"], "\(check.stdout)")
        #expect(check.stdout.contains("1 of 2 hosts ok."), "\(check.stdout)")
        let sentence = NginxJavaScriptModule.missing(on: "north/\(bare.name) (\(bare.address):\(bare.port))")
        #expect(check.stderr.contains(sentence), "\(check.stderr)")
        #expect(check.stderr.contains("install libnginx-mod-http-js"))

        let apply = try fleet.meridian(["apply", "--auto-approve"])
        #expect(apply.status == 1, "\(apply.stdout)\n\(apply.stderr)")
        #expect((apply.stdout + apply.stderr).contains(NginxJavaScriptModule.missingReason), "\(apply.stdout)\n\(apply.stderr)")
        #expect(apply.stdout.contains("south: applied"), "\(apply.stdout)")
        // Nothing of north's was written: no configuration, no gateway, no manifest.
        for path in ["config/inference-north/server.yaml", "router/nginx.conf", "state/manifest.json"] {
            #expect(!FileManager.default.fileExists(atPath: bare.root + "/" + path), "\(path) was written on the host without the module")
        }
        #expect(FileManager.default.fileExists(atPath: cluster.hosts[1].root + "/router/nginx.conf"))
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
