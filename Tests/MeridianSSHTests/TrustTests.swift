import Foundation
import MeridianBasics
import MeridianSSH
import MeridianTestHosts
import Testing

/// Host-key verification and authentication against real sshd test hosts.
@Suite struct TrustTests {
    @Test func unknownHostIsRefusedWithFingerprintAndTrustCommand() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.20")
        let host = cluster.hosts[0]
        let key = try #require(PublicHostKey(openSSHLine: host.hostKeyLine))
        let emptyKnownHosts = cluster.directory + "/empty_known_hosts"
        try "".write(toFile: emptyKnownHosts, atomically: true, encoding: .utf8)
        for policy in [HostKeyPolicy(), HostKeyPolicy(knownHostsFile: emptyKnownHosts), HostKeyPolicy(knownHostsFile: cluster.directory + "/missing")] {
            let error = try #require(await sshError { _ = try await SSHSession.open(endpoint(cluster, host, policy: policy)) })
            #expect(error.kind == .hostKeyUnknown(key: key, trustCommand: "meridian trust host1 --region test-region"))
            #expect(error.description.contains(key.fingerprint))
            #expect(error.description.contains("meridian trust host1 --region test-region"))
            #expect(error.description.contains("test-region/host1 (127.0.20.1:22)"))
        }

