import Foundation
import MeridianBasics
import MeridianModel
import Yams

/// The result of reading a fleet: the fleet when every file could be read into
/// the model, and every diagnostic found along the way.
public struct LoadedFleet: Sendable {
    public var fleet: Fleet?
    public var diagnostics: Diagnostics
    /// Region files that could not be read or parsed, by region name: checks
    /// over all regions (residency) would only repeat their errors.
    public var unreadableRegions: Set<String> = []
}

/// Reads a fleet repository (`meridian.yaml`, `regions/*.yaml`,
/// `policies/*.yaml`) into the model and validates it. Pure over its file
/// system; every problem in every file is reported, none stops the others.
public struct FleetLoader: Sendable {
    public static let settingsFile = "meridian.yaml"
    public static let regionsFolder = "regions"
    public static let policiesFolder = "policies"
    public static let templatesFolder = "templates"

    let fileSystem: any FleetFileSystem

    public init(fileSystem: any FleetFileSystem) { self.fileSystem = fileSystem }

    public init(root: URL) { self.init(fileSystem: LocalFleetFileSystem(root: root)) }

    /// Only meridian.yaml's `state:`, for commands that need the state store
    /// but not the rest of the fleet (audit, status, unlock).
    public func stateSetting() -> (StateSetting?, Diagnostics) {
        var diagnostics = Diagnostics()
        guard fileSystem.isFile(FleetLoader.settingsFile),
              let data = try? fileSystem.read(FleetLoader.settingsFile),
              let node = YAMLDocument.parse(data, file: FleetLoader.settingsFile, into: &diagnostics),
              case .mapping(let top) = node, let stateNode = top["state"] else { return (nil, Diagnostics()) }
        var reader = NodeReader(file: FleetLoader.settingsFile)
        let setting = SettingsReader.readState(stateNode, &reader)
        diagnostics.append(contentsOf: reader.diagnostics)
        return (setting, diagnostics)
    }

