import ArgumentParser
import Foundation
import MeridianLoading
import MeridianModel
import MeridianPlanning
import MeridianPostgresState
import MeridianState

/// Where the state store lives: `--state`, else `$MERIDIAN_STATE`, else
/// meridian.yaml's `state:`, else `.meridian/state.db` in the fleet. Each is
/// a SQLite file or a `postgresql://` URL (docs/state.md).
struct StateOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The state store: a SQLite file or a postgresql:// URL (default: $MERIDIAN_STATE, else meridian.yaml's state:, else .meridian/state.db in the fleet).",
        valueName: "path-or-url"))
    var state: String?

    /// The chosen location and, for the fleet's own setting, its password's secret reference.
    func location(fleetRoot: URL, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> (StateStoreLocation, SecretReference?) {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
        if let state { return (try StateStoreLocation.parse(state, relativeTo: cwd), nil) }
        if let text = environment["MERIDIAN_STATE"], !text.isEmpty { return (try StateStoreLocation.parse(text, relativeTo: cwd), nil) }
        let (setting, diagnostics) = FleetLoader(root: fleetRoot).stateSetting()
        if diagnostics.hasErrors {
            Output.diagnostics(diagnostics, format: .text)
            throw ExitCode(ExitStatus.invalidFleet)
        }
        if let setting { return (try StateStoreLocation.parse(setting.location, relativeTo: fleetRoot), setting.password) }
        return (.sqlite(path: fleetRoot.appendingPathComponent(SQLiteStateStore.defaultRelativePath).path), nil)
    }

    /// Opens the store; a store that cannot be opened is an error of exit code 1 with its sentence.
    func open(fleetRoot: URL) async throws -> any StateStore {
        let environment = ProcessInfo.processInfo.environment
        do {
            let (location, reference) = try location(fleetRoot: fleetRoot, environment: environment)
            let password = try reference.map { try LocalSecretResolver(environment: environment, baseDirectory: fleetRoot).resolve($0) }
            return try await StateStores.open(location, password: password, environment: environment)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            Output.error("error: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
    }
}
