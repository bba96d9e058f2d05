import Foundation
import MeridianState
import PostgresNIO

extension PostgresStateStore {
    /// Made inside the transaction that reads it, under an advisory lock, so
    /// every process on every machine sharing the database gets one key.
    public func fileHashKey() async throws -> Data {
        try await write { c in
            try await self.lock(c, PostgresSchema.fileHashKeyLock)
            if let row = try await c.record("SELECT key FROM file_hash_key WHERE id = 1", location: self.location) {
                return try row.row["key"].decode(Data.self)
            }
            let now = try await self.now(c)
            var generator = SystemRandomNumberGenerator()
            let key = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
            try await c.execute("INSERT INTO file_hash_key (id, key, created_at) VALUES (1, \(key), \(now.rawValue))")
            return key
        }
    }
}
