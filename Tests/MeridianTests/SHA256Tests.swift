import Foundation
import Testing
@testable import MeridianBasics

@Suite struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownVectors(input: String, expected: String) {
        #expect(SHA256.hex(input) == expected)
    }

    @Test func millionAs() {
        #expect(SHA256.hex(Data(repeating: UInt8(ascii: "a"), count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func incrementalEqualsOneShot() {
        let data = Data((0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        for split in [0, 1, 63, 64, 65, 500, 999, 1000] {
            var hasher = SHA256()
            hasher.update(data.prefix(split))
            hasher.update(Array(data.dropFirst(split)))
            #expect(hasher.finalize().hexString == SHA256.hex(data), "split at \(split)")
        }
    }

    @Test func fileHashStreamsAcrossChunks() throws {
        // Two and a half read chunks, so the streaming loop's partial last chunk is covered.
        let data = Data((0..<(SHA256.streamChunk * 5 / 2)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 11) })
        let path = NSTemporaryDirectory() + "meridian-sha256-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try data.write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let hashed = try SHA256.hexOfFile(atPath: path)
        #expect(hashed.hex == SHA256.hex(data))
        #expect(hashed.size == Int64(data.count))
        #expect(throws: FileHashError.self) { try SHA256.hexOfFile(atPath: path + ".absent") }
    }
}
