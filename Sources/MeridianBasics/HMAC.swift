import Foundation

/// HMAC-SHA256 (RFC 2104), split so that the part over the message can run
/// on a host with nothing but `sha256sum`: the host hashes the inner pad
/// followed by the file, and the control plane finishes with the outer pad.
/// Invariant: `finish(key:innerDigest:)` of `SHA256(innerPad(key) + m)`
/// equals `mac(key:message:)` of `m`.
public enum HMACSHA256 {
    static let blockSize = 64

    /// The key as one SHA-256 block: hashed first when longer, zero-padded.
    static func block(_ key: Data) -> [UInt8] {
        var bytes = key.count > blockSize ? SHA256.digest(key) : Array(key)
        bytes += [UInt8](repeating: 0, count: blockSize - bytes.count)
        return bytes
    }

    /// The 64 bytes hashed before the message.
    public static func innerPad(_ key: Data) -> Data { Data(block(key).map { $0 ^ 0x36 }) }

    /// The 64 bytes hashed before the inner digest.
    public static func outerPad(_ key: Data) -> Data { Data(block(key).map { $0 ^ 0x5c }) }

    /// The MAC of `message`, as raw bytes.
    public static func mac(key: Data, message: Data) -> Data {
        finish(key: key, innerDigest: Data(SHA256.digest(innerPad(key) + message)))
    }

    /// The MAC of `message`, as lowercase hex.
    public static func hex(key: Data, message: Data) -> String { mac(key: key, message: message).hexString }

    /// Completes a MAC from the digest of the inner pad and the message.
    public static func finish(key: Data, innerDigest: Data) -> Data {
        Data(SHA256.digest(outerPad(key) + innerDigest))
    }
}
