import ArgumentParser
import Foundation
import MeridianState

/// `meridian audit`: the hash-chained record of every mutating action.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "List the audit log, or verify that no entry was edited or deleted.",
        subcommands: [AuditList.self, AuditVerify.self],
        defaultSubcommand: AuditList.self
    )
}

struct AuditList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List audit entries, oldest first.")

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Option(help: "Show at most this many of the newest entries.") var last: Int = 50
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func validate() throws {
        guard last > 0 else { throw ValidationError("--last must be at least 1") }
    }

    func run() async throws {
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let head = try await store.auditHead()
        let after = max(0, (head?.seq ?? 0) - Int64(last))
        let entries = try await store.auditLog(afterSeq: after, limit: last)
        switch format {
        case .json:
            Output.json(entries)
        case .text:
            if entries.isEmpty { Output.line("The audit log is empty."); return }
            for entry in entries {
                Output.line("\(entry.seq)  \(entry.time)  \(entry.actor)  \(entry.action)  \(entry.subject)  \(entry.detail.text == "{}" ? "" : entry.detail.text)")
            }
        }
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Recompute the hash chain; exit 1 naming the first edited or deleted entry.",
        discussion: "Pass --anchor SEQ:HASH (a head recorded earlier, e.g. by CI) to also detect a rewritten tail."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @OptionGroup var stateOptions: StateOptions
    @Option(help: ArgumentHelp("A head recorded earlier, as SEQ:HASH.", valueName: "seq:hash")) var anchor: String?

    func run() async throws {
        var head: AuditHead?
        if let anchor {
            let parts = anchor.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let seq = Int64(parts[0]), parts[1].count == 64 else {
                throw ValidationError("--anchor takes SEQ:HASH, e.g. 42:9f86d08…, as printed by `meridian audit verify`")
            }
            head = AuditHead(seq: seq, hash: String(parts[1]))
        }
        let store = try await stateOptions.open(fleetRoot: fleetOptions.root)
        let result = try await store.verifyAudit(anchor: head)
        switch result {
        case .intact(_, let head):
            Output.line(result.description)
            if let head { Output.line("Record this anchor to detect a rewritten tail later: \(head.seq):\(head.hash)") }
        case .broken:
            Output.error("error: \(result.description)")
            throw ExitCode(ExitStatus.failure)
        }
    }
}
