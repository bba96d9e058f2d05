import Foundation
import Testing
@testable import MeridianModel
@testable import MeridianPlanning

/// A small, fast, seedable generator (SplitMix64), so that every random
/// fleet can be rebuilt from the seed a failure prints.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random fleets and policies for the residency properties.
struct RandomResidencyFleet {
    static let pool = ["EU", "US", "UK", "SG", "CH", "JP", "BR", "IN"].map { Jurisdiction($0)! }

    var regions: [Region] = []
    /// One rule per data jurisdiction, before being spread over policy files.
    var rules: [(data: Jurisdiction, allowed: [Jurisdiction])] = []
    var missing: MissingResidency = .refuse

    init(_ random: inout SplitMix64) {
        let regionCount = Int.random(in: 0...9, using: &random)
        for index in 0..<regionCount {
            let jurisdiction = Self.pool.randomElement(using: &random)!
            // Names collide in their prefix on purpose so that name order matters.
            let name = "r\(Int.random(in: 0...2, using: &random))-\(index)"
            regions.append(FleetFixture.region(name, jurisdiction.code, priority: Int.random(in: 0...3, using: &random)))
        }
        for data in Self.pool.shuffled(using: &random).prefix(Int.random(in: 0...Self.pool.count, using: &random)) {
            let allowed = Array(Self.pool.shuffled(using: &random).prefix(Int.random(in: 0...4, using: &random)))
            rules.append((data, allowed))
        }
        if Bool.random(using: &random) { missing = .assume(Self.pool.randomElement(using: &random)!) }
    }

    /// The fleet with the rules spread at random over up to three policy
    /// files, in random order, some repeated identically in a second file.
    func fleet(_ random: inout SplitMix64) -> Fleet {
        let names = ["alpha", "beta", "gamma"].shuffled(using: &random).prefix(Int.random(in: 1...3, using: &random))
        var spread: [String: [ResidencyRule]] = [:]
        for rule in rules.shuffled(using: &random) {
            var homes = [names.randomElement(using: &random)!]
            if Int.random(in: 0..<4, using: &random) == 0 { homes.append(names.randomElement(using: &random)!) }
            for home in homes {
                let index = spread[home, default: []].count
                spread[home, default: []].append(ResidencyRule(
                    data: rule.data, allowed: rule.allowed,
                    location: SourceLocation(file: "policies/\(home).yaml", line: 2 + 2 * index, column: 5), path: "residency[\(index)]"))
            }
        }
        var fixture = FleetFixture()
        fixture.regions = regions.shuffled(using: &random)
        fixture.policies = names.map { Policy(name: $0, file: "policies/\($0).yaml", residency: spread[$0] ?? []) }.shuffled(using: &random)
        fixture.residency = ResidencySettings(missing: missing)
        return fixture.fleet
    }
}

@Suite struct ResidencyPropertyTests {
    static let baseSeed: UInt64 = 0x6D65_7269_6469_616E
    static let fleets = 400

