import MeridianBasics
import MeridianModel

/// What a canary step does next once its window has been analysed, taking
/// the component's `canary.inconclusive` handling into account. The rollout
/// records it; this type only decides.
public enum CanaryStepOutcome: Sendable, Equatable, Codable {
    /// The step passed: move to the next weight (or finish at 100 %).
    case advance
    /// All traffic back to stable, stop the canary slot, stop the wave.
    case rollBack(CanaryStepFailure)
    /// Inconclusive, still within `inconclusive.wait`: analyse again, over the
    /// same step's window grown by this much more time.
    case waitLonger(milliseconds: Int64)
    /// Inconclusive past `inconclusive.wait` with `then: hold`: keep the
    /// weights until `meridian rollout promote` or `rollout abort`.
    case hold(InconclusiveReason)

    /// `waitedPastPause` is how far the step's window already runs beyond its pause.
    public static func after(_ verdict: CanaryVerdict, waitedPastPause: Duration, handling: InconclusiveHandling) -> CanaryStepOutcome {
        switch verdict.decision {
        case .pass:
            return .advance
        case .fail(let checks):
            return .rollBack(.analysisFailed(checks))
        case .inconclusive(let reason):
            let remaining = DurationText.milliseconds(handling.wait) - DurationText.milliseconds(waitedPastPause)
            if remaining > 0 { return .waitLonger(milliseconds: remaining) }
            switch handling.then {
            case .fail:
                return .rollBack(.stillInconclusive(reason, waitedMilliseconds: DurationText.milliseconds(waitedPastPause)))
            case .hold:
                return .hold(reason)
            }
        }
    }
}

/// Why a canary step sends traffic back to stable.
public enum CanaryStepFailure: Sendable, Equatable, Codable, CustomStringConvertible {
    case analysisFailed([CanaryCheck])
    case stillInconclusive(InconclusiveReason, waitedMilliseconds: Int64)

    public var description: String {
        switch self {
        case .analysisFailed(let checks):
            return checks.map { "\($0.kind.rawValue): \($0)" }.joined(separator: "\n")
        case .stillInconclusive(let reason, let waited):
            return "still inconclusive \(DurationText.format(.milliseconds(waited))) past the pause (inconclusive.then: fail): \(reason)"
        }
    }
}
