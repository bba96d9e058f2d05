import ArgumentParser

/// The root command: lists every subcommand; each lives in its own file.
public struct MeridianCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "meridian",
        abstract: "Keep regional AI instances in sync over SSH, from a git repository of fleet files.",
        subcommands: [ValidateCommand.self]
    )

    public init() {}
}
