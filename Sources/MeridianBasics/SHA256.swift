import Crypto
import Foundation

/// SHA-256, computed by swift-crypto. meridian hashes governance bundles,
/// managed files, artifacts, plans and audit entries with it; this thin
/// wrapper keeps one spelling (`SHA256.hex(…)`) across the layers and adds
/// streaming over files so a large artifact is never held in memory to hash.
public struct SHA256 {
    private var hasher = Crypto.SHA256()

    public init() {}

    public mutating func update(_ data: Data) { hasher.update(data: data) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }

    public mutating func update<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        hasher.update(data: Array(bytes))
    }

    /// The raw 32-byte digest of everything fed so far.
    public func finalize() -> [UInt8] { Array(hasher.finalize()) }

    /// The lowercase hex digest of `data`.
    public static func hex(_ data: Data) -> String { Crypto.SHA256.hash(data: data).hexString }

    /// The lowercase hex digest of the UTF-8 bytes of `text`.
    public static func hex(_ text: String) -> String { Crypto.SHA256.hash(data: Data(text.utf8)).hexString }

    /// The raw 32-byte digest of `data`.
    public static func digest(_ data: Data) -> [UInt8] { Array(Crypto.SHA256.hash(data: data)) }

    /// The read size of the streaming hash: large enough to keep system calls
    /// few, small enough that hashing a file of any size stays in constant memory.
    public static let streamChunk = 1 << 20

    /// The lowercase hex digest and size of the file at `path`, read in
    /// fixed-size chunks.
    public static func hexOfFile(atPath path: String) throws -> (hex: String, size: Int64) {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw FileHashError(path: path, reason: "cannot be opened for reading")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while true {
            let chunk: Data
            do { chunk = try handle.read(upToCount: streamChunk) ?? Data() } catch {
                throw FileHashError(path: path, reason: "could not be read (\(error.localizedDescription))")
            }
            if chunk.isEmpty { break }
            size += Int64(chunk.count)
            hasher.update(chunk)
        }
        return (hasher.finalize().hexString, size)
    }
}

/// A file that could not be hashed, with its path and why.
public struct FileHashError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

extension Sequence where Element == UInt8 {
    /// Lowercase hexadecimal, two digits a byte.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in self { out.append(digits[Int(byte >> 4)]); out.append(digits[Int(byte & 0xf)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
