import Foundation
import MeridianModel

/// Read access to a fleet repository, relative to its root, so the loader can
/// run against the real disk or an in-memory tree in tests.
public protocol FleetFileSystem: Sendable {
    /// The contents of the file at `path`, or nil when there is none.
    func read(_ path: String) throws -> Data?
    /// The names of the entries directly inside `directory` (empty when it does not exist).
    func list(_ directory: String) -> [String]
    func isFile(_ path: String) -> Bool
    func isDirectory(_ path: String) -> Bool
    /// How the root is named in messages about the root itself.
    var rootDescription: String { get }
}

/// The fleet repository on disk.
public struct LocalFleetFileSystem: FleetFileSystem {
    public let root: URL

    public init(root: URL) { self.root = root.standardizedFileURL }

    public var rootDescription: String { root.path }

    private func url(_ path: String) -> URL { path.isEmpty ? root : root.appendingPathComponent(path) }

    public func read(_ path: String) throws -> Data? {
        guard isFile(path) else { return nil }
        return try Data(contentsOf: url(path))
    }

    public func list(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url(directory).path)) ?? []).sorted()
    }

    public func isFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url(path).path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    public func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url(path).path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}

/// A fleet repository held in memory: file path → contents.
public struct InMemoryFleetFileSystem: FleetFileSystem {
    public var files: [String: Data]

    public init(files: [String: Data]) { self.files = files }
    public init(texts: [String: String]) { self.files = texts.mapValues { Data($0.utf8) } }

    public var rootDescription: String { "(in-memory fleet)" }

    public func read(_ path: String) throws -> Data? { files[path] }

    public func list(_ directory: String) -> [String] {
        let prefix = directory.isEmpty ? "" : directory + "/"
        var names = Set<String>()
        for path in files.keys where path.hasPrefix(prefix) {
            let rest = path.dropFirst(prefix.count)
            if let name = rest.split(separator: "/").first { names.insert(String(name)) }
        }
        return names.sorted()
    }

    public func isFile(_ path: String) -> Bool { files[path] != nil }

    public func isDirectory(_ path: String) -> Bool {
        let prefix = path.isEmpty ? "" : path + "/"
        return files.keys.contains { $0.hasPrefix(prefix) }
    }
}
