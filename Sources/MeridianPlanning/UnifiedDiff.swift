import Foundation

/// How the content of one file changes, as shown in a plan: a unified diff
/// for text, a size summary for binary content and for content too large to
/// diff line by line (the action beside it carries both SHA-256s).
/// Invariant: `.text` holds a complete unified diff with `---`/`+++`
/// headers and at least one hunk.
public enum ContentDiff: Codable, Equatable, Sendable {
    case identical
    case text(String)
    /// Sizes in bytes; nil for a side that does not exist.
    case binary(oldBytes: Int?, newBytes: Int?)
    /// A side is larger than `UnifiedDiff.lineDiffLimit`: sizes only.
    case large(oldBytes: Int?, newBytes: Int?)
}

/// Line diffs in the unified format (Myers' O(ND) algorithm, hunks with
/// `context` lines around each change). Lines containing a secret placeholder
/// are shown as `(sensitive)`, so masked renderings never show where a secret goes
/// or what surrounds it on its line.
public enum UnifiedDiff {
    /// The text that replaces every line carrying a secret placeholder.
    public static let sensitiveLine = "(sensitive)"

    /// Above this many bytes on either side a plan shows sizes and hashes
    /// instead of a line diff: a diff that large is not read line by line,
    /// and keeping it out keeps a plan's cost proportional to the bytes it
    /// manages. The observation fetches a changed file's old content only up
    /// to the same size (`ObserveScript.contentLimit`).
    public static let lineDiffLimit = 256 * 1024

    /// Diffs `old` against `new`; nil stands for a file that does not exist
    /// (`/dev/null`). Content with a NUL byte or invalid UTF-8 is binary;
    /// content over `lineDiffLimit` is summarised as `.large`.
    public static func diff(old: Data?, new: Data?, oldLabel: String, newLabel: String, context: Int = 3) -> ContentDiff {
        if old == new { return .identical }
        if (old?.count ?? 0) > lineDiffLimit || (new?.count ?? 0) > lineDiffLimit {
            return .large(oldBytes: old?.count, newBytes: new?.count)
        }
        let oldText = old.map(text(of:)) ?? .some("")
        let newText = new.map(text(of:)) ?? .some("")
        guard let oldText, let newText else {
            return .binary(oldBytes: old?.count, newBytes: new?.count)
        }
        let body = hunks(old: lines(oldText), new: lines(newText), context: context)
        if body.isEmpty { return .identical }
        let header = "--- \(old == nil ? "/dev/null" : oldLabel)\n+++ \(new == nil ? "/dev/null" : newLabel)\n"
        return .text(header + body)
    }

    /// UTF-8 text, or nil when the bytes look binary.
    static func text(of data: Data) -> String? {
        if data.contains(0) { return nil }
        return String(data: data, encoding: .utf8)
    }

    /// One line of a file; only the last line of a file may lack its newline.
    struct Line: Equatable {
        var text: Substring
        var hasNewline: Bool
    }

    static func lines(_ text: String) -> [Line] {
        var result: [Line] = []
        var rest = text[...]
        while let newline = rest.firstIndex(of: "\n") {
            result.append(Line(text: rest[..<newline], hasNewline: true))
            rest = rest[rest.index(after: newline)...]
        }
        if !rest.isEmpty { result.append(Line(text: rest, hasNewline: false)) }
        return result
    }

    enum Edit: Equatable { case keep(Int, Int), delete(Int), insert(Int) }

    /// Beyond this many changed lines the diff stops searching for the
    /// shortest edit and shows the differing middle as removed then added:
    /// the search keeps O(D²) state, and such a diff is not read line by line anyway.
    static let maximumEditDistance = 2000

