import ArgumentParser

/// The root command: lists every subcommand; each lives in its own file.
public struct MeridianCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "meridian",
        abstract: "Keep regional AI instances in sync over SSH, from a git repository of fleet files.",
        version: MeridianVersion.current,
        subcommands: [ValidateCommand.self, RoutesCommand.self, BundleCommand.self, PlanCommand.self, ApplyCommand.self, StatusCommand.self, DriftCommand.self, HostsCommand.self, TrustCommand.self, AuditCommand.self, UnlockCommand.self, RolloutCommandGroup.self, StateCommand.self]
    )

    public init() {}

    /// Parses the command line and runs the chosen command, asynchronously
    /// when it is async; exits with its status.
    public static func launch() async {
        do {
            var command = try parseAsRoot()
            CommandLogging.bootstrap(level: CommandLogging.options(of: command)?.level ?? .warning)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
