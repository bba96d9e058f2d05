import ArgumentParser
import Foundation
import MeridianLoading
import MeridianModel

/// Options every command that reads the fleet shares, logging's among them.
public struct FleetOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The fleet repository (default: $MERIDIAN_FLEET, else the current folder).", valueName: "dir"))
    public var fleet: String?

    @OptionGroup(title: "Logging") public var logging: LoggingOptions

    public init() {}

    /// The fleet root folder.
    public var root: URL {
        let path = fleet ?? ProcessInfo.processInfo.environment["MERIDIAN_FLEET"] ?? FileManager.default.currentDirectoryPath
        return URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
    }

    /// Loads and validates the fleet; on any error prints every diagnostic and exits 65.
    public func loadValid(format: OutputFormat = .text) throws -> (Fleet, Diagnostics) {
        let loaded = FleetLoader(root: root).load()
        guard let fleet = loaded.fleet, !loaded.diagnostics.hasErrors else {
            Output.diagnostics(loaded.diagnostics, format: format)
            throw ExitCode(ExitStatus.invalidFleet)
        }
        return (fleet, loaded.diagnostics)
    }
}

/// Text for people, JSON for programs.
public enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text
    case json
}

/// meridian's exit codes (docs/cli.md).
public enum ExitStatus {
    public static let success: Int32 = 0
    public static let failure: Int32 = 1
    public static let changesOrDrift: Int32 = 2
    public static let rolledBack: Int32 = 3
    public static let locked: Int32 = 4
    public static let usage: Int32 = 64
    public static let invalidFleet: Int32 = 65
}
