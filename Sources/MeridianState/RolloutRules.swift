import Foundation

/// The rollout rules every backend shares: when a rollout may start or
/// change, what its next stored value and journal row are, and what goes
/// on the audit record. A store reads the rows inside one serialized
/// transaction, calls these, and writes what they return in that same
/// transaction, so a transition and its audit entry commit together.
public enum RolloutRules {
    /// A component has at most one unfinished rollout per region: `unfinished`
    /// is the one the store found for (region, component), if any.
    public static func checkMayStart(unfinished: StoredRollout?) throws {
        if let unfinished { throw StateStoreError.rolloutInProgress(unfinished) }
    }

    /// The first stored value of a rollout the store has just given `id`.
    public static func started(id: RolloutID, region: String, component: String, _ first: RolloutUpdate, at now: StateTime) -> StoredRollout {
        StoredRollout(id: id, run: first.run, region: region, component: component, phase: first.phase, terminal: first.terminal,
                      record: first.record, startedAt: now, updatedAt: now)
    }

    /// The rollout after `next`; a terminal rollout is never changed again.
    public static func advanced(_ current: StoredRollout, _ next: RolloutUpdate, at now: StateTime) throws -> StoredRollout {
        guard !current.terminal else { throw StateStoreError.rolloutFinished(current) }
        var stored = current
        stored.phase = next.phase
        stored.terminal = next.terminal
        stored.record = next.record
        stored.updatedAt = now
        return stored
    }

    /// The journal row of one change: `seq` is 1 for a rollout's first
    /// record and one more than the last transition's after that.
    public static func transition(_ rollout: StoredRollout, lastSeq: Int?, from: String?, _ update: RolloutUpdate, at now: StateTime) -> RolloutTransition {
        RolloutTransition(rollout: rollout.id, seq: (lastSeq ?? 0) + 1, run: update.run, fromPhase: from, toPhase: update.phase,
                          effect: update.effect, detail: update.detail, at: now)
    }

    /// The audit entry written with each transition.
    public static func transitionRecord(_ rollout: StoredRollout, _ transition: RolloutTransition, actor: String) -> AuditRecord {
        var fields = ["rollout": String(rollout.id.rawValue), "component": rollout.component, "to": transition.toPhase,
                      "effect": transition.effect, "detail": transition.detail.text]
        if let from = transition.fromPhase { fields["from"] = from }
        if let run = transition.run { fields["run"] = String(run.rawValue) }
        return AuditRecord(actor: actor, action: .rolloutTransition, subject: rollout.region, detail: JSONDetail(fields))
    }

    /// The audit entry written when an operator queues a command.
    public static func commandRecord(_ command: RolloutCommandRecord) -> AuditRecord {
        AuditRecord(actor: command.actor, action: .rolloutCommand, subject: command.subject,
                    detail: JSONDetail(["command": command.command, "id": String(command.id)]))
    }

    /// Commands as `takeRolloutCommands` returns them: the ones still pending,
    /// marked taken at `now`, oldest first. A command is taken once: the store
    /// marks exactly these taken in the same transaction that read them.
    public static func taken(_ pending: [RolloutCommandRecord], at now: StateTime) -> [RolloutCommandRecord] {
        pending.filter { $0.takenAt == nil }.sorted { $0.id < $1.id }.map { command in
            var taken = command
            taken.takenAt = now
            return taken
        }
    }
}
