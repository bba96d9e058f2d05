import Foundation
import MeridianModel

/// One host of the region as a rollout sees it: its two slots of the component.
public struct RolloutHostObservation: Sendable, Equatable {
    public var host: String
    /// The canary slot's link points at the new version's release.
    public var canaryLinked: Bool
    /// The canary slot's process is alive (and not a zombie).
    public var canaryRunning: Bool
    /// The stable slot's process is alive.
    public var stableRunning: Bool

    public init(host: String, canaryLinked: Bool, canaryRunning: Bool, stableRunning: Bool) {
        self.host = host
        self.canaryLinked = canaryLinked
        self.canaryRunning = canaryRunning
        self.stableRunning = stableRunning
    }
}

/// What an operator asked of a rollout in progress.
public enum RolloutCommand: String, Sendable, Equatable, Codable, CaseIterable {
    /// Go on past a hold (or cut a pause or grace period short).
    case promote
    /// All traffic back to the stable slot now.
    case abort
    /// During the grace period: back to the old slot in one reload.
    case rollback
}

/// The result of a probe the engine ran because a decision asked for it.
public enum ProbeResult: Sendable, Equatable {
    case passed
    case failed(String)
}

/// Everything the state machine decides from, besides the record: the hosts
/// and the gateway as observed now, the results of probes and of the
/// analysis the previous decision asked for, and a pending command.
public struct RolloutObservation: Sendable, Equatable {
    /// Milliseconds since 1970.
    public var now: Int64
    /// Every host of the region that runs the component.
    public var hosts: [RolloutHostObservation]
    /// The canary slot's share of the component's traffic the gateway serves now, 0…100.
    public var gatewayCanaryWeight: Int
    /// The canary slot's health on every host, when the last effect was `checkHealth`.
    public var health: ProbeResult?
    /// The smoke probes' result, when the last effect was `runSmoke`.
    public var smoke: ProbeResult?
    /// The analysis of the current step, when the last effect was `analyse`.
    public var analysis: StepAnalysis?
    public var command: RolloutCommand?

    public init(now: Int64, hosts: [RolloutHostObservation], gatewayCanaryWeight: Int, health: ProbeResult? = nil, smoke: ProbeResult? = nil, analysis: StepAnalysis? = nil, command: RolloutCommand? = nil) {
        self.now = now
        self.hosts = hosts
        self.gatewayCanaryWeight = gatewayCanaryWeight
        self.health = health
        self.smoke = smoke
        self.analysis = analysis
        self.command = command
    }
}

/// The one thing the engine does next for a rollout. Each effect is carried
/// out by the engine; its outcome reaches the machine through the next
/// observation (or, when the effect itself fails, through `RolloutMachine.failed`).
public enum RolloutEffect: Sendable, Equatable {
    /// Nothing to carry out: write the record and decide again.
    case none
    /// Install the new release into the canary slot on every host and start it (apply's host steps).
    case install
    /// Start a slot on every host where it is not running, and health-check it.
    case startSlot(Slot)
    /// Ask the slot's health path on every host; the result comes back as `health`.
    case checkHealth(Slot)
    /// Send the component's smoke probes to the slot on every host; the result comes back as `smoke`.
    case runSmoke(Slot)
    /// Set the gateway so the canary slot gets `canary` percent (one reload).
    case setWeight(canary: Int)
    /// Sleep until the time given (milliseconds since 1970), then decide again.
    case wait(until: Int64)
    /// Analyse the gateway's access log of the window; the verdict comes back as `analysis`.
    case analyse(step: Int, from: Int64, to: Int64)
    /// Stop the slot's process on every host.
    case stopSlot(Slot)
    /// Nothing happens until an operator's command.
    case awaitCommand
    /// The rollout has ended.
    case finish
}

/// A decision: the record to write (before the effect runs, so a crash
/// resumes from it) and the effect to carry out.
public struct RolloutDecision: Sendable, Equatable {
    public var record: RolloutRecord
    public var effect: RolloutEffect

    public init(_ record: RolloutRecord, _ effect: RolloutEffect) {
        self.record = record
        self.effect = effect
    }
}

