import Foundation
import MeridianSSH
import Testing

@Suite struct HostKeyTests {
    /// A fresh ed25519 key pair in a temporary folder.
    func makeKey() throws -> (line: String, path: String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-keytest-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/key"
        try runLocal("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", path])
        let line = try String(contentsOfFile: path + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return (line, path)
    }

    @Test func fingerprintIsOpenSSHs() throws {
        let (line, path) = try makeKey()
        let key = try #require(PublicHostKey(openSSHLine: line))
        let printed = try runLocal("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", path + ".pub"])
        let expected = printed.split(separator: " ")[1]
        #expect(key.fingerprint == String(expected))
        #expect(key.algorithm == "ssh-ed25519")
        #expect(key.openSSHLine == line.split(separator: " ").prefix(2).joined(separator: " "))
        #expect(key.matches(pinned: key.fingerprint))
        #expect(key.matches(pinned: line))
        let other = try #require(PublicHostKey(openSSHLine: try makeKey().line))
        #expect(!key.matches(pinned: other.fingerprint))
        #expect(!key.matches(pinned: other.openSSHLine))
    }

    @Test func badLinesAreNotKeys() {
        #expect(PublicHostKey(openSSHLine: "ssh-ed25519") == nil)
        #expect(PublicHostKey(openSSHLine: "ssh-ed25519 !!!") == nil)
        // The algorithm word must agree with the blob.
        #expect(PublicHostKey(openSSHLine: "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDbLN6r8m0yYb3k7xYkS8uOaJH9pS8p7xR0j6b7zZ9wE") == nil)
    }

    @Test func knownHostsLinesFollowOpenSSH() throws {
        let key = try #require(PublicHostKey(openSSHLine: try makeKey().line))
        #expect(KnownHostsFile.line(names: ["10.1.2.3", "gw-1"], port: 22, key: key) == "10.1.2.3,gw-1 \(key.openSSHLine)")
        #expect(KnownHostsFile.line(names: ["::1", "::1"], port: 2222, key: key) == "[::1]:2222 \(key.openSSHLine)")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-kh-\(UUID().uuidString)/known_hosts").path
        try KnownHostsFile.append(names: ["a"], port: 22, key: key, to: path)
        try KnownHostsFile.append(names: ["b"], port: 23, key: key, to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a \(key.openSSHLine)\n[b]:23 \(key.openSSHLine)\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }
}
