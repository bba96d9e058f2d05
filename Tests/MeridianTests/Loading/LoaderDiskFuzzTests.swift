import Foundation
import Testing
import MeridianTestHosts
@testable import MeridianLoading
@testable import MeridianModel
@testable import MeridianPlanning

/// The example fleet written to a real folder and then changed on disk —
/// files removed, added and renamed; folders, symlinks (inside and outside
/// the fleet, dangling, looping), FIFOs and unreadable files where fleet files
/// should be; templates as well as YAML mutated — then loaded from disk and
/// its templates rendered, as `validate` does. Invariants: no crash, no input
/// takes longer than the per-input limit (a FIFO opened for a blocking read
/// would hang forever), and every diagnostic names a file and a line ≥ 1.
/// Every failure prints the seed and the mutations, which rebuild the input.
///
/// Running as root, a file with mode 000 is still readable, so "unreadable"
/// is also made by pointing a fleet file at /proc/self/mem, whose first page
/// fails to read with EIO whoever reads it.
@Suite struct LoaderDiskFuzzTests {
    static let original = RepositoryPaths.exampleFleetFiles()
    static let paths = original.keys.sorted()
    /// Generous, because the machine may be shared with other builds; a hang is forever.
    static let perInputLimit: TimeInterval = 20

    enum Change: CaseIterable {
        case remove, add, rename, folder, symlinkInside, symlinkOutside, danglingSymlink, symlinkLoop, fifo, unreadable, failingRead, mutateYAML, mutateTemplate
    }

    /// One generated input: a fleet folder beside a folder outside it.
    struct Input {
        let base: URL
        var fleet: URL { base.appendingPathComponent("fleet") }
        var outside: URL { base.appendingPathComponent("outside") }
        var fifos: [String] = []
        var changes: [String] = []
    }

    /// The example fleet on disk, then 1–3 random changes (none when `pristine`).
    static func make(seed: UInt64, pristine: Bool = false) throws -> Input {
        var rng = SplitMix64(seed: seed)
        let files = FileManager.default
        var input = Input(base: files.temporaryDirectory.appendingPathComponent("meridian-diskfuzz-\(seed)-\(UUID().uuidString.prefix(6))"))
        for (path, text) in original {
            let url = input.fleet.appendingPathComponent(path)
            try files.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        try files.createDirectory(at: input.outside, withIntermediateDirectories: true)
        try Data("name: outsider\njurisdiction: EU\nhosts: []\n".utf8).write(to: input.outside.appendingPathComponent("secret.yaml"))

        for _ in 0..<(pristine ? 0 : Int.random(in: 1...3, using: &rng)) {
            let change = Change.allCases.randomElement(using: &rng)!
            let path = paths.randomElement(using: &rng)!
            let url = input.fleet.appendingPathComponent(path)
            input.changes.append("\(change) \(path)")
            // A path an earlier change already replaced may be gone: each change starts from what is there.
            func clear() { try? files.removeItem(at: url) }
            switch change {
            case .remove:
                clear()
            case .add:
                let folder = ["regions", "policies", "templates"].randomElement(using: &rng)!
                let name = ["extra.yaml", "extra.yml", ".hidden.yaml", "extra.txt", "ünïcode name.yaml"].randomElement(using: &rng)!
                let source = original[paths.randomElement(using: &rng)!]!
                try Data(LoaderFuzzTests.mutate(source, LoaderFuzzTests.Mutation.allCases.randomElement(using: &rng)!, &rng))
                    .write(to: input.fleet.appendingPathComponent("\(folder)/\(name)"))
                input.changes[input.changes.count - 1] = "add \(folder)/\(name)"
            case .rename:
                let target = url.deletingLastPathComponent().appendingPathComponent(["moved.yaml", "moved.yml", "moved.yaml.bak", ".moved.yaml"].randomElement(using: &rng)!)
                try? files.moveItem(at: url, to: target)
            case .folder:
                clear()
                try files.createDirectory(at: url, withIntermediateDirectories: true)
                try Data("name: inner\n".utf8).write(to: url.appendingPathComponent("inner.yaml"))
            case .symlinkInside:
                clear()
                let target = paths.randomElement(using: &rng)!
                try files.createSymbolicLink(atPath: url.path, withDestinationPath: input.fleet.appendingPathComponent(target).path)
            case .symlinkOutside:
                clear()
                try files.createSymbolicLink(atPath: url.path, withDestinationPath: input.outside.appendingPathComponent("secret.yaml").path)
            case .danglingSymlink:
                clear()
                try files.createSymbolicLink(atPath: url.path, withDestinationPath: input.outside.appendingPathComponent("absent.yaml").path)
            case .symlinkLoop:
                clear()
                try files.createSymbolicLink(atPath: url.path, withDestinationPath: url.path)
            case .fifo:
                clear()
                try files.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                #expect(mkfifo(url.path, 0o644) == 0, "mkfifo \(url.path): \(String(cString: strerror(errno)))")
                input.fifos.append(url.path)
            case .unreadable:
                chmod(url.path, 0o000)
            case .failingRead:
                clear()
                try files.createSymbolicLink(atPath: url.path, withDestinationPath: "/proc/self/mem")
            case .mutateYAML:
                guard let data = files.contents(atPath: url.path), path.hasSuffix(".yaml") else { continue }
                let mutation = LoaderFuzzTests.Mutation.allCases.randomElement(using: &rng)!
                try? LoaderFuzzTests.mutate(String(decoding: data, as: UTF8.self), mutation, &rng).write(to: url)
                input.changes[input.changes.count - 1] += " \(mutation)"
            case .mutateTemplate:
                let template = paths.filter { $0.hasPrefix("templates/") }.randomElement(using: &rng)!
                let templateURL = input.fleet.appendingPathComponent(template)
                guard let data = files.contents(atPath: templateURL.path) else { continue }
                try? mutateTemplate(String(decoding: data, as: UTF8.self), &rng).write(to: templateURL)
                input.changes[input.changes.count - 1] = "mutateTemplate \(template)"
            }
        }
        return input
    }

    static func mutateTemplate(_ text: String, _ rng: inout SplitMix64) -> Data {
        var characters = Array(text)
        let insertions = ["{{", "}}", "{{ vars.nope }}", "{{ region.name | default }}", "{{ region. }}", "{{ | }}", "{{ \"unterminated }}",
                          "{% if x %}", "{{ vars.max_tokens | upper | lower | nope }}", "\u{0}", "{{{{{{", String(repeating: "{{ a ", count: 300)]
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let position = Int.random(in: 0...characters.count, using: &rng)
            if Bool.random(using: &rng) {
                characters.insert(contentsOf: insertions.randomElement(using: &rng)!, at: position)
            } else if !characters.isEmpty {
                characters.removeSubrange(position..<min(characters.count, position + Int.random(in: 1...6, using: &rng)))
            }
        }
        return Data(String(characters).utf8)
    }

