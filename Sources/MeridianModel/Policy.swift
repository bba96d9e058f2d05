import Foundation

/// A policy file: residency rules and governance rules, referenced by regions by name.
public struct Policy: Sendable, Equatable {
    public var name: String
    /// The policy file, relative to the fleet root.
    public var file: String
    public var residency: [ResidencyRule]
    public var governance: [GovernanceRule]

    public init(name: String, file: String, residency: [ResidencyRule] = [], governance: [GovernanceRule] = []) {
        self.name = name
        self.file = file
        self.residency = residency
        self.governance = governance
    }
}

/// Data of jurisdiction `data` may be processed only in the `allowed`
/// jurisdictions, preferred in the order listed (its own always first).
public struct ResidencyRule: Sendable, Equatable {
    public var data: Jurisdiction
    public var allowed: [Jurisdiction]
    /// Where the rule was written, for diagnostics.
    public var location: SourceLocation
    /// The path of the rule inside its policy file (`residency[2]`).
    public var path: String

    public init(data: Jurisdiction, allowed: [Jurisdiction], location: SourceLocation, path: String) {
        self.data = data
        self.allowed = allowed
        self.location = location
        self.path = path
    }
}

/// One governance rule; it holds in every region whose policies include it.
public struct GovernanceRule: Sendable, Equatable {
    public var id: String
    public var description: String?
    public var kind: GovernanceRuleKind
    public var location: SourceLocation
    public var path: String

    public init(id: String, description: String? = nil, kind: GovernanceRuleKind, location: SourceLocation, path: String) {
        self.id = id
        self.description = description
        self.kind = kind
        self.location = location
        self.path = path
    }
}

/// The closed set of governance rules meridian evaluates.
public enum GovernanceRuleKind: Sendable, Equatable {
    /// A region variable must be set, to one of `allowed` when given.
    case requireVariable(name: String, allowed: [String]?)
    /// A component's version must lie in a range.
    case versionRange(component: String, range: VersionRange)
    /// A component must be upgraded with this strategy.
    case rolloutStrategy(component: String, strategy: RolloutStrategy)
    /// Regions under the rule may differ by at most `max` in `level` of a component's version.
    case maxVersionSkew(component: String, level: SkewLevel, max: Int)
    /// No change may be applied between `from` and `to`.
    case freezeWindow(from: Date, to: Date, reason: String?)

    /// The name the rule kind is written as in policy files.
    public var keyword: String {
        switch self {
        case .requireVariable: return "require-variable"
        case .versionRange: return "version-range"
        case .rolloutStrategy: return "rollout-strategy"
        case .maxVersionSkew: return "max-version-skew"
        case .freezeWindow: return "freeze-window"
        }
    }

    public static let keywords = ["require-variable", "version-range", "rollout-strategy", "max-version-skew", "freeze-window"]
}

/// Which part of a version a skew rule counts.
public enum SkewLevel: String, Sendable, Codable, CaseIterable, Hashable {
    case major
    case minor
    case patch
}
