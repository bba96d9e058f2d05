/// A command line for a remote POSIX shell, built only from argv words that
/// are each single-quoted, so the remote program receives every word exactly
/// as given. Invariant: `line` is the only text meridian sends to `exec`, and
/// every word in it went through `RemoteCommand.quote`, except the fixed
/// program text of `init(fixedScript:)`, which is written by meridian itself.
public struct RemoteCommand: Sendable, Hashable, CustomStringConvertible {
    /// The text handed to the remote user's shell.
    public let line: String

    /// One program with its arguments.
    public init(_ argv: [String]) {
        line = argv.map(RemoteCommand.quote).joined(separator: " ")
    }

    /// One program with its arguments.
    public init(_ argv: String...) { self.init(argv) }

    /// Shell text fixed by meridian's own source code (loops, `&&`, redirections
    /// between constant paths); never pass text that came from a fleet file or a
    /// user here: build it from argv and combine with `then`/`piped`.
    public init(fixedScript: String) { line = fixedScript }

    /// `self && next`: runs `next` only when `self` succeeded.
    public func then(_ next: RemoteCommand) -> RemoteCommand {
        RemoteCommand(fixedScript: "\(line) && \(next.line)")
    }

    /// `self | next`.
    public func piped(into next: RemoteCommand) -> RemoteCommand {
        RemoteCommand(fixedScript: "\(line) | \(next.line)")
    }

    /// `sh -c LINE`: runs this command inside a fresh POSIX sh whatever the
    /// remote user's login shell is.
    public var underPOSIXShell: RemoteCommand { RemoteCommand(["sh", "-c", line]) }

    /// Whether the line can be carried by SSH at all: a NUL byte cannot.
    public var isTransmittable: Bool { !line.utf8.contains(0) }

    public var description: String { line }

    /// POSIX single-quoting of one word (MeridianBasics' `ShellQuoting.quote`).
    public static func quote(_ word: String) -> String { ShellQuoting.quote(word) }
}

/// How uploads name their temporaries on a host, so that cleanup of what a
/// killed run left (a remote script) and the uploader (SFTP) agree.
public enum UploadNaming {
    /// Part of every temporary name an upload writes before renaming into place.
    public static let temporaryMarker = ".meridian-tmp-"
}
