import Foundation
import MeridianState
import Testing

@Suite("File hash key")
struct FileHashKeyTests {
    @Test(arguments: Backend.allCases) func everyStoreOnOneLocationGetsTheSameKey(_ backend: Backend) async throws {
        let fixture = try StoreFixture(backend)
        let first = try await fixture.open()
        let second = try await fixture.open()
        let keys = try await withThrowingTaskGroup(of: Data.self) { group in
            for store in [first, second, first, second] { group.addTask { try await store.fileHashKey() } }
            var keys: [Data] = []
            for try await key in group { keys.append(key) }
            return keys
        }
        #expect(keys.count == 4 && Set(keys).count == 1 && keys[0].count == 32)
        // It travels with a copy of the store.
        let snapshot = try await first.exportSnapshot()
        #expect(snapshot.fileHashKey == keys[0])
        let copy = try await StoreFixture(backend == .sqlite ? .postgres : .sqlite).open()
        try await copy.importSnapshot(snapshot, replacing: false)
        #expect(try await copy.fileHashKey() == keys[0])
    }
}