    @Test func tablesListExactlyTheAllowedRegionsInOrder() {
        for iteration in 0..<Self.fleets {
            let seed = Self.baseSeed &+ UInt64(iteration)
            var random = SplitMix64(seed: seed)
            let generated = RandomResidencyFleet(&random)
            let fleet = generated.fleet(&random)
            let (table, _) = ResidencyCompiler.compile(fleet)
            #expect(table.entries.map(\.data) == generated.rules.map(\.data).sorted(), "seed \(seed)")
            for rule in generated.rules {
                guard let entry = table.entry(for: rule.data) else { continue }
                let allowed = Set(rule.allowed)
                #expect(Set(entry.allowed) == allowed && entry.allowed.count == allowed.count, "seed \(seed)")
                if allowed.contains(rule.data) { #expect(entry.allowed.first == rule.data, "seed \(seed)") }
                // Never a region outside the allowed jurisdictions.
                #expect(entry.regions.allSatisfy { allowed.contains($0.jurisdiction) }, "seed \(seed)")
                #expect(entry.regions.allSatisfy { fleet.region(named: $0.name)?.jurisdiction == $0.jurisdiction }, "seed \(seed)")
                // Every region of every allowed jurisdiction, exactly once.
                let expected = fleet.regions.filter { allowed.contains($0.jurisdiction) }.map(\.name)
                #expect(entry.regions.map(\.name).sorted() == expected.sorted(), "seed \(seed)")
                // Ordered by the jurisdiction's preference, then priority, then name.
                let rank = { (region: RoutedRegion) -> (Int, Int, String) in
                    (entry.allowed.firstIndex(of: region.jurisdiction)!, fleet.region(named: region.name)!.priority, region.name)
                }
                #expect(zip(entry.regions, entry.regions.dropFirst()).allSatisfy { rank($0) < rank($1) }, "seed \(seed)")
            }
        }
    }

    @Test func compilingIsDeterministicWhateverTheInputOrder() {
        for iteration in 0..<Self.fleets {
            let seed = Self.baseSeed &+ 10_000 &+ UInt64(iteration)
            var random = SplitMix64(seed: seed)
            let generated = RandomResidencyFleet(&random)
            let first = generated.fleet(&random)
            let reshuffled = generated.fleet(&random)
            let (table, diagnostics) = ResidencyCompiler.compile(first)
            #expect(ResidencyCompiler.compile(first).0 == table, "seed \(seed)")
            #expect(ResidencyCompiler.compile(first).1 == diagnostics, "seed \(seed)")
            let (other, otherDiagnostics) = ResidencyCompiler.compile(reshuffled)
            #expect(other == table, "seed \(seed)")
            #expect(other.jsonText == table.jsonText, "seed \(seed)")
            #expect(otherDiagnostics.errorCount == diagnostics.errorCount, "seed \(seed)")
            // The generator never writes conflicting or repeated entries, so the only errors are data nobody can process.
            let unprocessable = table.entries.filter(\.regions.isEmpty).count
            #expect(diagnostics.errorCount == unprocessable, "seed \(seed)")
        }
    }

    @Test func decisionsNeverLeaveTheAllowedSet() {
        for iteration in 0..<Self.fleets {
            let seed = Self.baseSeed &+ 20_000 &+ UInt64(iteration)
            var random = SplitMix64(seed: seed)
            let generated = RandomResidencyFleet(&random)
            let fleet = generated.fleet(&random)
            let table = ResidencyCompiler.compile(fleet).0
            let names = fleet.regions.map(\.name)
            for _ in 0..<25 {
                let local = (names + ["unknown-region"]).randomElement(using: &random)!
                let healthy = Set(names.filter { _ in Bool.random(using: &random) })
                let data: Jurisdiction? = Int.random(in: 0..<6, using: &random) == 0 ? nil : RandomResidencyFleet.pool.randomElement(using: &random)
                let decision = table.decide(dataJurisdiction: data, at: local, healthy: healthy)
                let context = "seed \(seed): \(data?.code ?? "no header") at \(local), healthy \(healthy.sorted()): \(decision)"
                guard let effective = data ?? table.assumeWhenMissing else {
                    #expect(decision == .refuse(.missingHeader), "\(context)")
                    continue
                }
                guard let entry = table.entry(for: effective) else {
                    #expect(decision == .refuse(.unknownJurisdiction(effective.code)), "\(context)")
                    continue
                }
                let localJurisdiction = fleet.region(named: local)?.jurisdiction
                let healthyAllowed = entry.regions.filter { healthy.contains($0.name) }
                switch decision {
                case .serveLocally:
                    #expect(localJurisdiction.map(entry.allowed.contains) == true, "\(context)")
                    #expect(healthy.contains(local), "\(context)")
                case .forward(let target):
                    #expect(entry.admits(region: target), "\(context)")
                    #expect(target != local && healthy.contains(target), "\(context)")
                    #expect(healthyAllowed.first { $0.name != local }?.name == target, "\(context)")
                    #expect(!(entry.admits(region: local) && healthy.contains(local)), "\(context)")
                case .refuse(let reason):
                    #expect(reason == .noHealthyAllowedRegion(effective), "\(context)")
                    #expect(healthyAllowed.isEmpty, "\(context)")
                }
            }
        }
    }
}
