import ArgumentParser
import Foundation
import MeridianState

/// `meridian unlock REGION…`: releases a region's lease by hand, on the record.
struct UnlockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract: "Release the lease a run holds on regions, when its process is gone; the release is audited.",
        discussion: "Use it only when the holder is known to be dead: a live run keeps working without its lease."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Argument(help: "The regions to unlock.") var regions: [String]
    @Option(help: "Why, for the audit log.") var reason: String = "released by hand"

    func validate() throws {
        if regions.isEmpty { throw ValidationError("name at least one region to unlock") }
    }

    func run() async throws {
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let actor = ProcessIdentity.current().actor
        for region in regions {
            if let lease = try await store.forceReleaseLease(region: region, by: actor, reason: reason) {
                Output.line("Released \(region): it was held by \(lease.holder) since \(lease.acquiredAt).")
            } else {
                Output.line("\(region) was not locked.")
            }
        }
    }
}