    /// A shortest edit script between `a` and `b` (Myers), after taking off
    /// the common prefix and suffix.
    static func editScript(_ a: [Line], _ b: [Line]) -> [Edit] {
        var prefix = 0
        while prefix < a.count && prefix < b.count && a[prefix] == b[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < a.count - prefix && suffix < b.count - prefix && a[a.count - 1 - suffix] == b[b.count - 1 - suffix] { suffix += 1 }
        let oldMiddle = Array(a[prefix..<(a.count - suffix)])
        let newMiddle = Array(b[prefix..<(b.count - suffix)])
        let middle = myers(oldMiddle, newMiddle)
            ?? (oldMiddle.indices.map { Edit.delete($0) } + newMiddle.indices.map { Edit.insert($0) })
        var edits = (0..<prefix).map { Edit.keep($0, $0) }
        for edit in middle {
            switch edit {
            case .keep(let i, let j): edits.append(.keep(i + prefix, j + prefix))
            case .delete(let i): edits.append(.delete(i + prefix))
            case .insert(let j): edits.append(.insert(j + prefix))
            }
        }
        for index in 0..<suffix {
            edits.append(.keep(a.count - suffix + index, b.count - suffix + index))
        }
        return edits
    }

    /// Myers' O(ND) search, keeping for each d only the 2d+1 furthest points;
    /// nil when more than `maximumEditDistance` edits are needed.
    static func myers(_ a: [Line], _ b: [Line]) -> [Edit]? {
        let n = a.count, m = b.count
        if n + m == 0 { return [] }
        let limit = Swift.min(n + m, maximumEditDistance)
        let offset = limit + 1
        var v = [Int](repeating: 0, count: 2 * limit + 3)
        var snapshots: [[Int]] = []
        var final: Int?
        search: for d in 0...limit {
            for k in stride(from: -d, through: d, by: 2) {
                var x: Int
                if k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1]) {
                    x = v[offset + k + 1]
                } else {
                    x = v[offset + k - 1] + 1
                }
                var y = x - k
                while x < n && y < m && a[x] == b[y] { x += 1; y += 1 }
                v[offset + k] = x
                if x >= n && y >= m {
                    final = d
                    break search
                }
            }
            snapshots.append(Array(v[(offset - d)...(offset + d)]))
        }
        guard let total = final else { return nil }
        // Walk back from (n, m): each d undoes one insert or delete and the snake before it.
        var edits: [Edit] = []
        var x = n, y = m
        var d = total
        while d > 0 {
            let previous = snapshots[d - 1]
            func furthest(_ k: Int) -> Int { previous[k + d - 1] }
            let k = x - y
            let previousK = (k == -d || (k != d && furthest(k - 1) < furthest(k + 1))) ? k + 1 : k - 1
            let previousX = furthest(previousK)
            let previousY = previousX - previousK
            while x > previousX && y > previousY {
                x -= 1; y -= 1
                edits.append(.keep(x, y))
            }
            if x == previousX { y -= 1; edits.append(.insert(y)) } else { x -= 1; edits.append(.delete(x)) }
            d -= 1
        }
        while x > 0 && y > 0 {
            x -= 1; y -= 1
            edits.append(.keep(x, y))
        }
        return edits.reversed()
    }

    static func hunks(old a: [Line], new b: [Line], context: Int) -> String {
        let edits = editScript(a, b)
        let changeIndices = edits.indices.filter { if case .keep = edits[$0] { return false } else { return true } }
        guard let firstChange = changeIndices.first else { return "" }
        // Group changes whose context windows touch into one hunk.
        var groups: [(Int, Int)] = []
        var start = firstChange, end = firstChange
        for index in changeIndices.dropFirst() {
            if index - end - 1 > 2 * context { groups.append((start, end)); start = index }
            end = index
        }
        groups.append((start, end))

        var out = ""
        for (first, last) in groups {
            let lower = Swift.max(0, first - context)
            let upper = Swift.min(edits.count - 1, last + context)
            var oldStart: Int?, newStart: Int?
            var oldCount = 0, newCount = 0
            var body = ""
            // Positions before the hunk, for empty sides (GNU prints the line before).
            var oldBefore = 0, newBefore = 0
            for edit in edits[..<lower] {
                switch edit {
                case .keep: oldBefore += 1; newBefore += 1
                case .delete: oldBefore += 1
                case .insert: newBefore += 1
                }
            }
            for edit in edits[lower...upper] {
                switch edit {
                case .keep(let i, let j):
                    oldStart = oldStart ?? i; newStart = newStart ?? j
                    oldCount += 1; newCount += 1
                    body += render(" ", a[i])
                case .delete(let i):
                    oldStart = oldStart ?? i
                    oldCount += 1
                    body += render("-", a[i])
                case .insert(let j):
                    newStart = newStart ?? j
                    newCount += 1
                    body += render("+", b[j])
                }
            }
            let oldRange = range(start: oldStart.map { $0 + 1 } ?? oldBefore, count: oldCount)
            let newRange = range(start: newStart.map { $0 + 1 } ?? newBefore, count: newCount)
            out += "@@ -\(oldRange) +\(newRange) @@\n" + body
        }
        return out
    }

    static func range(start: Int, count: Int) -> String {
        count == 1 ? "\(start)" : "\(start),\(count)"
    }

    static func render(_ prefix: String, _ line: Line) -> String {
        let text = line.text.contains(MaskingSecretResolver.marker) ? sensitiveLine : String(line.text)
        return prefix + text + (line.hasNewline ? "\n" : "\n\\ No newline at end of file\n")
    }
}
