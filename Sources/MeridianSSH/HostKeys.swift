import Foundation
import MeridianBasics

/// A host's public key as the server sent it during the handshake.
/// Invariant: `blob` is the SSH wire encoding of the key, and every other
/// property is derived from it.
public struct PublicHostKey: Sendable, Hashable {
    public let blob: [UInt8]

    public init(blob: [UInt8]) { self.blob = blob }

    /// Parses an OpenSSH public-key line (`ssh-ed25519 AAAA… [comment]`).
    public init?(openSSHLine: String) {
        let fields = openSSHLine.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count >= 2, let data = Data(base64Encoded: String(fields[1])) else { return nil }
        let key = PublicHostKey(blob: [UInt8](data))
        guard key.algorithm == String(fields[0]) else { return nil }
        self = key
    }

    /// The algorithm name at the head of the blob, e.g. `ssh-ed25519`.
    public var algorithm: String {
        guard blob.count >= 4 else { return "unknown" }
        let length = Int(blob[0]) << 24 | Int(blob[1]) << 16 | Int(blob[2]) << 8 | Int(blob[3])
        guard length > 0, length <= blob.count - 4 else { return "unknown" }
        return String(decoding: blob[4..<(4 + length)], as: UTF8.self)
    }

    public var base64: String { Data(blob).base64EncodedString() }

    /// `ssh-ed25519 AAAA…`, as in authorized_keys, known_hosts and region files.
    public var openSSHLine: String { "\(algorithm) \(base64)" }

    /// `SHA256:…`, as `ssh-keygen -lf` and OpenSSH's prompts print it.
    public var fingerprint: String {
        let digest = Data(SHA256.digest(Data(blob))).base64EncodedString()
        return "SHA256:" + digest.replacingOccurrences(of: "=", with: "")
    }

    /// Whether a pinned entry (a key line or a `SHA256:` fingerprint) names this key.
    public func matches(pinned entry: String) -> Bool {
        let trimmed = entry.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("SHA256:") {
            return trimmed.trimmingCharacters(in: CharacterSet(charactersIn: "=")) == fingerprint
        }
        return PublicHostKey(openSSHLine: trimmed) == self
    }
}

/// The OpenSSH known_hosts file format, for recording trusted keys.
/// Invariant: lines written here are read back by OpenSSH and by libssh2.
public enum KnownHostsFile {
    /// The host pattern OpenSSH uses: `name` on port 22, `[name]:port` otherwise.
    public static func hostPattern(_ name: String, port: Int) -> String {
        port == 22 ? name : "[\(name)]:\(port)"
    }

    /// One known_hosts line for `names` (host names and/or addresses) on `port`.
    public static func line(names: [String], port: Int, key: PublicHostKey) -> String {
        var seen = Set<String>()
        let patterns = names.filter { seen.insert($0).inserted }.map { hostPattern($0, port: port) }
        return "\(patterns.joined(separator: ",")) \(key.openSSHLine)"
    }

    /// Appends a line for `key` to the known_hosts file at `path`, creating the
    /// file (mode 0600) and its folder when missing. Writes with one append so
    /// a concurrent reader sees either the old file or the old file plus the line.
    public static func append(names: [String], port: Int, key: PublicHostKey, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KnownHostsWriteError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        // A file whose last line lacks a newline would glue our line onto it.
        var prefix = ""
        if let existing = FileManager.default.contents(atPath: path), let last = existing.last, last != UInt8(ascii: "\n") {
            prefix = "\n"
        }
        let bytes = Array((prefix + line(names: names, port: port, key: key) + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw KnownHostsWriteError(path: path, reason: written < 0 ? String(cString: strerror(errno)) : "short write")
        }
        _ = fsync(fd)
    }
}

/// Writing a known_hosts file failed.
public struct KnownHostsWriteError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): cannot record the host key: \(reason)." }
}
