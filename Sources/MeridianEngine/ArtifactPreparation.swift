import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning

/// A prepared artifact and the local file that holds its bytes. Invariant:
/// the SHA-256 of the file at `localPath` is `artifact.sha256`.
public struct LocalArtifact: Sendable, Equatable {
    public var artifact: PreparedArtifact
    public var localPath: String

    public init(artifact: PreparedArtifact, localPath: String) {
        self.artifact = artifact
        self.localPath = localPath
    }
}

/// An artifact that could not be prepared, naming the component, version and path.
public struct ArtifactProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var component: String
    public var version: String
    public var reason: String
    public var description: String { "component \(component) \(version): \(reason)" }
}

/// Turns the `artifacts/…` entries a fleet's regions need into tar files
/// named by their SHA-256. A folder is packed deterministically (sorted
/// names, mtime 0, owner and group 0, numeric ids) so that the same tree
/// always gives the same bytes and the same hash, on any control plane.
/// Symbolic links in a folder are followed, so the release on the host holds
/// real files (versions can share code through links, as the example stack's
/// do); a link that leads outside the fleet repository, to anything but a
/// file or folder, or around a loop stops the preparation instead. A
/// file is taken as it is and must be a tar archive (`tar -xf` reads it on
/// the host, compressed or not). Packed folders are cached under
/// `<fleet>/.meridian/artifacts/<sha256>.tar`.
public struct ArtifactPreparation: Sendable {
    public let fleet: Fleet
    public let fleetRoot: URL

    public init(fleet: Fleet, fleetRoot: URL) {
        self.fleet = fleet
        self.fleetRoot = fleetRoot
    }

    public var cacheFolder: URL { fleetRoot.appendingPathComponent(".meridian/artifacts", isDirectory: true) }

    /// Every (component, version) the named regions (all when nil) run, sorted.
    public func requirements(regions wanted: Set<String>?) -> [(component: Component, version: Version)] {
        var seen = Set<String>()
        var out: [(Component, Version)] = []
        for region in fleet.regions where wanted?.contains(region.name) ?? true {
            for host in region.hosts {
                for name in host.components {
                    guard let component = fleet.component(named: name), let version = fleet.version(of: name, in: region) else { continue }
                    if seen.insert("\(name)@\(version)").inserted { out.append((component, version)) }
                }
            }
        }
        return out.sorted { ($0.0.name, $0.1.description) < ($1.0.name, $1.1.description) }
    }

    /// Prepares every artifact the named regions need; problems are collected, not thrown one by one.
    public func prepare(regions wanted: Set<String>?) -> (artifacts: [LocalArtifact], problems: [ArtifactProblem]) {
        var artifacts: [LocalArtifact] = []
        var problems: [ArtifactProblem] = []
        for (component, version) in requirements(regions: wanted) {
            switch prepare(component, version: version) {
            case .success(let artifact): artifacts.append(artifact)
            case .failure(let problem): problems.append(problem)
            }
        }
        return (artifacts, problems)
    }

