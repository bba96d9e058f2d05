import Foundation
import Testing
import MeridianTestHosts
@testable import MeridianModel
@testable import MeridianPlanning

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

/// Random residency rules where declaration order matters: a data
/// jurisdiction defined several times (identically or not) across policy
/// files and lines, and allowed lists that repeat a jurisdiction.
struct ConflictingResidencyFleet {
    /// A small pool, so that repeats and collisions are frequent.
    static let pool = ["EU", "US", "UK", "SG"].map { Jurisdiction($0)! }
    static let files = ["alpha", "beta", "gamma"]

    var regions: [Region] = []
    var definitions: [ResidencyRule] = []

    init(_ random: inout SplitMix64) {
        for index in 0..<Int.random(in: 0...6, using: &random) {
            let jurisdiction = Self.pool.randomElement(using: &random)!
            regions.append(FleetFixture.region("r\(index)", jurisdiction.code, priority: Int.random(in: 0...2, using: &random)))
        }
        // Distinct (file, line) slots, handed out in random order.
        var slots = Self.files.flatMap { file in (0..<8).map { (file, 2 + 2 * $0) } }.shuffled(using: &random)
        for data in Self.pool.shuffled(using: &random).prefix(Int.random(in: 1...Self.pool.count, using: &random)) {
            var previous: [Jurisdiction]?
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                guard let (file, line) = slots.popLast() else { break }
                var allowed = (0..<Int.random(in: 0...4, using: &random)).map { _ in Self.pool.randomElement(using: &random)! }
                // Sometimes the same definition again, which is no conflict.
                if let previous, Bool.random(using: &random) { allowed = previous }
                previous = allowed
                definitions.append(ResidencyRule(data: data, allowed: allowed, location: SourceLocation(file: "policies/\(file).yaml", line: line, column: 5),
                                                 path: "residency[\(line / 2 - 1)]"))
            }
        }
    }

    func fleet(_ random: inout SplitMix64) -> Fleet {
        var fixture = FleetFixture()
        fixture.regions = regions.shuffled(using: &random)
        fixture.policies = Self.files.map { name in
            Policy(name: name, file: "policies/\(name).yaml", residency: definitions.filter { $0.location.file == "policies/\(name).yaml" }.shuffled(using: &random))
        }.shuffled(using: &random)
        return fixture.fleet
    }

    /// The definition that wins for `data`: the first in file, line, column order.
    func first(_ data: Jurisdiction) -> ResidencyRule? {
        definitions.filter { $0.data == data }.min { ($0.location, $0.path) < ($1.location, $1.path) }
    }
}

extension ResidencyPropertyTests {
    @Test func theFirstDefinitionWinsAndEveryConflictAndRepeatIsAnError() {
        for iteration in 0..<Self.fleets {
            let seed = Self.baseSeed &+ 30_000 &+ UInt64(iteration)
            var random = SplitMix64(seed: seed)
            let generated = ConflictingResidencyFleet(&random)
            let fleet = generated.fleet(&random)
            let (table, diagnostics) = ResidencyCompiler.compile(fleet)
            let context = "seed \(seed): \(generated.definitions.map { "\($0.location) \($0.data.code)→\($0.allowed.map(\.code))" })"
            let datas = Set(generated.definitions.map(\.data))
            #expect(table.entries.map(\.data) == datas.sorted(), "\(context)")

            var expectedConflicts: Set<MeridianModel.SourceLocation> = []
            var expectedRepeats = 0
            for data in datas {
                let first = generated.first(data)!
                // Later definitions that differ in any way, order included, are errors where they stand.
                for other in generated.definitions where other.data == data && other.location != first.location && other.allowed != first.allowed {
                    expectedConflicts.insert(other.location)
                }
                // The kept list: each jurisdiction once, as first written, the data's own first.
                var once: [Jurisdiction] = []
                for jurisdiction in first.allowed where !once.contains(jurisdiction) { once.append(jurisdiction) }
                expectedRepeats += Set(first.allowed).filter { jurisdiction in first.allowed.filter { $0 == jurisdiction }.count > 1 }.count
                if let own = once.firstIndex(of: data) { once.insert(once.remove(at: own), at: 0) }
                #expect(table.entry(for: data)?.allowed == once, "\(context): \(data.code)")
            }
            let conflicts = diagnostics.items.filter { $0.message.contains("is defined differently in") }
            #expect(Set(conflicts.map(\.location)) == expectedConflicts && conflicts.count == expectedConflicts.count, "\(context): \(conflicts.map(\.description))")
            let repeats = diagnostics.items.filter { $0.message.contains("is listed twice") }
            #expect(repeats.count == expectedRepeats, "\(context): \(repeats.map(\.description))")
            let unprocessable = table.entries.filter(\.regions.isEmpty).count
            #expect(diagnostics.errorCount == expectedConflicts.count + expectedRepeats + unprocessable, "\(context): \(diagnostics.items.map(\.description))")

            // Whatever order the files and rules come in, the same table and the same errors.
            let (again, againDiagnostics) = ResidencyCompiler.compile(generated.fleet(&random))
            #expect(again == table, "\(context)")
            #expect(againDiagnostics.items.map(\.description).sorted() == diagnostics.items.map(\.description).sorted(), "\(context)")
        }
    }
}
