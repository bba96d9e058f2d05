import MeridianModel

/// One wave of an apply: the regions it changes, in fleet order.
public struct WaveStep: Sendable, Equatable {
    public var name: String
    public var regions: [String]
    public var approval: Bool
    /// How many of its regions are changed at once.
    public var parallelism: Int

    public init(name: String, regions: [String], approval: Bool, parallelism: Int) {
        self.name = name
        self.regions = regions
        self.approval = approval
        self.parallelism = parallelism
    }
}

/// The order an apply changes regions in: the fleet's waves in order, each
/// with the regions of `regions` it names (waves without any are left out).
/// A fleet without waves is one wave of every region, all at once. A region
/// no wave names (validate refuses that) goes last, in a wave of its own.
public enum WaveOrder {
    public static func waves(_ declared: [Wave], regions: [String]) -> [WaveStep] {
        guard !declared.isEmpty else {
            return regions.isEmpty ? [] : [WaveStep(name: "all", regions: regions, approval: false, parallelism: max(1, regions.count))]
        }
        var placed = Set<String>()
        var steps: [WaveStep] = []
        for wave in declared {
            let members = wave.regions.filter { regions.contains($0) && !placed.contains($0) }
            placed.formUnion(members)
            guard !members.isEmpty else { continue }
            steps.append(WaveStep(name: wave.name, regions: members, approval: wave.approval, parallelism: max(1, wave.parallelism ?? members.count)))
        }
        let rest = regions.filter { !placed.contains($0) }
        if !rest.isEmpty { steps.append(WaveStep(name: "unassigned", regions: rest, approval: false, parallelism: rest.count)) }
        return steps
    }
}