    /// Loads and validates the fleet; `fleet` is nil only when a file could not be read at all.
    public func load() -> LoadedFleet {
        var diagnostics = Diagnostics()
        var sources = SourceMap()
        var hashes: [String: String] = [:]
        var unreadable = UnreadableFiles()

        func document(_ path: String) -> Node? {
            do {
                guard let data = try fileSystem.read(path) else { return nil }
                hashes[path] = SHA256.hex(data)
                return YAMLDocument.parse(data, file: path, into: &diagnostics)
            } catch let error as FleetFileError {
                diagnostics.error(SourceLocation(file: path, line: 1, column: 1), "", error.reason)
                return nil
            } catch {
                diagnostics.error(SourceLocation(file: path, line: 1, column: 1), "", "could not be read: \(error.localizedDescription)")
                return nil
            }
        }

        if !fileSystem.isDirectory("") {
            diagnostics.error(SourceLocation(file: fileSystem.rootDescription), "", "no such folder: point --fleet (or MERIDIAN_FLEET) at a fleet repository")
            return LoadedFleet(fleet: nil, diagnostics: diagnostics)
        }

        // meridian.yaml
        var settings: FleetSettings?
        var settingsNode: Node?
        let settingsStatus = fileSystem.status(FleetLoader.settingsFile)
        if settingsStatus == .missing {
            diagnostics.error(SourceLocation(file: FleetLoader.settingsFile, line: 1, column: 1), "", "no meridian.yaml at the fleet root: point --fleet (or MERIDIAN_FLEET) at a fleet repository, or create one (see docs/fleet-files.md)")
        } else if let problem = settingsStatus.problem() {
            diagnostics.error(SourceLocation(file: FleetLoader.settingsFile, line: 1, column: 1), "", problem)
        } else if let node = document(FleetLoader.settingsFile) {
            settingsNode = node
            var reader = NodeReader(file: FleetLoader.settingsFile)
            settings = SettingsReader.read(node, &reader)
            diagnostics.append(contentsOf: reader.diagnostics)
            sources.merge(reader.sources)
        }

        // regions/*.yaml
        var regions: [Region] = []
        var incompleteRegions: [Region] = []
        let regionFiles = yamlFiles(in: FleetLoader.regionsFolder, &diagnostics, unreadable: &unreadable.regions)
        if regionFiles.isEmpty && unreadable.regions.isEmpty {
            diagnostics.error(SourceLocation(file: FleetLoader.regionsFolder, line: 1, column: 1), "", "no region files: add at least one regions/NAME.yaml")
        }
        for path in regionFiles {
            guard let node = document(path) else { unreadable.regions.insert(stem(path)); continue }
            var reader = NodeReader(file: path)
            if let (region, complete) = RegionReader.read(node, stem: stem(path), &reader) {
                if complete { regions.append(region) } else { incompleteRegions.append(region) }
            } else {
                unreadable.regions.insert(stem(path))
            }
            diagnostics.append(contentsOf: reader.diagnostics)
            sources.merge(reader.sources)
        }

        // policies/*.yaml
        var policies: [Policy] = []
        for path in yamlFiles(in: FleetLoader.policiesFolder, &diagnostics, unreadable: &unreadable.policies) {
            guard let node = document(path) else { unreadable.policies.insert(stem(path)); continue }
            var reader = NodeReader(file: path)
            if let policy = PolicyReader.read(node, stem: stem(path), &reader) { policies.append(policy) }
            else { unreadable.policies.insert(stem(path)) }
            diagnostics.append(contentsOf: reader.diagnostics)
            sources.merge(reader.sources)
        }

        guard let settings else { return LoadedFleet(fleet: nil, diagnostics: diagnostics) }
        let fleet = Fleet(settings: settings, regions: regions, policies: policies, fileHashes: hashes, sources: sources)
        unreadable.regions.formUnion(incompleteRegions.map(\.name))
        unreadable.components = SettingsReader.declaredComponentNames(in: settingsNode).subtracting(settings.components.map(\.name))
        var validator = FleetValidator(fleet: fleet, extraRegions: incompleteRegions, fileSystem: fileSystem, unreadable: unreadable)
        validator.validate()
        diagnostics.append(contentsOf: validator.diagnostics)
        return LoadedFleet(fleet: fleet, diagnostics: diagnostics, unreadableRegions: unreadable.regions)
    }

    /// The YAML files of `folder`; a name ending in .yaml that is a folder,
    /// a special file or a link out of the repository is an error, never skipped silently.
    private func yamlFiles(in folder: String, _ diagnostics: inout Diagnostics, unreadable: inout Set<String>) -> [String] {
        let status = fileSystem.status(folder)
        if status != .missing, status != .directory, let problem = status.problem(folderAllowed: true) {
            diagnostics.error(SourceLocation(file: folder, line: 1, column: 1), "", problem)
            return []
        }
        var files: [String] = []
        for name in fileSystem.list(folder) where (name.hasSuffix(".yaml") || name.hasSuffix(".yml")) && !name.hasPrefix(".") {
            let path = "\(folder)/\(name)"
            if let problem = fileSystem.status(path).problem() {
                diagnostics.error(SourceLocation(file: path, line: 1, column: 1), "", problem)
                unreadable.insert(stem(path))
            } else {
                files.append(path)
            }
        }
        return files
    }

    private func stem(_ path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        if name.hasSuffix(".yaml") { return String(name.dropLast(5)) }
        if name.hasSuffix(".yml") { return String(name.dropLast(4)) }
        return name
    }
}

/// Names of region and policy files that could not be read, so references to
/// them are not reported a second time as unknown.
struct UnreadableFiles: Sendable {
    var regions = Set<String>()
    var policies = Set<String>()
    /// Components declared in meridian.yaml whose declaration has errors.
    var components = Set<String>()
}

