import ArgumentParser
import Foundation
import Logging

/// `--verbose` and `--log-level`, shared by every command through
/// `FleetOptions`. Log lines go to standard error, so standard output stays
/// the command's result (a plan, a report, JSON events).
public struct LoggingOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Log each SSH connection (with its handshake time) and each remote command and transfer (region, host, duration, exit status) to standard error; the same as --log-level debug.")
    public var verbose = false

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (default: warning; debug with --verbose).", valueName: "level"))
    public var logLevel: Logger.Level?

    public init() {}

    /// The level chosen on the command line: `--log-level` wins over `--verbose`.
    public var level: Logger.Level { logLevel ?? (verbose ? .debug : .warning) }

    /// Sends every logger of this process to standard error at `level`.
    public func bootstrap() { CommandLogging.bootstrap(level: level) }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

enum CommandLogging {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var done = false

    /// Sends every logger of this process to standard error at `level`.
    /// Once per process: swift-log allows one bootstrap.
    static func bootstrap(level: Logger.Level) {
        lock.lock()
        defer { lock.unlock() }
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in CommandLogHandler(label: label, logLevel: level) }
    }

    /// The logging options of a parsed command, wherever its `FleetOptions`
    /// sits, so a new command gets logging by having fleet options at all.
    static func options(of command: Any) -> LoggingOptions? {
        for child in Mirror(reflecting: command).children {
            if let fleet = child.value as? FleetOptions { return fleet.logging }
            if let group = child.value as? OptionGroup<FleetOptions> { return group.wrappedValue.logging }
        }
        return nil
    }
}

/// One line per entry on standard error:
/// `2026-12-01T09:12:03.512Z debug meridian.ssh: remote command region=eu host=gw-1 ms=12.5 exit=0`.
/// Metadata keys are sorted so lines are stable to read and to grep.
struct CommandLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        Output.error(Self.line(time: Date(), level: event.level, label: label, message: "\(event.message)", metadata: all))
    }

    static func line(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var text = "\(formatter.string(from: time)) \(level) \(label): \(message)"
        for key in metadata.keys.sorted() {
            text += " \(key)=\(quoted("\(metadata[key]!)"))"
        }
        return text
    }

    /// Values with spaces or quotes are double-quoted, so each `key=value` stays one token.
    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
