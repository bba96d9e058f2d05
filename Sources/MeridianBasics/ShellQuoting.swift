/// The one quoting rule for text that reaches a remote POSIX shell. Remote
/// command lines (MeridianSSH's RemoteCommand) and the values the plan layer
/// embeds in its scripts both go through `quote`, so there is a single place
/// to get it right.
public enum ShellQuoting {
    /// Characters that no POSIX shell treats specially in any position of a
    /// word, so a word made only of them needs no quotes (keeps logs readable).
    /// `=` is left out: an unquoted `A=b` in command position is an assignment.
    private static let plainBytes: Set<UInt8> = Set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+:,./-".utf8
    )

    /// POSIX single-quoting: inside single quotes every byte is literal except
    /// the single quote itself, which is written as `'\''` (close, escaped quote,
    /// reopen). An empty word becomes `''` so it is still one argument.
    public static func quote(_ word: String) -> String {
        if !word.isEmpty, word.utf8.allSatisfy({ plainBytes.contains($0) }) {
            return word
        }
        var out = "'"
        for character in word.unicodeScalars {
            if character == "'" { out += "'\\''" } else { out.unicodeScalars.append(character) }
        }
        out += "'"
        return out
    }

    /// A command line that a POSIX shell splits back into exactly `argv`.
    public static func commandLine(_ argv: [String]) -> String {
        argv.map(quote).joined(separator: " ")
    }
}
