import Foundation
import MeridianBasics
import MeridianModel

/// What is at a path of a fleet repository, after following symbolic links.
/// Only `.file` is ever opened, so a FIFO cannot block a read and a link
/// cannot pull a file from outside the repository into a plan.
public enum FleetFileStatus: Sendable, Equatable {
    case file(size: Int)
    case directory
    case missing
    /// Resolves to this absolute path, outside the fleet repository.
    case outside(String)
    /// A FIFO, device or socket, named in words.
    case special(String)
    /// Cannot be resolved or examined, with the reason (a link loop, a permission).
    case unresolvable(String)

    /// Why a fleet file at this path cannot be used, nil for a regular file (or a folder when `folderAllowed`).
    public func problem(folderAllowed: Bool = false) -> String? {
        switch self {
        case .file: return nil
        case .directory: return folderAllowed ? nil : "is a folder, not a file"
        case .missing: return "does not exist"
        case .outside(let target): return "resolves to \(target), outside the fleet repository: fleet files must live inside it"
        case .special(let kind): return "is \(kind), not a regular file"
        case .unresolvable(let reason): return "cannot be read: \(reason)"
        }
    }
}

/// An errno value as an error.
struct POSIXErrno: Error { var code: Int32 }


/// Read access to a fleet repository, relative to its root, so the loader can
/// run against the real disk or an in-memory tree in tests.
public protocol FleetFileSystem: Sendable {
    /// What is at `path`, after following symbolic links.
    func status(_ path: String) -> FleetFileStatus
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

    /// realpath(3) of `path`, or the errno that stopped it.
    static func resolve(_ path: String) -> Result<String, POSIXErrno> {
        guard let resolved = realpath(path, nil) else { return .failure(POSIXErrno(code: errno)) }
        defer { free(resolved) }
        return .success(String(cString: resolved))
    }

    public func status(_ path: String) -> FleetFileStatus {
        let realRoot: String
        switch Self.resolve(root.path) {
        case .success(let resolved): realRoot = resolved
        case .failure(let error): return error.code == ENOENT ? .missing : .unresolvable(String(cString: strerror(error.code)))
        }
        let target: String
        switch Self.resolve(url(path).path) {
        case .success(let resolved): target = resolved
        case .failure(let error):
            let code = error.code
            if code == ENOENT || code == ENOTDIR { return .missing }
            if code == ELOOP { return .unresolvable("a symbolic link loop (too many levels of symbolic links)") }
            return .unresolvable(String(cString: strerror(code)))
        }
        guard target == realRoot || target.hasPrefix(realRoot == "/" ? "/" : realRoot + "/") else { return .outside(target) }
        // stat, never open: opening a FIFO would block.
        var info = stat()
        guard stat(target, &info) == 0 else { return .unresolvable(String(cString: strerror(errno))) }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .file(size: Int(info.st_size))
        case S_IFDIR: return .directory
        case S_IFIFO: return .special("a FIFO (named pipe)")
        case S_IFCHR: return .special("a character device")
        case S_IFBLK: return .special("a block device")
        case S_IFSOCK: return .special("a socket")
        default: return .special("not a regular file")
        }
    }

    public func read(_ path: String) throws -> Data? {
        switch status(path) {
        case .missing: return nil
        case .file: break
        case let other: throw FleetFileError(path: path, reason: other.problem() ?? "cannot be read")
        }
        guard access(url(path).path, R_OK) == 0 else { throw FleetFileError(path: path, reason: "cannot be read: \(String(cString: strerror(errno)))") }
        do {
            return try Data(contentsOf: url(path))
        } catch {
            throw FleetFileError(path: path, reason: "cannot be read: \(error.localizedDescription)")
        }
    }

    public func list(_ directory: String) -> [String] {
        guard status(directory) == .directory else { return [] }
        return ((try? FileManager.default.contentsOfDirectory(atPath: url(directory).path)) ?? []).sorted()
    }

    public func isFile(_ path: String) -> Bool {
        if case .file = status(path) { return true }
        return false
    }

    public func isDirectory(_ path: String) -> Bool { status(path) == .directory }
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

    public func status(_ path: String) -> FleetFileStatus {
        if let data = files[path] { return .file(size: data.count) }
        return isDirectory(path) ? .directory : .missing
    }

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

/// Reads a template of the fleet: a regular file inside the repository, at
/// most `maximumBytes`, valid UTF-8. Validation and rendering read templates
/// only through this, so both see the same problems.
public enum FleetTemplates {
    public static let maximumBytes = 1 << 20

    public static func read(_ path: String, from fileSystem: any FleetFileSystem) -> Result<(text: String, sha256: String), FleetFileError> {
        let status = fileSystem.status(path)
        if let problem = status.problem() { return .failure(FleetFileError(path: path, reason: problem)) }
        if case .file(let size) = status, size > maximumBytes {
            return .failure(FleetFileError(path: path, reason: "is \(size) bytes; templates may be at most \(maximumBytes) bytes"))
        }
        let data: Data
        do {
            guard let read = try fileSystem.read(path) else { return .failure(FleetFileError(path: path, reason: "does not exist")) }
            data = read
        } catch {
            return .failure(FleetFileError(path: path, reason: (error as? FleetFileError)?.reason ?? "cannot be read: \(error)"))
        }
        guard data.count <= maximumBytes else { return .failure(FleetFileError(path: path, reason: "is \(data.count) bytes; templates may be at most \(maximumBytes) bytes")) }
        guard let text = String(data: data, encoding: .utf8) else { return .failure(FleetFileError(path: path, reason: "is not valid UTF-8 text: save it as UTF-8")) }
        return .success((text, SHA256.hex(data)))
    }
}
