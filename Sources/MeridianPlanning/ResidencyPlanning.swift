import Foundation
import MeridianModel

/// How one data jurisdiction's entry of the routing table changes: the
/// regions allowed to process it before (as applied) and after (as the fleet
/// now says), in table order. Nil `before`: a new rule; nil `after`: the rule
/// is gone, and every gateway refuses the data.
public struct ResidencyEntryChange: Codable, Sendable, Equatable {
    public var data: String
    public var before: [String]?
    public var after: [String]?
    /// Regions that may process the data after, and could not before.
    public var gained: [String]
    /// Regions that could process the data before, and may not after.
    public var lost: [String]

    public init(data: String, before: [String]?, after: [String]?) {
        self.data = data
        self.before = before
        self.after = after
        gained = (after ?? []).filter { !(before ?? []).contains($0) }
        lost = (before ?? []).filter { !(after ?? []).contains($0) }
    }

    /// The same regions in another preference order: forwarding changes, the allowed set does not.
    public var reordersOnly: Bool { gained.isEmpty && lost.isEmpty && before != nil && after != nil }
}

/// The residency part of a plan: where data may go changes, compared with
/// the routing table the hosts were applied with (read back from their
/// governance bundles). Invariant: present only when some observed host's
/// applied table or settings differ from the fleet's.
public struct ResidencyPlan: Codable, Sendable, Equatable {
    /// The host whose applied bundle is the baseline, `region/host`.
    public var comparedWith: String
    public var entries: [ResidencyEntryChange]
    /// Changes of the request settings (header, missing rule, refuse status), as sentences.
    public var settings: [String]
    /// Gateway hosts (`region/host`) whose residency section changes.
    public var gateways: [String]
    /// Hosts applied with yet another table (a fleet applied in part), and
    /// hosts whose applied bundle could not be read: the baseline is not theirs.
    public var notes: [String]

    enum CodingKeys: String, CodingKey {
        case entries, settings, gateways, notes
        case comparedWith = "compared_with"
    }

    /// Compares the routing table each observed host was applied with with
    /// the one its desired bundle carries (the fleet's). The baseline is the
    /// applied table most hosts that differ hold (ties: the first in region,
    /// host order). Hosts with no bundle (never applied) are no baseline: a
    /// first apply has nothing to compare. Pure: desired and observed state only.
    public static func compare(desired: [DesiredHostState], observed: [HostID: ObservedHostState]) -> ResidencyPlan? {
        let path = DesiredHostState.governanceBundlePath
        var applied: [(host: DesiredHostState, was: AppliedResidency, now: AppliedResidency)] = []
        var notes: [String] = []
        for host in desired.sorted(by: { ($0.region, $0.host) < ($1.region, $1.host) }) {
            guard let bundle = host.files.first(where: { $0.path == path }), case .bytes(let bytes) = bundle.content,
                  let now = try? AppliedResidency.read(bundle: bytes),
                  let seen = observed[host.id], let onHost = seen.files[path]?.sha256 else { continue }
            if onHost == bundle.content.fingerprint {
                applied.append((host, now, now))
            } else if let content = seen.fileContents[path] {
                do {
                    applied.append((host, try AppliedResidency.read(bundle: content), now))
                } catch {
                    notes.append("\(host.id): \(error)")
                }
            } else {
                notes.append("\(host.id): its \(path) differs from the fleet's but was not read back (over the observation's content limit), so it is not compared")
            }
        }
        let differing = applied.filter { $0.was != $0.now }
        guard !differing.isEmpty else { return nil }
        let counts = differing.map { candidate in differing.count { $0.was == candidate.was } }
        let baseline = differing[counts.firstIndex(of: counts.max()!)!]
        let others = differing.filter { $0.was != baseline.was }.map(\.host.id.description)
        if !others.isEmpty {
            notes.insert("\(others.joined(separator: ", ")) \(others.count == 1 ? "was" : "were") applied with another routing table; the changes above are against \(baseline.host.id)'s", at: 0)
        }

        let old = baseline.was, now = baseline.now
        let codes = Set(old.table.entries.map(\.data.code) + now.table.entries.map(\.data.code)).sorted()
        let entries = codes.compactMap { code -> ResidencyEntryChange? in
            let data = Jurisdiction(code)!
            let before = old.table.entry(for: data)?.regions.map(\.name)
            let after = now.table.entry(for: data)?.regions.map(\.name)
            return before == after ? nil : ResidencyEntryChange(data: code, before: before, after: after)
        }
        var settings: [String] = []
        if old.header != now.header { settings.append("residency header \(old.header) → \(now.header)") }
        if old.table.assumeWhenMissing != now.table.assumeWhenMissing {
            func rule(_ assumed: Jurisdiction?) -> String { assumed.map { "assume \($0.code)" } ?? "refuse" }
            settings.append("a request without the header: \(rule(old.table.assumeWhenMissing)) → \(rule(now.table.assumeWhenMissing))")
        }
        if old.refuseStatus != now.refuseStatus { settings.append("refuse status \(old.refuseStatus) → \(now.refuseStatus)") }

        // A gateway's section changes when what it does with some data changes:
        // serving it locally, the regions it forwards to, or the request settings.
        let gateways = applied.filter { $0.host.gateway != nil && $0.was != $0.now }
            .filter { Self.section($0.was, at: $0.host.region) != Self.section($0.now, at: $0.host.region) }
            .map(\.host.id.description)
        return ResidencyPlan(comparedWith: baseline.host.id.description, entries: entries, settings: settings, gateways: gateways, notes: notes)
    }

    /// What the residency section of a gateway of `region` is made of:
    /// the request settings and, per data jurisdiction, whether it serves
    /// locally and its hops in order (`GatewayResidency.forRegion`).
    static func section(_ residency: AppliedResidency, at region: String) -> [String] {
        guard !residency.table.entries.isEmpty else { return [] }
        return ["\(residency.header) \(residency.refuseStatus) \(residency.table.assumeWhenMissing?.code ?? "-")"]
            + residency.table.entries.map { entry in
                "\(entry.data.code) \(entry.admits(region: region)) " + entry.regions.map(\.name).filter { $0 != region }.joined(separator: ",")
            }
    }

    /// The section of the text plan, before the summary line.
    public func renderText() -> String {
        var out = "Residency changes (against the routing table applied on \(comparedWith)):\n"
        for entry in entries {
            let now = entry.after.map { $0.isEmpty ? "(none)" : $0.joined(separator: ", ") }
            let was = entry.before.map { $0.isEmpty ? "(none)" : $0.joined(separator: ", ") }
            switch (was, now) {
            case (nil, let now?):
                out += "  \(entry.data) data: new rule, may go to \(now)\n"
            case (let was?, nil):
                out += "  \(entry.data) data: rule removed, every gateway refuses it (was \(was))\n"
            case (let was?, let now?):
                var parts: [String] = []
                if !entry.gained.isEmpty { parts.append("gains \(entry.gained.joined(separator: ", "))") }
                if !entry.lost.isEmpty { parts.append("loses \(entry.lost.joined(separator: ", "))") }
                if entry.reordersOnly { parts.append("same regions in another order") }
                out += "  \(entry.data) data: \(parts.joined(separator: "; ")) (now \(now); was \(was))\n"
            case (nil, nil):
                break
            }
        }
        for change in settings { out += "  \(change)\n" }
        out += "  gateway configuration changes: \(gateways.isEmpty ? "none" : gateways.joined(separator: ", "))\n"
        for note in notes { out += "  ! \(note)\n" }
        return out
    }
}