/// The pure rollout state machine: from the recorded rollout and what is
/// observed now, the next phase and the one effect that gets there. It moves
/// one step per call and holds no state of its own, so a rollout resumed after
/// a crash decides exactly as if it had never stopped. Its two promises:
/// traffic never stays on a slot that is not running or failed its checks,
/// and an unfinished rollout either completes or returns to the stable slot.
public enum RolloutMachine {
    public static func next(_ record: RolloutRecord, _ seen: RolloutObservation) -> RolloutDecision {
        let now = seen.now
        var record = record
        if record.phase.isTerminal { return RolloutDecision(record, .finish) }

        // Commands come first: an operator's word outranks the schedule.
        switch seen.command {
        case .abort?:
            if record.phase != .aborting {
                return RolloutDecision(record.moved(to: .aborting, at: now, reason: "aborted by an operator (rollout abort)"), .none)
            }
        case .rollback?:
            if record.phase == .switched {
                return RolloutDecision(record.moved(to: .aborting, at: now, reason: "rolled back by an operator during the grace period (rollout rollback)"), .none)
            }
        case .promote?:
            switch record.phase {
            case .holding(let step), .analysing(let step):
                return RolloutDecision(record.moved(to: .shifting(step: step + 1), at: now), .none)
            case .switched:
                if seen.hosts.contains(where: \.stableRunning) { return RolloutDecision(touch(record, now), .stopSlot(record.stableSlot)) }
                return RolloutDecision(record.moved(to: .promoted, at: now, reason: "promoted by an operator"), .finish)
            case .installing, .startingIdle, .healthChecking, .smokeTesting, .shifting, .aborting, .promoted, .rolledBack, .failed:
                break
            }
        case nil:
            break
        }

        let deadCanary = seen.hosts.filter { !$0.canaryRunning }.map(\.host)
        // Traffic on the canary slot while it is not running on some host: back to stable at once.
        if record.phase != .aborting, seen.gatewayCanaryWeight > 0 || record.canaryWeight > 0, !deadCanary.isEmpty {
            return RolloutDecision(record.moved(to: .aborting, at: now, reason: "the \(record.canarySlot.rawValue) slot is not running on \(deadCanary.joined(separator: ", ")) while it takes traffic"), .none)
        }

        switch record.phase {
        case .installing:
            if seen.hosts.allSatisfy({ $0.canaryLinked && $0.canaryRunning }) {
                return RolloutDecision(record.moved(to: .healthChecking, at: now), .none)
            }
            if seen.hosts.allSatisfy(\.canaryLinked) {
                return RolloutDecision(record.moved(to: .startingIdle, at: now), .none)
            }
            return RolloutDecision(touch(record, now), .install)

        case .startingIdle:
            if !seen.hosts.allSatisfy(\.canaryLinked) { return RolloutDecision(record.moved(to: .installing, at: now), .none) }
            if deadCanary.isEmpty { return RolloutDecision(record.moved(to: .healthChecking, at: now), .none) }
            return RolloutDecision(touch(record, now), .startSlot(record.canarySlot))

        case .healthChecking, .smokeTesting:
            // No traffic on the canary yet: a canary that died (a crash, a reboot) is started again.
            if !deadCanary.isEmpty { return RolloutDecision(record.moved(to: .startingIdle, at: now), .none) }
            if record.phase == .healthChecking {
                switch seen.health {
                case nil: return RolloutDecision(touch(record, now), .checkHealth(record.canarySlot))
                case .failed(let why)?: return RolloutDecision(record.moved(to: .aborting, at: now, reason: "health check failed: \(why)"), .none)
                case .passed?:
                    let next: RolloutPhase = record.settings.hasSmokeProbes ? .smokeTesting : .shifting(step: 0)
                    return RolloutDecision(record.moved(to: next, at: now), .none)
                }
            }
            switch seen.smoke {
            case nil: return RolloutDecision(touch(record, now), .runSmoke(record.canarySlot))
            case .failed(let why)?: return RolloutDecision(record.moved(to: .aborting, at: now, reason: "smoke probes failed: \(why)"), .none)
            case .passed?: return RolloutDecision(record.moved(to: .shifting(step: 0), at: now), .none)
            }

        case .shifting(let step):
            if !deadCanary.isEmpty {
                // Only reachable with no traffic on the canary (checked above): start it again first.
                return RolloutDecision(record.moved(to: .startingIdle, at: now), .none)
            }
            let target = record.weight(ofStep: step)
            guard seen.gatewayCanaryWeight == target else { return RolloutDecision(touch(record, now), .setWeight(canary: target)) }
            record.canaryWeight = target
            return RolloutDecision(record.moved(to: target >= 100 ? .switched : .analysing(step: step), at: now), .none)

        case .analysing(let step):
            if seen.gatewayCanaryWeight != record.canaryWeight {
                // The gateway does not serve what the record says (a crash between reload and record, or a hand edit): set it again.
                return RolloutDecision(record.moved(to: .shifting(step: step), at: now), .none)
            }
            let pauseEnd = record.phaseSince + record.settings.pauseMillis
            if now < pauseEnd { return RolloutDecision(record, .wait(until: pauseEnd)) }
            guard let analysis = seen.analysis, analysis.step == step else {
                return RolloutDecision(touch(record, now), .analyse(step: step, from: record.phaseSince, to: now))
            }
            record.analyses.append(analysis)
            switch analysis.verdict {
            case .pass:
                return RolloutDecision(record.moved(to: .shifting(step: step + 1), at: now), .none)
            case .fail:
                return RolloutDecision(record.moved(to: .aborting, at: now, reason: "step \(step + 1) (\(record.canaryWeight)%) failed its analysis: \(analysis.summary)"), .none)
            case .inconclusive:
                let limit = pauseEnd + record.settings.inconclusiveWaitMillis
                if now < limit {
                    record.updatedAt = now
                    return RolloutDecision(record, .wait(until: limit))
                }
                switch record.settings.thenInconclusive {
                case .fail:
                    return RolloutDecision(record.moved(to: .aborting, at: now, reason: "step \(step + 1) (\(record.canaryWeight)%) stayed inconclusive: \(analysis.summary)"), .none)
                case .hold:
                    return RolloutDecision(record.moved(to: .holding(step: step), at: now, reason: "step \(step + 1) is inconclusive: \(analysis.summary); `meridian rollout promote \(record.region)` goes on, `rollout abort` goes back"), .none)
                }
            }

        case .holding(let step):
            if seen.gatewayCanaryWeight != record.canaryWeight { return RolloutDecision(record.moved(to: .shifting(step: step), at: now), .none) }
            return RolloutDecision(record, .awaitCommand)

        case .switched:
            if seen.gatewayCanaryWeight != 100 { return RolloutDecision(touch(record, now), .setWeight(canary: 100)) }
            if !seen.hosts.contains(where: \.stableRunning) {
                return RolloutDecision(record.moved(to: .promoted, at: now), .finish)
            }
            let graceEnd = record.phaseSince + record.settings.graceMillis
            if now < graceEnd { return RolloutDecision(record, .wait(until: graceEnd)) }
            return RolloutDecision(touch(record, now), .stopSlot(record.stableSlot))

        case .aborting:
            let deadStable = seen.hosts.filter { !$0.stableRunning }
            if !deadStable.isEmpty { return RolloutDecision(touch(record, now), .startSlot(record.stableSlot)) }
            if seen.gatewayCanaryWeight != 0 { return RolloutDecision(touch(record, now), .setWeight(canary: 0)) }
            record.canaryWeight = 0
            if seen.hosts.contains(where: \.canaryRunning) { return RolloutDecision(touch(record, now), .stopSlot(record.canarySlot)) }
            return RolloutDecision(record.moved(to: .rolledBack, at: now), .finish)

        case .promoted, .rolledBack, .failed:
            return RolloutDecision(record, .finish)
        }
    }

