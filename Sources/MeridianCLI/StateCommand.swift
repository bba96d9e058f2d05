import ArgumentParser
import Foundation
import MeridianPostgresState
import MeridianState

/// `meridian state`: the state store itself.
struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Manage the state store: copy it to another backend.",
        subcommands: [StateMigrate.self]
    )
}

/// `meridian state migrate --to URL`: copies every record of the current
/// store (`--state`, `$MERIDIAN_STATE`, meridian.yaml's `state:`, or the
/// fleet's SQLite file) into another one, keeping ids, times and the audit
/// chain, then verifies the copy.
struct StateMigrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy the state store into another one (e.g. SQLite into PostgreSQL), with the audit chain intact.",
        discussion: """
            Stop every other meridian run on this fleet first: records written to the old store after the copy are not copied. \
            The target must be empty unless --force is given, which replaces what it holds. After the copy, point --state, \
            $MERIDIAN_STATE or meridian.yaml's state: at the target.
            """
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Option(help: ArgumentHelp("The target store: a postgresql:// URL or a SQLite file.", valueName: "path-or-url")) var to: String
    @Flag(help: "Replace the records the target already holds.") var force = false

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
        let target: StateStoreLocation
        do {
            target = try StateStoreLocation.parse(to, relativeTo: cwd)
        } catch {
            throw ValidationError("--to: \(error)")
        }
        let source = try await stateOptions.open(fleetRoot: fleetOptions.root)
        if source.location == target.description {
            throw ValidationError("--to names the store being copied (\(source.location)); give another one")
        }
        do {
            let snapshot = try await source.exportSnapshot()
            let copy = try await StateStores.open(target, environment: environment)
            try await copy.importSnapshot(snapshot, replacing: force)
            let copied = try await copy.exportSnapshot()
            let counts = snapshot.counts
            for table in counts.keys.sorted() {
                Output.line("\(table): \(counts[table] ?? 0) copied")
            }
            let verification = try await copy.verifyAudit(anchor: snapshot.auditHead)
            Output.line("\(copy.location): \(verification)")
            guard copied.counts == counts, copied.audit == snapshot.audit, verification.isIntact else {
                Output.error("error: the copy in \(copy.location) differs from \(source.location); do not switch to it")
                throw ExitCode(ExitStatus.failure)
            }
            Output.line("Copied \(source.location) into \(copy.location). Point --state, MERIDIAN_STATE or meridian.yaml's state: at it.")
        } catch let exit as ExitCode {
            throw exit
        } catch {
            Output.error("error: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
    }
}
