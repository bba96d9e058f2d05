import CLibSSH2
import Foundation
import MeridianBasics

/// Decides whether a presented host key is trusted under an endpoint's
/// policy. Invariant: it accepts only an exact match with a pinned key or a
/// known_hosts entry; otherwise it throws `hostKeyChanged` when the host has
/// any recorded key, and `hostKeyUnknown` when it has none.
struct HostKeyVerifier {
    let endpoint: SSHEndpoint

    /// The names a known_hosts entry may carry for this host.
    var lookupNames: [String] {
        endpoint.hostName == endpoint.address ? [endpoint.address] : [endpoint.address, endpoint.hostName]
    }

    func verify(_ key: PublicHostKey, hostKeyType: Int32, rawKey: UnsafePointer<CChar>, length: Int) throws {
        // A revoked key is refused whatever else trusts it, as OpenSSH does.
        if let path = endpoint.hostKeyPolicy.knownHostsFile, Self.revokedKeys(path: path).contains(key) {
            throw SSHError(.hostKeyRevoked(key: key, file: path), at: endpoint.place)
        }
        let pins = endpoint.hostKeyPolicy.pinnedKeys.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        if pins.contains(where: { key.matches(pinned: $0) }) { return }

        var knownHostsMismatch: [String] = []
        if let path = endpoint.hostKeyPolicy.knownHostsFile {
            switch knownHostsVerdict(path: path, hostKeyType: hostKeyType, rawKey: rawKey, length: length) {
            case .match: return
            case .mismatch: knownHostsMismatch.append("the key recorded for \(lookupNames.joined(separator: "/")) in \(path)")
            case .notFound: break
            }
        }
        if !pins.isEmpty || !knownHostsMismatch.isEmpty {
            let expected = pins.map { PublicHostKey(openSSHLine: $0)?.fingerprint ?? $0 } + knownHostsMismatch
            throw SSHError(.hostKeyChanged(key: key, expected: expected), at: endpoint.place)
        }
        throw SSHError(.hostKeyUnknown(key: key, trustCommand: trustCommand), at: endpoint.place)
    }

    /// The command that records this host's key after the operator checked it.
    var trustCommand: String {
        RemoteCommand(["meridian", "trust", endpoint.hostName, "--region", endpoint.region]).line
    }

    enum Verdict { case match, mismatch, notFound }

    /// Keys on `@revoked` lines of a known_hosts file (`@revoked PATTERNS TYPE BASE64 [comment]`),
    /// whatever their host patterns: a revoked key is never acceptable.
    static func revokedKeys(path: String) -> Set<PublicHostKey> {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        var keys = Set<PublicHostKey>()
        for line in text.split(whereSeparator: \.isNewline) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 4, fields[0] == "@revoked" else { continue }
            if let key = PublicHostKey(openSSHLine: fields[2...].joined(separator: " ")) { keys.insert(key) }
        }
        return keys
    }

    /// Reads the file line by line so one line libssh2 cannot parse (a
    /// certificate authority, a security-key type) does not hide the others.
    private func knownHostsVerdict(path: String, hostKeyType: Int32, rawKey: UnsafePointer<CChar>, length: Int) -> Verdict {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return .notFound }
        guard let session = libssh2_session_init_ex(nil, nil, nil, nil) else { return .notFound }
        defer { libssh2_session_free(session) }
        guard let hosts = libssh2_knownhost_init(session) else { return .notFound }
        defer { libssh2_knownhost_free(hosts) }
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix("@") { continue }
            _ = libssh2_knownhost_readline(hosts, trimmed, trimmed.utf8.count, LibSSH2.knownHostFileOpenSSH)
        }
        let typeMask = LibSSH2.knownHostTypePlain | LibSSH2.knownHostKeyEncRaw | LibSSH2.knownHostKeyBits(hostKeyType: hostKeyType)
        var verdict = Verdict.notFound
        for name in lookupNames {
            var found: UnsafeMutablePointer<libssh2_knownhost>?
            let result = libssh2_knownhost_checkp(hosts, name, Int32(endpoint.port), rawKey, length, typeMask, &found)
            if result == LibSSH2.knownHostMatch { return .match }
            if result == LibSSH2.knownHostMismatch { verdict = .mismatch }
        }
        return verdict
    }
}
