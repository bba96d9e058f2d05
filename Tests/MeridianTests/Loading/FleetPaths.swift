import Foundation

/// Folders of the repository that tests read: the example fleet at the root
/// and the fixture fleets under Tests/Fixtures.
enum RepositoryPaths {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    static func fixture(_ name: String) -> URL {
        root.appendingPathComponent("Tests/Fixtures/fleets/\(name)")
    }

    /// Every file of the example fleet, path relative to the repository root → contents.
    static func exampleFleetFiles() -> [String: String] {
        var files: [String: String] = [:]
        for file in ["meridian.yaml"] { files[file] = read(file) }
        for folder in ["regions", "policies", "templates"] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(folder).path)) ?? []
            for name in names.sorted() { files["\(folder)/\(name)"] = read("\(folder)/\(name)") }
        }
        return files
    }

    static func read(_ path: String) -> String {
        (try? String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)) ?? ""
    }
}