    public func prepare(_ component: Component, version: Version) -> Result<LocalArtifact, ArtifactProblem> {
        let resolved = component.artifact.resolved(for: version)
        func problem(_ reason: String) -> Result<LocalArtifact, ArtifactProblem> {
            .failure(ArtifactProblem(component: component.name, version: version.description, reason: reason))
        }
        switch component.artifact {
        case .url:
            return problem("artifact \(resolved) is a URL; fetching artifacts on the hosts is not supported yet: put the artifact in the fleet repository under artifacts/")
        case .path:
            break
        }
        let path = fleetRoot.appendingPathComponent(resolved).standardizedFileURL.path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            return problem("artifact \(resolved) does not exist in the fleet repository: add the file or folder, or fix components.\(component.name).artifact")
        }
        if !isFolder.boolValue {
            // Hashed as a stream: an artifact of any size costs constant memory.
            guard let hashed = try? SHA256.hexOfFile(atPath: path) else {
                return problem("artifact \(resolved) cannot be read")
            }
            let name = (resolved as NSString).lastPathComponent
            return .success(LocalArtifact(
                artifact: PreparedArtifact(component: component.name, version: version.description, fileName: name, sha256: hashed.hex),
                localPath: path
            ))
        }
        if let reason = Self.linkProblem(folder: path, fleetRoot: fleetRoot.path, shown: resolved) {
            return problem(reason)
        }
        switch Self.pack(folder: path, cacheFolder: cacheFolder) {
        case .failure(let reason):
            return problem("packing \(resolved) failed: \(reason)")
        case .success(let packed):
            return .success(LocalArtifact(
                artifact: PreparedArtifact(component: component.name, version: version.description, fileName: "\(component.name)-\(version).tar", sha256: packed.sha256),
                localPath: packed.path
            ))
        }
    }

    /// Packs `folder` into `<cacheFolder>/<sha256>.tar`. tar writes the
    /// archive to disk itself and it is hashed as a stream from there, so
    /// packing a folder of any size costs this process constant memory.
    /// tar follows links: callers check `linkProblem` first, as `prepare` does.
    public static func pack(folder: String, cacheFolder: URL) -> Result<(sha256: String, path: String), LocalProcessError> {
        do {
            try FileManager.default.createDirectory(at: cacheFolder, withIntermediateDirectories: true)
        } catch {
            return .failure(LocalProcessError(reason: "cannot create \(cacheFolder.path): \(error.localizedDescription)"))
        }
        let temporary = cacheFolder.appendingPathComponent(".packing-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tar").path
        defer { unlink(temporary) }
        if case .failure(let failed) = LocalProcess.run(packArguments(folder: folder, into: temporary)) {
            return .failure(failed)
        }
        guard let sha = try? SHA256.hexOfFile(atPath: temporary).hex else {
            return .failure(LocalProcessError(reason: "tar produced no readable archive"))
        }
        let cached = cacheFolder.appendingPathComponent("\(sha).tar").path
        if !FileManager.default.fileExists(atPath: cached), rename(temporary, cached) != 0 {
            return .failure(LocalProcessError(reason: "cannot move the packed archive to \(cached): \(String(cString: strerror(errno)))"))
        }
        return .success((sha, cached))
    }

    /// GNU tar options that make the archive depend on names, contents and
    /// modes only, following symbolic links (checked by `linkProblem` first).
    public static func packArguments(folder: String, into archive: String) -> [String] {
        ["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "--format=gnu", "--dereference",
         "-C", folder, "-cf", archive, "."]
    }

    /// Why the folder cannot be packed with its links followed, or nil: every
    /// link under it (and the folder itself) must resolve inside `fleetRoot`
    /// to a regular file or a folder, and no link may lead back to a folder
    /// it is in. `shown` is the folder as the fleet names it.
    public static func linkProblem(folder: String, fleetRoot: String, shown: String) -> String? {
        guard let root = realPath(fleetRoot) else { return "the fleet repository \(fleetRoot) cannot be resolved" }
        func inside(_ path: String) -> Bool { path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/") }
        guard let start = realPath(folder), inside(start) else {
            return "artifact \(shown) resolves outside the fleet repository: keep artifacts inside it"
        }
        // (real folder, how the fleet names it, real folders above it) still to read.
        var pending: [(String, String, [String])] = [(start, shown, [start])]
        var visited = 0
        while let (real, named, chain) = pending.popLast() {
            visited += 1
            guard visited <= 100_000 else { return "artifact \(shown) holds more than 100000 folders" }
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: real).sorted() } catch {
                return "artifact folder \(named) cannot be read: \(error.localizedDescription)"
            }
            for name in names {
                let path = real + "/" + name
                var info = stat()
                guard lstat(path, &info) == 0 else { return "\(named)/\(name) cannot be read: \(String(cString: strerror(errno)))" }
                let isLink = (info.st_mode & S_IFMT) == S_IFLNK
                var target = path
                if isLink {
                    guard let resolved = realPath(path) else { return "the link \(named)/\(name) leads nowhere: fix or remove it" }
                    guard inside(resolved) else { return "the link \(named)/\(name) leads outside the fleet repository: artifacts may link only to files inside it" }
                    guard stat(resolved, &info) == 0 else { return "\(named)/\(name) cannot be read: \(String(cString: strerror(errno)))" }
                    target = resolved
                }
                switch info.st_mode & S_IFMT {
                case S_IFREG:
                    continue
                case S_IFDIR:
                    if isLink, chain.contains(where: { target == $0 || $0.hasPrefix(target + "/") }) {
                        return "the link \(named)/\(name) leads back to a folder it is in: a release would never end"
                    }
                    pending.append((target, "\(named)/\(name)", chain + [target]))
                default:
                    return "\(named)/\(name) is neither a file nor a folder: an artifact holds only files and folders"
                }
            }
        }
        return nil
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// Runs a short local program to completion (tar, git) on the calling
/// thread: callers are synchronous preparation steps, never the cooperative pool's hot path.
enum LocalProcess {
    static func run(_ argv: [String], in directory: String? = nil) -> Result<Data, LocalProcessError> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return .failure(LocalProcessError(reason: "cannot start \(argv[0]): \(error.localizedDescription)"))
        }
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return .failure(LocalProcessError(reason: "\(argv[0]) exited \(process.terminationStatus): \(message)"))
        }
        return .success(stdout)
    }
}

/// A local program failed, with its message.
public struct LocalProcessError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { reason }
}