    /// Loads and renders as `validate` does; the diagnostics of both.
    static func loadAndRender(_ root: URL) -> [Diagnostic] {
        let loaded = FleetLoader(root: root).load()
        var all = loaded.diagnostics.items
        if let fleet = loaded.fleet {
            let templates = LocalFleetFileSystem(root: root).templateFiles(of: fleet).mapValues { String(decoding: $0, as: UTF8.self) }
            let routes = ResidencyCompiler.compile(fleet).0
            let bundles = fleet.regions.map { GovernanceBundle.render(region: $0, fleet: fleet, routes: routes) }
            let renderer = DesiredStateRenderer(fleet: fleet, bundles: bundles, templates: templates, artifacts: [], requireArtifacts: false)
            all += renderer.render().1.items.filter { !$0.message.hasSuffix("could not be read") }
        }
        return all
    }

    /// Runs `body` on its own thread; nil when it is still running after `limit` seconds.
    static func withinLimit(_ limit: TimeInterval, _ body: @escaping @Sendable () -> [Diagnostic]) -> [Diagnostic]? {
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            box.value = body()
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        guard done.wait(timeout: .now() + limit) == .success else { return nil }
        return box.value
    }

    @Test(arguments: 0..<3)
    func fleetsChangedOnDiskYieldLocatedDiagnosticsInTime(batch: Int) throws {
        let perBatch = 60
        for iteration in 0..<perBatch {
            let seed = UInt64(batch * perBatch + iteration)
            let input = try Self.make(seed: seed)
            defer {
                for fifo in input.fifos { chmod(fifo, 0o644) }
                try? FileManager.default.removeItem(at: input.base)
            }
            let root = input.fleet
            let context = "seed \(seed) \(input.changes)"
            guard let diagnostics = Self.withinLimit(Self.perInputLimit, { Self.loadAndRender(root) }) else {
                Issue.record("\(context): loading did not finish within \(Int(Self.perInputLimit)) s")
                // Let a reader blocked on a FIFO go: a writer that opens and closes gives it end-of-file.
                for fifo in input.fifos {
                    let writer = open(fifo, O_WRONLY | O_NONBLOCK)
                    if writer >= 0 { close(writer) }
                }
                continue
            }
            for diagnostic in diagnostics {
                #expect(!diagnostic.location.file.isEmpty, "\(context): \(diagnostic)")
                #expect(diagnostic.location.line >= 1, "\(context): \(diagnostic) has no line")
                #expect(!diagnostic.message.isEmpty, "\(context)")
            }
        }
    }

    @Test func aFIFOWhereAFleetFileShouldBeIsRefusedNotWaitedOn() throws {
        let input = try Self.make(seed: 0, pristine: true)
        defer { try? FileManager.default.removeItem(at: input.base) }
        for path in ["meridian.yaml", "regions/eu-west.yaml", "templates/inference.yaml.tmpl"] {
            let url = input.fleet.appendingPathComponent(path)
            try? FileManager.default.removeItem(at: url)
            #expect(mkfifo(url.path, 0o644) == 0)
        }
        let root = input.fleet
        let diagnostics = try #require(Self.withinLimit(Self.perInputLimit) { Self.loadAndRender(root) }, "loading blocked on a FIFO")
        let messages = diagnostics.map(\.description)
        #expect(messages.contains { $0.hasPrefix("meridian.yaml:1:1: is a FIFO (named pipe), not a regular file") }, "\(messages)")
        #expect(messages.contains { $0.hasPrefix("regions/eu-west.yaml:1:1: is a FIFO (named pipe), not a regular file") }, "\(messages)")
    }
}

/// Hands a result from the loading thread to the waiting test; read only after the semaphore.
final class ResultBox: @unchecked Sendable {
    var value: [Diagnostic]?
}