    /// The record after `effect` itself failed (a start, a probe, a reload
    /// or a stop that did not work): before traffic moved, back to stable;
    /// when traffic cannot be returned, `failed` for an operator.
    public static func failed(_ record: RolloutRecord, effect: RolloutEffect, reason: String, now: Int64) -> RolloutRecord {
        switch effect {
        case .install, .startSlot, .checkHealth, .runSmoke, .analyse:
            if record.phase == .aborting {
                return record.moved(to: .failed, at: now, reason: "while returning to the \(record.stableSlot.rawValue) slot: \(reason); fix the host and run `meridian rollout resume \(record.region)`")
            }
            return record.moved(to: .aborting, at: now, reason: reason)
        case .setWeight(let canary):
            if canary == 0 || record.phase == .aborting {
                return record.moved(to: .failed, at: now, reason: "the gateway could not be set back to the \(record.stableSlot.rawValue) slot: \(reason); fix the gateway and run `meridian rollout resume \(record.region)`")
            }
            return record.moved(to: .aborting, at: now, reason: "the gateway could not be set to \(canary)%: \(reason)")
        case .stopSlot:
            // Traffic is already where it belongs; the stop is tried again on resume.
            var next = record
            next.updatedAt = now
            next.reason = "a slot did not stop: \(reason); `meridian rollout resume \(record.region)` tries again"
            return next
        case .none, .wait, .awaitCommand, .finish:
            return record
        }
    }

    static func touch(_ record: RolloutRecord, _ now: Int64) -> RolloutRecord {
        var next = record
        next.updatedAt = now
        return next
    }
}
