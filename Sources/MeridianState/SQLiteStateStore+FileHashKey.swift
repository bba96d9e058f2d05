import Foundation
import GRDB

extension SQLiteStateStore {
    /// Made inside the write transaction that reads it, so two processes
    /// opening a fresh store agree on one key.
    public func fileHashKey() async throws -> Data {
        let now = clock.now().rawValue
        return try await write { db in
            if let key = try Data.fetchOne(db, sql: "SELECT key FROM file_hash_key WHERE id = 1") { return key }
            var generator = SystemRandomNumberGenerator()
            let key = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
            try db.execute(sql: "INSERT INTO file_hash_key (id, key, created_at) VALUES (1, ?, ?)", arguments: [key, now])
            return key
        }
    }
}
