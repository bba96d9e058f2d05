import Foundation
import Testing
@testable import MeridianLoading
@testable import MeridianModel

/// A fleet repository is untrusted input: every file the loader reads must
/// be a regular file inside it. Each test lays the minimal fleet out on disk
/// in a temporary folder and breaks it in one place.
@Suite struct FleetBoundaryTests {
    final class Laid {
        let base: URL
        let root: URL
        init() throws {
            base = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-boundary-\(UUID().uuidString.prefix(8))")
            root = base.appendingPathComponent("fleet")
            for (path, text) in MinimalFleet.files { try write(path, text) }
        }
        func write(_ path: String, _ text: String) throws {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        func remove(_ path: String) throws { try FileManager.default.removeItem(at: root.appendingPathComponent(path)) }
        func link(_ path: String, to target: String) throws {
            try? remove(path)
            try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent(path).path, withDestinationPath: target)
        }
        /// A file outside the fleet, standing in for ~/.ssh/id_ed25519.
        func outsideSecret() throws -> String {
            let path = base.appendingPathComponent("id_ed25519").path
            try "-----BEGIN OPENSSH PRIVATE KEY-----\n".write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        var diagnostics: [String] { FleetLoader(root: root).load().diagnostics.sorted.map(\.description) }
        deinit { try? FileManager.default.removeItem(at: base) }
    }

    @Test func theLaidOutFleetIsValid() throws {
        #expect(try Laid().diagnostics == [])
    }

    @Test func aTemplateLinkedOutsideTheFleetIsAnErrorAtItsConfigEntry() throws {
        let fleet = try Laid()
        let secret = try fleet.outsideSecret()
        try fleet.link("templates/a.tmpl", to: secret)
        let diagnostics = fleet.diagnostics
        #expect(diagnostics.count == 1, "\(diagnostics)")
        #expect(diagnostics.first?.hasPrefix("regions/eu-west.yaml:") == true)
        #expect(diagnostics.first?.contains("config[0].template: template templates/a.tmpl resolves to") == true)
        #expect(diagnostics.first?.contains("outside the fleet repository") == true)
        #expect(diagnostics.allSatisfy { !$0.contains("PRIVATE KEY") })
    }

    @Test func aLinkInsideTheFleetIsFine() throws {
        let fleet = try Laid()
        try fleet.write("templates/real.tmpl", "model: {{ vars.model }}\n")
        try fleet.link("templates/a.tmpl", to: "real.tmpl")
        #expect(fleet.diagnostics == [])
    }

    @Test func aFIFOTemplateIsNamedAndNeverOpened() throws {
        let fleet = try Laid()
        try fleet.remove("templates/a.tmpl")
        #expect(mkfifo(fleet.root.appendingPathComponent("templates/a.tmpl").path, 0o644) == 0)
        // Opening the FIFO would block this test forever.
        let diagnostics = fleet.diagnostics
        #expect(diagnostics.contains { $0.contains("template templates/a.tmpl is a FIFO (named pipe), not a regular file") }, "\(diagnostics)")
    }

    @Test func aTemplateThatIsNotUTF8OrTooLargeIsAnError() throws {
        let fleet = try Laid()
        try Data([0x6d, 0xff, 0xfe, 0x0a]).write(to: fleet.root.appendingPathComponent("templates/a.tmpl"))
        #expect(fleet.diagnostics.contains { $0.contains("template templates/a.tmpl is not valid UTF-8 text") }, "\(fleet.diagnostics)")
        try Data(repeating: 0x61, count: FleetTemplates.maximumBytes + 1).write(to: fleet.root.appendingPathComponent("templates/a.tmpl"))
        #expect(fleet.diagnostics.contains { $0.contains("template templates/a.tmpl is \(FleetTemplates.maximumBytes + 1) bytes; templates may be at most") }, "\(fleet.diagnostics)")
    }

    @Test func aRegionFileThatIsAFolderIsAnError() throws {
        let fleet = try Laid()
        try FileManager.default.createDirectory(at: fleet.root.appendingPathComponent("regions/ap-south.yaml"), withIntermediateDirectories: true)
        #expect(fleet.diagnostics == ["regions/ap-south.yaml:1:1: is a folder, not a file"])
    }

    @Test func aRegionOrPolicyLinkedOutsideIsAnError() throws {
        let fleet = try Laid()
        let outside = fleet.base.appendingPathComponent("policy.yaml").path
        try MinimalFleet.base.write(toFile: outside, atomically: true, encoding: .utf8)
        try fleet.link("policies/base.yaml", to: outside)
        let diagnostics = fleet.diagnostics
        #expect(diagnostics.contains { $0.hasPrefix("policies/base.yaml:1:1: resolves to ") && $0.contains("outside the fleet repository") }, "\(diagnostics)")
        #expect(!diagnostics.contains { $0.contains("no policy \"base\"") }, "a reference to the refused file is not reported again")
    }

    @Test func aSettingsFileSymlinkLoopIsNamed() throws {
        let fleet = try Laid()
        try fleet.link("meridian.yaml", to: "loop.yaml")
        try fleet.link("loop.yaml", to: "meridian.yaml")
        #expect(fleet.diagnostics.contains("meridian.yaml:1:1: cannot be read: a symbolic link loop (too many levels of symbolic links)"), "\(fleet.diagnostics)")
    }

    @Test func anArtifactLinkedOutsideIsAnError() throws {
        let fleet = try Laid()
        try FileManager.default.createDirectory(at: fleet.root.appendingPathComponent("artifacts/inference"), withIntermediateDirectories: true)
        try fleet.link("artifacts/inference/2.0.0", to: try fleet.outsideSecret())
        #expect(fleet.diagnostics.contains { $0.contains("components.inference.artifact: artifact artifacts/inference/2.0.0 resolves to") && $0.contains("outside the fleet repository") },
                "\(fleet.diagnostics)")
    }

    @Test func unknownYAMLTagsAreErrorsNotStrings() throws {
        let fleet = try Laid()
        try fleet.write("regions/us-east.yaml", MinimalFleet.usEast.replacingOccurrences(of: "jurisdiction: US", with: "jurisdiction: !!python/object:os.system US"))
        #expect(fleet.diagnostics.contains { $0.hasPrefix("regions/us-east.yaml:2:") && $0.contains("unknown YAML tag !!python/object:os.system") }, "\(fleet.diagnostics)")
        try fleet.write("regions/us-east.yaml", MinimalFleet.usEast.replacingOccurrences(of: "jurisdiction: US", with: "jurisdiction: !custom US"))
        #expect(fleet.diagnostics.contains { $0.contains("unknown YAML tag !custom") }, "\(fleet.diagnostics)")
        try fleet.write("regions/us-east.yaml", MinimalFleet.usEast.replacingOccurrences(of: "jurisdiction: US", with: "jurisdiction: !!str US"))
        #expect(fleet.diagnostics == [])
    }
}
