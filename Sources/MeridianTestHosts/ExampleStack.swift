import Foundation

/// Puts the repository's example stack (stack/, docs/example-stack.md) into a
/// test fleet: the shared code under `<fleet>/stack/` and one thin release
/// folder per version under `<fleet>/artifacts/<component>/<version>/`, whose
/// `bin` and `lib` are links into it (meridian packs them as real files) and
/// whose release.json says which service it is and how it misbehaves.
public enum ExampleStack {
    /// One release to write.
    public struct Release: Sendable {
        /// The fleet's component name (the folder under artifacts/).
        public var component: String
        /// The service it is: `inference` or `knowledge-base`.
        public var service: String
        public var version: String
        /// Share of requests answered with HTTP 500, 0…1.
        public var errorRate: Double
        /// Latency added to every request, in milliseconds.
        public var addedLatencyMilliseconds: Int

        public init(component: String, service: String? = nil, version: String, errorRate: Double = 0, addedLatencyMilliseconds: Int = 0) {
            self.component = component
            self.service = service ?? component
            self.version = version
            self.errorRate = errorRate
            self.addedLatencyMilliseconds = addedLatencyMilliseconds
        }
    }

    /// The repository's stack/ folder.
    public static var sourceFolder: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("stack")
    }

    /// Copies stack/bin and stack/lib into the fleet (once) and writes each release folder.
    public static func install(into fleet: URL, releases: [Release]) throws {
        let files = FileManager.default
        let shared = fleet.appendingPathComponent("stack")
        for part in ["bin", "lib"] where !files.fileExists(atPath: shared.appendingPathComponent(part).path) {
            try files.createDirectory(at: shared, withIntermediateDirectories: true)
            try files.copyItem(at: sourceFolder.appendingPathComponent(part), to: shared.appendingPathComponent(part))
        }
        for release in releases {
            let folder = fleet.appendingPathComponent("artifacts/\(release.component)/\(release.version)")
            try files.createDirectory(at: folder, withIntermediateDirectories: true)
            for part in ["bin", "lib"] {
                try files.createSymbolicLink(atPath: folder.appendingPathComponent(part).path, withDestinationPath: "../../../stack/\(part)")
            }
            let json = """
            {"component": "\(release.service)", "version": "\(release.version)", "faults": {"error_rate": \(release.errorRate), "added_latency": "\(release.addedLatencyMilliseconds)ms"}}

            """
            try json.write(to: folder.appendingPathComponent("release.json"), atomically: true, encoding: .utf8)
        }
    }
}
