import ArgumentParser
import Foundation
import MeridianState

/// Where the state store lives: `--state PATH`, else `.meridian/state.db` in the fleet.
struct StateOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The state database (default: .meridian/state.db in the fleet).", valueName: "path"))
    var state: String?

    func path(fleetRoot: URL) -> String {
        if let state { return URL(fileURLWithPath: state).standardizedFileURL.path }
        return fleetRoot.appendingPathComponent(SQLiteStateStore.defaultRelativePath).path
    }

    /// Opens the store; a store that cannot be opened is an error of exit code 1 with its sentence.
    func open(fleetRoot: URL) async throws -> SQLiteStateStore {
        do {
            return try await SQLiteStateStore.open(path: path(fleetRoot: fleetRoot))
        } catch {
            Output.error("error: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
    }
}