        // What `meridian trust` does: scan without trusting, then record.
        let scanned = try await SSHSession.scanHostKey(endpoint(cluster, host, policy: HostKeyPolicy()))
        #expect(scanned == key)
        let knownHosts = cluster.directory + "/trusted/known_hosts"
        try KnownHostsFile.append(names: [host.address, host.name], port: host.port, key: scanned, to: knownHosts)
        let session = try await SSHSession.open(endpoint(cluster, host, policy: HostKeyPolicy(knownHostsFile: knownHosts)))
        #expect(session.hostKey == key)
        await session.close()
    }

    @Test func changedKeyIsRefusedLoudly() async throws {
        let cluster = try TestHostCluster(count: 2, addressPrefix: "127.0.21")
        let host = cluster.hosts[0]
        let presented = try #require(PublicHostKey(openSSHLine: host.hostKeyLine))
        let otherKey = try #require(PublicHostKey(openSSHLine: cluster.hosts[1].hostKeyLine))

        // Pinned in the region file, as a key line or as a fingerprint.
        for pin in [otherKey.openSSHLine, otherKey.fingerprint] {
            let error = try #require(await sshError { _ = try await SSHSession.open(endpoint(cluster, host, policy: HostKeyPolicy(pinnedKeys: [pin]))) })
            #expect(error.kind == .hostKeyChanged(key: presented, expected: [otherKey.fingerprint]))
            #expect(error.description.contains("HOST KEY CHANGED"))
            #expect(error.description.contains("man-in-the-middle"))
        }

        // A known_hosts file whose entry for this address holds another key.
        let forged = cluster.directory + "/forged_known_hosts"
        try "\(host.address) \(otherKey.openSSHLine)\n".write(toFile: forged, atomically: true, encoding: .utf8)
        let error = try #require(await sshError { _ = try await SSHSession.open(endpoint(cluster, host, policy: HostKeyPolicy(knownHostsFile: forged))) })
        #expect(error.kindName == "hostKeyChanged")

        // The right pin is accepted, in either form, even beside a wrong one.
        for pins in [[presented.openSSHLine + " comment"], [presented.fingerprint], [otherKey.fingerprint, presented.fingerprint]] {
            let session = try await SSHSession.open(endpoint(cluster, host, policy: HostKeyPolicy(pinnedKeys: pins)))
            await session.close()
        }
    }

    @Test func aRevokedKeyIsRefusedEvenWhenPinnedOrKnown() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.148")
        let host = cluster.hosts[0]
        let presented = try #require(PublicHostKey(openSSHLine: host.hostKeyLine))
        let knownHosts = cluster.directory + "/revoked_known_hosts"
        try "\(host.address) \(presented.openSSHLine)\n@revoked * \(presented.openSSHLine) compromised\n".write(toFile: knownHosts, atomically: true, encoding: .utf8)
        for pins in [[], [presented.fingerprint]] {
            let policy = HostKeyPolicy(pinnedKeys: pins, knownHostsFile: knownHosts)
            let error = try #require(await sshError { _ = try await SSHSession.open(endpoint(cluster, host, policy: policy)) })
            #expect(error.kind == .hostKeyRevoked(key: presented, file: knownHosts))
            #expect(error.description.contains("HOST KEY REVOKED"))
        }
        // Without the @revoked line the same file is trusted.
        try "\(host.address) \(presented.openSSHLine)\n".write(toFile: knownHosts, atomically: true, encoding: .utf8)
        let session = try await SSHSession.open(endpoint(cluster, host, policy: HostKeyPolicy(knownHostsFile: knownHosts)))
        await session.close()
    }

    @Test func hashedKnownHostsEntriesMatch() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.22")
        let host = cluster.hosts[0]
        let hashed = cluster.directory + "/hashed_known_hosts"
        try "# comment\n@cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv4j8c0m3n0g0j5u3r2b8fJmA1f2cQk8rD3Yx6e4oZq\n\(host.address) \(host.hostKeyLine)\n"
            .write(toFile: hashed, atomically: true, encoding: .utf8)
        try runLocal("/usr/bin/ssh-keygen", ["-H", "-f", hashed])
        let text = try String(contentsOfFile: hashed, encoding: .utf8)
        #expect(text.contains("|1|"))
        #expect(!text.contains(host.address))
        let session = try await SSHSession.open(endpoint(cluster, host, policy: HostKeyPolicy(knownHostsFile: hashed)))
        await session.close()
    }

    @Test func wrongIdentityIsRefused() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.23")
        let stranger = cluster.directory + "/stranger"
        try runLocal("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", stranger])
        var target = endpoint(cluster, cluster.hosts[0])
        target.identityFiles = [stranger, cluster.directory + "/absent_key"]
        let error = try #require(await sshError { _ = try await SSHSession.open(target) })
        #expect(error.kindName == "authRefused")
        #expect(error.description.contains("stranger"))
        #expect(error.description.contains("absent_key (not readable)"))
        #expect(error.description.contains("127.0.23.1"))
    }

    @Test func passphraseComesFromTheEnvironment() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.24")
        let locked = cluster.directory + "/locked"
        let passphrase = "correct horse \(UUID().uuidString)"
        try runLocal("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", passphrase, "-f", locked])
        let authorized = try String(contentsOfFile: cluster.directory + "/authorized_keys", encoding: .utf8)
        try (authorized + (try String(contentsOfFile: locked + ".pub", encoding: .utf8))).write(toFile: cluster.directory + "/authorized_keys", atomically: true, encoding: .utf8)
        let variable = "MERIDIAN_TEST_PASSPHRASE_\(UUID().uuidString.prefix(8))"
        var target = endpoint(cluster, cluster.hosts[0])
        target.identityFiles = [locked]
        target.passphraseVariable = variable

        let withoutIt = try #require(await sshError { _ = try await SSHSession.open(target) })
        #expect(withoutIt.kindName == "authRefused")

        setenv(variable, passphrase, 1)
        defer { unsetenv(variable) }
        let session = try await SSHSession.open(target)
        #expect(try await session.run(RemoteCommand(["echo", "unlocked"])).stdoutText == "unlocked\n")
        await session.close()
    }

    @Test func agentKeysAuthenticate() async throws {
        let cluster = try TestHostCluster(count: 1, addressPrefix: "127.0.25")
        let socketPath = cluster.directory + "/agent.sock"
        // In the foreground (-D), so the test owns the process and no daemon
        // keeps a pipe open.
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-agent")
        agent.arguments = ["-D", "-a", socketPath]
        agent.standardOutput = FileHandle.nullDevice
        agent.standardError = FileHandle.nullDevice
        try agent.run()
        defer {
            kill(agent.processIdentifier, SIGKILL)
            agent.waitUntilExit()
        }
        #expect(await eventually { FileManager.default.fileExists(atPath: socketPath) })

        var target = endpoint(cluster, cluster.hosts[0])
        target.identityFiles = []
        target.useAgent = true
        target.agentSocket = socketPath
        let empty = try #require(await sshError { _ = try await SSHSession.open(target) })
        #expect(empty.kindName == "authRefused")
        #expect(empty.description.contains("ssh-agent (holds no keys)"))

        try runLocal("/usr/bin/ssh-add", ["-q", cluster.identityFile], environment: ["SSH_AUTH_SOCK": socketPath, "PATH": "/usr/bin:/bin"])
        let session = try await SSHSession.open(target)
        #expect(try await session.run(RemoteCommand(["echo", "agent"])).stdoutText == "agent\n")
        await session.close()
    }
}
