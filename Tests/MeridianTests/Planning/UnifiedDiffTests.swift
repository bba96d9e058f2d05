import Foundation
import MeridianModel
import Testing
import MeridianTestHosts
@testable import MeridianPlanning

@Suite struct UnifiedDiffTests {
    func diff(_ old: String?, _ new: String?) -> ContentDiff {
        UnifiedDiff.diff(old: old.map { Data($0.utf8) }, new: new.map { Data($0.utf8) }, oldLabel: "a/f", newLabel: "b/f")
    }

    @Test func identicalContentHasNoDiff() {
        #expect(diff("a\nb\n", "a\nb\n") == .identical)
        #expect(diff(nil, nil) == .identical)
    }

    @Test func oneChangedLineWithContext() {
        let old = (1...10).map { "line \($0)\n" }.joined()
        let new = old.replacingOccurrences(of: "line 5\n", with: "line five\n")
        #expect(diff(old, new) == .text("""
        --- a/f
        +++ b/f
        @@ -2,7 +2,7 @@
         line 2
         line 3
         line 4
        -line 5
        +line five
         line 6
         line 7
         line 8

        """))
    }

    @Test func distantChangesMakeTwoHunks() {
        let old = (1...20).map { "\($0)\n" }.joined()
        let new = old.replacingOccurrences(of: "\n2\n", with: "\ntwo\n").replacingOccurrences(of: "\n19\n", with: "\nnineteen\n")
        guard case .text(let text) = diff(old, new) else { Issue.record("expected text"); return }
        #expect(text.components(separatedBy: "\n").filter { $0.hasPrefix("@@") } == ["@@ -1,5 +1,5 @@", "@@ -16,5 +16,5 @@"])
    }

    @Test func changesSevenLinesApartShareAHunk() {
        // 6 unchanged lines between two changes: the contexts touch, one hunk.
        let old = (1...12).map { "\($0)\n" }.joined()
        let new = old.replacingOccurrences(of: "\n3\n", with: "\nthree\n").replacingOccurrences(of: "\n10\n", with: "\nten\n")
        guard case .text(let text) = diff(old, new) else { Issue.record("expected text"); return }
        #expect(text.components(separatedBy: "\n").filter { $0.hasPrefix("@@") } == ["@@ -1,12 +1,12 @@"])
    }

    @Test func createdAndDeletedFiles() {
        #expect(diff(nil, "a\nb\n") == .text("--- /dev/null\n+++ b/f\n@@ -0,0 +1,2 @@\n+a\n+b\n"))
        #expect(diff("a\n", nil) == .text("--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n"))
    }

    @Test func missingNewlineAtEnd() {
        #expect(diff("a\nb", "a\nb\n") == .text("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"))
    }

    @Test func binaryContentIsSummarized() {
        let result = UnifiedDiff.diff(old: Data([0, 1, 2]), new: Data([0, 1, 2, 3]), oldLabel: "a", newLabel: "b")
        #expect(result == .binary(oldBytes: 3, newBytes: 4))
        let invalidUTF8 = UnifiedDiff.diff(old: nil, new: Data([0xFF, 0xFE]), oldLabel: "a", newLabel: "b")
        #expect(invalidUTF8 == .binary(oldBytes: nil, newBytes: 2))
    }

    @Test func contentOverTheLimitIsSummarizedNotDiffed() {
        let line = String(repeating: "x", count: 63) + "\n"
        let large = Data(String(repeating: line, count: UnifiedDiff.lineDiffLimit / 64 + 1).utf8)
        #expect(large.count > UnifiedDiff.lineDiffLimit)
        #expect(UnifiedDiff.diff(old: nil, new: large, oldLabel: "a", newLabel: "b") == .large(oldBytes: nil, newBytes: large.count))
        #expect(UnifiedDiff.diff(old: Data("a\n".utf8), new: large, oldLabel: "a", newLabel: "b") == .large(oldBytes: 2, newBytes: large.count))
        #expect(UnifiedDiff.diff(old: large, new: large, oldLabel: "a", newLabel: "b") == .identical)
        // At the limit exactly, still a line diff.
        let atLimit = Data(String(repeating: line, count: UnifiedDiff.lineDiffLimit / 64).utf8)
        #expect(atLimit.count == UnifiedDiff.lineDiffLimit)
        guard case .text = UnifiedDiff.diff(old: nil, new: atLimit, oldLabel: "a", newLabel: "b") else {
            Issue.record("content at the limit was not diffed")
            return
        }
    }

    @Test func secretLinesAreMasked() {
        let placeholder = MaskingSecretResolver.placeholder(for: SecretReference(source: .environment, name: "KEY"))
        let result = diff("user=a\n", "user=b\nkey=\(placeholder)\n")
        #expect(result == .text("--- a/f\n+++ b/f\n@@ -1 +1,2 @@\n-user=a\n+user=b\n+(sensitive)\n"))
    }

    /// Applies a unified diff's hunks to `old`, the way patch(1) would.
    func apply(_ unified: String, to old: [String]) -> [String]? {
        var result: [String] = []
        var position = 0
        for line in unified.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).dropLast() {
            if line.hasPrefix("@@") {
                let oldStart = Int(line.split(separator: " ")[1].dropFirst().split(separator: ",")[0])!
                let target = max(0, oldStart - 1)
                let hunkOldCount = line.split(separator: " ")[1].split(separator: ",").count == 2
                    ? Int(line.split(separator: " ")[1].split(separator: ",")[1])! : 1
                let startIndex = hunkOldCount == 0 ? oldStart : target
                guard startIndex >= position else { return nil }
                result += old[position..<startIndex]
                position = startIndex
            } else if line.hasPrefix(" ") {
                guard position < old.count, old[position] == String(line.dropFirst()) else { return nil }
                result.append(old[position]); position += 1
            } else if line.hasPrefix("-") {
                guard position < old.count, old[position] == String(line.dropFirst()) else { return nil }
                position += 1
            } else if line.hasPrefix("+") {
                result.append(String(line.dropFirst()))
            }
        }
        return result + old[position...]
    }

    func lcsLength(_ a: [String], _ b: [String]) -> Int {
        var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                table[i][j] = a[i] == b[j] ? table[i + 1][j + 1] + 1 : max(table[i + 1][j], table[i][j + 1])
            }
        }
        return table[0][0]
    }

    /// Random small files over a tiny alphabet: the diff must turn old into
    /// new and change no more lines than the shortest edit needs.
    @Test func hugeRewritesFallBackToRemoveThenAdd() {
        let count = UnifiedDiff.maximumEditDistance + 10
        let old = "head\n" + (0..<count).map { "old \($0)\n" }.joined() + "tail\n"
        let new = "head\n" + (0..<count).map { "new \($0)\n" }.joined() + "tail\n"
        guard case .text(let unified) = diff(old, new) else { Issue.record("expected text"); return }
        let lines = unified.split(separator: "\n")
        #expect(lines[2] == "@@ -1,\(count + 2) +1,\(count + 2) @@")
        #expect(lines.filter { $0.hasPrefix("-old") }.count == count)
        #expect(lines.filter { $0.hasPrefix("+new") }.count == count)
        #expect(apply(unified, to: old.split(separator: "\n").map(String.init)) == new.split(separator: "\n").map(String.init))
    }

    @Test func randomDiffsApplyAndAreMinimal() {
        for round in 0..<300 {
            let seed = UInt64(42 + round)
            var generator = SplitMix64(seed: seed)
            let old = (0..<Int.random(in: 0...14, using: &generator)).map { _ in ["a", "b", "c", "d"].randomElement(using: &generator)! }
            let new = (0..<Int.random(in: 0...14, using: &generator)).map { _ in ["a", "b", "c", "d"].randomElement(using: &generator)! }
            let oldText = old.map { $0 + "\n" }.joined(), newText = new.map { $0 + "\n" }.joined()
            switch diff(oldText, newText) {
            case .identical:
                #expect(old == new, "seed \(seed)")
            case .binary, .large:
                Issue.record("seed \(seed): small text summarised instead of diffed")
            case .text(let unified):
                #expect(apply(unified, to: old) == new, "seed \(seed): old \(old) new \(new)\n\(unified)")
                let changed = unified.split(separator: "\n").dropFirst(2).filter { $0.hasPrefix("+") || $0.hasPrefix("-") }.count
                #expect(changed == old.count + new.count - 2 * lcsLength(old, new), "seed \(seed): not minimal\n\(unified)")
            }
        }
    }
}
