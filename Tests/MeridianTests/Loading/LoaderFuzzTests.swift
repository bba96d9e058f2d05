import Foundation
import Testing
import MeridianTestHosts
@testable import MeridianLoading
@testable import MeridianModel

/// Feeds thousands of mutated copies of the example fleet's files to the
/// loader: it must never crash or hang, and every problem must come back as
/// a diagnostic with a file and a line.
@Suite struct LoaderFuzzTests {
    static let original = RepositoryPaths.exampleFleetFiles()
    static let yamlPaths = original.keys.filter { $0.hasSuffix(".yaml") }.sorted()

    enum Mutation: CaseIterable {
        case deleteLine, duplicateLine, swapLines, reindentLine, truncate, randomBytes, swapType, hugeNumber, deepFlowNesting, deepBlockNesting, aliasBomb, replaceValue
    }

    static func mutate(_ text: String, _ mutation: Mutation, _ rng: inout SplitMix64) -> Data {
        var lines = text.components(separatedBy: "\n")
        let index = lines.isEmpty ? 0 : Int.random(in: 0..<lines.count, using: &rng)
        switch mutation {
        case .deleteLine:
            lines.remove(at: index)
        case .duplicateLine:
            lines.insert(lines[index], at: index)
        case .swapLines:
            let other = Int.random(in: 0..<lines.count, using: &rng)
            lines.swapAt(index, other)
        case .reindentLine:
            lines[index] = String(repeating: " ", count: Int.random(in: 0...9, using: &rng)) + lines[index].trimmingCharacters(in: .whitespaces)
        case .truncate:
            let bytes = Data(text.utf8)
            return bytes.prefix(Int.random(in: 0...bytes.count, using: &rng))
        case .randomBytes:
            var bytes = Data(text.utf8)
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let position = Int.random(in: 0...bytes.count, using: &rng)
                bytes.insert(UInt8.random(in: 0...255, using: &rng), at: position)
            }
            return bytes
        case .swapType:
            let replacements = ["[a, b]", "{x: 1}", "\"\"", "~", "-1", "true", "[[[]]]", "{", "*undefined"]
            if let colon = lines[index].firstIndex(of: ":") {
                lines[index] = String(lines[index][...colon]) + " " + replacements.randomElement(using: &rng)!
            } else {
                lines[index] += " " + replacements.randomElement(using: &rng)!
            }
        case .hugeNumber:
            if let colon = lines[index].firstIndex(of: ":") {
                lines[index] = String(lines[index][...colon]) + " " + ["99999999999999999999999999", "1e400", "-0", "0x7fffffffffffffff", "NaN", ".inf"].randomElement(using: &rng)!
            }
        case .deepFlowNesting:
            let depth = Int.random(in: 50...20_000, using: &rng)
            lines.insert("deep: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth), at: index)
        case .deepBlockNesting:
            let depth = Int.random(in: 50...3_000, using: &rng)
            lines.insert("deep: " + String(repeating: "- ", count: depth) + "x", at: index)
        case .aliasBomb:
            var bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
            for level in 1...9 { bomb.append("a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ") + "]") }
            lines.insert(contentsOf: bomb, at: 0)
        case .replaceValue:
            if let colon = lines[index].firstIndex(of: ":") {
                let junk = String((0..<Int.random(in: 0...12, using: &rng)).map { _ in "abz09-_./{}$'\" ".randomElement(using: &rng)! })
                lines[index] = String(lines[index][...colon]) + " " + junk
            }
        }
        return Data(lines.joined(separator: "\n").utf8)
    }

    @Test(arguments: 0..<5)
    func mutatedFleetsYieldLocatedDiagnostics(batch: Int) {
        let perBatch = 400
        for iteration in 0..<perBatch {
            let seed = UInt64(batch * perBatch + iteration)
            var rng = SplitMix64(seed: seed)
            var files = Self.original.mapValues { Data($0.utf8) }
            let mutations = Int.random(in: 1...3, using: &rng)
            var touched: [String] = []
            for _ in 0..<mutations {
                let path = Self.yamlPaths.randomElement(using: &rng)!
                let mutation = Mutation.allCases.randomElement(using: &rng)!
                let text = String(decoding: files[path]!, as: UTF8.self)
                files[path] = Self.mutate(text, mutation, &rng)
                touched.append("\(path):\(mutation)")
            }
            let loaded = FleetLoader(fileSystem: InMemoryFleetFileSystem(files: files)).load()
            for diagnostic in loaded.diagnostics {
                #expect(!diagnostic.location.file.isEmpty, "seed \(seed) \(touched): \(diagnostic)")
                #expect(diagnostic.location.line >= 1, "seed \(seed) \(touched): \(diagnostic) has no line")
                #expect(!diagnostic.message.isEmpty, "seed \(seed) \(touched)")
            }
            if loaded.fleet == nil {
                #expect(loaded.diagnostics.hasErrors, "seed \(seed) \(touched): no fleet and no error")
            }
        }
    }

    @Test func extremeNestingIsRefusedBeforeParsing() {
        for text in [String(repeating: "[", count: 200_000), String(repeating: "- ", count: 100_000) + "x",
                     (0..<1_000).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n")] {
            var files = MinimalFleet.files
            files["policies/base.yaml"] = text
            let loaded = FleetLoader(fileSystem: InMemoryFleetFileSystem(texts: files)).load()
            let messages = loaded.diagnostics.sorted.map(\.description)
            #expect(messages.contains { $0.hasPrefix("policies/base.yaml:") && $0.contains("nested more than 64 levels") }, "\(messages.prefix(3))")
        }
    }

    @Test func oversizedFilesAreRefused() {
        var files = MinimalFleet.files
        files["policies/base.yaml"] = String(repeating: "# padding\n", count: 120_000)
        let messages = FleetLoader(fileSystem: InMemoryFleetFileSystem(texts: files)).load().diagnostics.sorted.map(\.description)
        #expect(messages.contains { $0.hasPrefix("policies/base.yaml:1:1: the file is 1200000 bytes") }, "\(messages)")
    }
}
