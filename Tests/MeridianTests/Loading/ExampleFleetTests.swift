import Foundation
import Testing
@testable import MeridianLoading
@testable import MeridianModel

/// The example fleet at the repository root is what the README runs; it must
/// always load without a single diagnostic.
@Suite struct ExampleFleetTests {
    let loaded = FleetLoader(root: RepositoryPaths.root).load()

    @Test func loadsWithoutDiagnostics() throws {
        #expect(loaded.diagnostics.items.isEmpty, "\(loaded.diagnostics.sorted.map(\.description))")
        #expect(loaded.fleet != nil)
    }

    @Test func hasTheShapeTheDocsPromise() throws {
        let fleet = try #require(loaded.fleet)
        #expect(fleet.regions.count >= 5)
        #expect(Set(fleet.regions.map(\.jurisdiction)).count >= 4)
        let multiHost = fleet.regions.filter { $0.hosts.count > 1 }
        #expect(!multiHost.isEmpty)
        #expect(multiHost.contains { region in Set(region.hosts.map { $0.roles.map(\.description).joined() }).count > 1 })
        #expect(fleet.settings.components.map(\.name) == ["inference", "knowledge-base"])
    }

    @Test func everyHostIsOnADistinctLoopbackAddress() throws {
        let fleet = try #require(loaded.fleet)
        let addresses = fleet.regions.flatMap { $0.hosts.map(\.address) }
        #expect(Set(addresses).count == addresses.count)
        for address in addresses {
            #expect(HostAddress.isIPv4(address) && address.hasPrefix("127."), "\(address) is not a loopback address")
        }
    }

    /// The example stack binds the address it is given, so every start line passes it.
    @Test func everyComponentStartsOnTheServiceAddressWithARelease() throws {
        let fleet = try #require(loaded.fleet)
        for component in fleet.settings.components {
            #expect(component.start.contains("{address}"), "\(component.name): \(component.start)")
            for region in fleet.regions {
                guard let version = fleet.version(of: component.name, in: region) else { continue }
                let release = RepositoryPaths.root.appendingPathComponent(component.artifact.resolved(for: version)).appendingPathComponent("release.json")
                #expect(FileManager.default.fileExists(atPath: release.path), "\(region.name) runs \(component.name) \(version) but \(release.path) is missing")
            }
        }
    }

    @Test func secretsAreReferencesNotValues() throws {
        let fleet = try #require(loaded.fleet)
        let eu = try #require(fleet.region(named: "eu-west"))
        #expect(eu.variables["api_token"] == .secret(SecretReference(source: .environment, name: "MERIDIAN_EU_WEST_TOKEN")))
    }

    @Test func versionsComeFromPlatformUnlessPinned() throws {
        let fleet = try #require(loaded.fleet)
        let us = try #require(fleet.region(named: "us-east"))
        let eu = try #require(fleet.region(named: "eu-west"))
        #expect(fleet.version(of: "knowledge-base", in: us) == Version("1.9.0"))
        #expect(fleet.version(of: "knowledge-base", in: eu) == Version("1.8.0"))
    }
}
