/// Quotes `word` for a POSIX shell: the result is one single-quoted word
/// whose value is exactly `word`, whatever it contains (spaces, quotes, `$()`,
/// newlines). Every value the planning module puts into a remote script goes
/// through here.
public func shellQuote(_ word: String) -> String {
    "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// A command line that a POSIX shell splits back into exactly `argv`.
public func shellCommandLine(_ argv: [String]) -> String {
    argv.map(shellQuote).joined(separator: " ")
}
