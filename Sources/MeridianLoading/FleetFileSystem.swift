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

    /// Opens without blocking and reads only a regular file: a FIFO, socket
    /// or device where a fleet file should be would otherwise block the
    /// loader forever, or read without end.
    public func read(_ path: String) throws -> Data? {
        guard isFile(path) else { return nil }
        let descriptor = open(url(path).path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw FleetFileError(path: path, reason: String(cString: strerror(errno))) }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw FleetFileError(path: path, reason: String(cString: strerror(errno))) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw FleetFileError(path: path, reason: "it is not a regular file (a FIFO, socket or device); fleet files must be plain files")
        }
        do {
            return try handle.readToEnd() ?? Data()
        } catch {
            throw FleetFileError(path: path, reason: "reading failed: \(error.localizedDescription)")
        }
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

/// A fleet file that exists but cannot be read as one.
public struct FleetFileError: Error, LocalizedError, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    public var description: String { "\(path) cannot be read: \(reason)" }
    public var errorDescription: String? { reason }
}

extension FleetFileSystem {
    /// The bytes of every template the config entries of `regions` (all when
    /// nil) name, read through this file system, so a template is read under
    /// the same rules as every other fleet file. One that cannot be read is
    /// left out: the validator reports it.
    public func templateFiles(of fleet: Fleet, regions: Set<String>? = nil) -> [String: Data] {
        var result: [String: Data] = [:]
        for region in fleet.regions where regions?.contains(region.name) ?? true {
            for config in region.configFiles where result[config.template] == nil {
                if let data = try? read(config.template) { result[config.template] = data }
            }
        }
        return result
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
