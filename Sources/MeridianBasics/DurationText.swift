import Foundation

/// Durations as people write them in fleet files and on the command line:
/// `500ms`, `30s`, `15m`, `1h30m`, `2d`, or a bare number of seconds.
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return nil }
        if let seconds = Int(trimmed), seconds >= 0, seconds <= 100_000_000 { return .seconds(seconds) }
        var total: Int64 = 0 // milliseconds
        var number = ""
        var index = trimmed.startIndex
        var sawUnit = false
        while index < trimmed.endIndex {
            let character = trimmed[index]
            if character.isASCII && character.isNumber {
                number.append(character)
                index = trimmed.index(after: index)
                continue
            }
            guard !number.isEmpty, number.count <= 9, let value = Int64(number) else { return nil }
            let rest = trimmed[index...]
            let unit: Int64
            let length: Int
            if rest.hasPrefix("ms") { unit = 1; length = 2 }
            else if rest.hasPrefix("s") { unit = 1_000; length = 1 }
            else if rest.hasPrefix("m") { unit = 60_000; length = 1 }
            else if rest.hasPrefix("h") { unit = 3_600_000; length = 1 }
            else if rest.hasPrefix("d") { unit = 86_400_000; length = 1 }
            else { return nil }
            total += value * unit
            number = ""
            sawUnit = true
            index = trimmed.index(index, offsetBy: length)
        }
        guard number.isEmpty, sawUnit else { return nil }
        return .milliseconds(total)
    }

    /// The shortest exact text for a duration: `1h30m`, `500ms`, `0s`.
    public static func format(_ duration: Duration) -> String {
        var ms = milliseconds(duration)
        if ms == 0 { return "0s" }
        var text = ""
        for (unit, name) in [(Int64(86_400_000), "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")] where ms >= unit {
            text += "\(ms / unit)\(name)"
            ms %= unit
        }
        return text
    }

    public static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}

extension Duration {
    /// Seconds as a floating-point number.
    public var seconds: Double {
        let (whole, atto) = components
        return Double(whole) + Double(atto) / 1e18
    }
}
