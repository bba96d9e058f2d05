/// A semantic version `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`; ordering
/// follows semantic-versioning precedence, with build metadata ignored.
public struct Version: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int
    public var prerelease: [String]
    public var build: [String]

    public init(_ major: Int, _ minor: Int, _ patch: Int, prerelease: [String] = [], build: [String] = []) {
        self.major = major
        self.minor = minor
        self.patch = patch
        self.prerelease = prerelease
        self.build = build
    }

    /// Parses a full version; returns nil for anything that is not one.
    public init?(_ text: String) {
        var rest = Substring(text)
        var build: [String] = []
        if let plus = rest.firstIndex(of: "+") {
            build = rest[rest.index(after: plus)...].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !build.isEmpty, build.allSatisfy({ Version.isIdentifier($0) }) else { return nil }
            rest = rest[..<plus]
        }
        var prerelease: [String] = []
        if let dash = rest.firstIndex(of: "-") {
            prerelease = rest[rest.index(after: dash)...].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !prerelease.isEmpty, prerelease.allSatisfy({ Version.isIdentifier($0) }) else { return nil }
            rest = rest[..<dash]
        }
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        var numbers: [Int] = []
        for part in parts {
            guard let number = Version.numeric(part) else { return nil }
            numbers.append(number)
        }
        self.init(numbers[0], numbers[1], numbers[2], prerelease: prerelease, build: build)
    }

    static func numeric(_ part: Substring) -> Int? {
        guard !part.isEmpty, part.count <= 9, part.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if part.count > 1 && part.first == "0" { return nil }
        return Int(part)
    }

    static func isIdentifier(_ text: String) -> Bool {
        !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }

    public var description: String {
        var text = "\(major).\(minor).\(patch)"
        if !prerelease.isEmpty { text += "-" + prerelease.joined(separator: ".") }
        if !build.isEmpty { text += "+" + build.joined(separator: ".") }
        return text
    }

    public static func < (a: Version, b: Version) -> Bool {
        if (a.major, a.minor, a.patch) != (b.major, b.minor, b.patch) {
            return (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
        }
        switch (a.prerelease.isEmpty, b.prerelease.isEmpty) {
        case (true, true), (true, false): return false
        case (false, true): return true
        case (false, false): break
        }
        for (x, y) in zip(a.prerelease, b.prerelease) where x != y {
            switch (Int(x), Int(y)) {
            case let (.some(p), .some(q)): return p < q
            case (.some, .none): return true
            case (.none, .some): return false
            case (.none, .none): return x < y
            }
        }
        return a.prerelease.count < b.prerelease.count
    }

    /// Equality for ordering purposes ignores build metadata.
    public func samePrecedence(as other: Version) -> Bool { !(self < other) && !(other < self) }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let version = Version(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a version: \(text)"))
        }
        self = version
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A set of versions: comparators that must all hold (`>=2.1.0 <3.0.0`),
/// with `^` and `~` shorthands and `||` between alternatives.
public struct VersionRange: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Operator: String, Sendable, Codable, Hashable {
        case equal = "="
        case greater = ">"
        case greaterOrEqual = ">="
        case less = "<"
        case lessOrEqual = "<="
    }

    public struct Comparator: Hashable, Sendable, Codable {
        public var op: Operator
        public var version: Version

        func admits(_ candidate: Version) -> Bool {
            switch op {
            case .equal: return candidate.samePrecedence(as: version)
            case .greater: return version < candidate
            case .greaterOrEqual: return !(candidate < version)
            case .less: return candidate < version
            case .lessOrEqual: return !(version < candidate)
            }
        }
    }

    /// Alternatives separated by `||`; each is a conjunction of comparators.
    public var alternatives: [[Comparator]]
    /// The text the range was written as.
    public var source: String

    public func contains(_ version: Version) -> Bool {
        alternatives.contains { all in all.allSatisfy { $0.admits(version) } }
    }

    public var description: String { source }

    /// Parses a range, or returns the reason it is not one.
    public static func parse(_ text: String) -> Result<VersionRange, RangeSyntaxError> {
        var alternatives: [[Comparator]] = []
        for alternative in text.components(separatedBy: "||") {
            var comparators: [Comparator] = []
            let words = alternative.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
            if words.isEmpty { return .failure(RangeSyntaxError(text: text, reason: "an empty alternative")) }
            for word in words {
                switch parseWord(word) {
                case .success(let parsed): comparators.append(contentsOf: parsed)
                case .failure(let error): return .failure(RangeSyntaxError(text: text, reason: error.reason))
                }
            }
            alternatives.append(comparators)
        }
        return .success(VersionRange(alternatives: alternatives, source: text))
    }

    private static func parseWord(_ word: String) -> Result<[Comparator], RangeSyntaxError> {
        func partial(_ text: String) -> (Version, Int)? {
            // A partial version "2" or "2.1" stands for 2.0.0 / 2.1.0 with 1 or 2 given parts.
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count == 3 { return Version(text).map { ($0, 3) } }
            guard (1...2).contains(parts.count) else { return nil }
            var numbers = [0, 0, 0]
            for (i, part) in parts.enumerated() {
                guard let n = Version.numeric(part) else { return nil }
                numbers[i] = n
            }
            return (Version(numbers[0], numbers[1], numbers[2]), parts.count)
        }
        let bad = RangeSyntaxError(text: word, reason: "\"\(word)\" is not a comparator such as >=2.1.0, <3, ^2.1 or ~1.4.2")
        if word.hasPrefix("^") || word.hasPrefix("~") {
            guard let (base, given) = partial(String(word.dropFirst())) else { return .failure(bad) }
            let upper: Version
            if word.hasPrefix("^") {
                if base.major > 0 || given == 1 { upper = Version(base.major + 1, 0, 0) }
                else if base.minor > 0 || given == 2 { upper = Version(0, base.minor + 1, 0) }
                else { upper = Version(0, 0, base.patch + 1) }
            } else {
                upper = given == 1 ? Version(base.major + 1, 0, 0) : Version(base.major, base.minor + 1, 0)
            }
            return .success([Comparator(op: .greaterOrEqual, version: base), Comparator(op: .less, version: upper)])
        }
        for op in [Operator.greaterOrEqual, .lessOrEqual, .greater, .less, .equal] where word.hasPrefix(op.rawValue) {
            guard let (version, _) = partial(String(word.dropFirst(op.rawValue.count))) else { return .failure(bad) }
            return .success([Comparator(op: op, version: version)])
        }
        guard let version = Version(word) else { return .failure(bad) }
        return .success([Comparator(op: .equal, version: version)])
    }
}

/// Why a version range could not be read.
public struct RangeSyntaxError: Error, Sendable, Equatable {
    public var text: String
    public var reason: String
}
