import Foundation

/// One change a drift report makes to a host's finding episodes.
public enum DriftEpisodeChange: Hashable, Sendable {
    /// An open episode seen again: refresh its last sighting and detail.
    case refresh(episode: Int64, DriftObservation)
    /// A finding with no open episode: open one.
    case open(DriftObservation)
    /// An open episode the examined host no longer shows: clear it.
    case clear(episode: Int64)
}

/// The drift-episode rules every backend shares.
public enum DriftRules {
    /// One report per host, the last one given winning, in the order hosts first appear.
    public static func latestReports(_ reports: [HostDriftReport]) -> [HostDriftReport] {
        latest(reports) { "\($0.region)\u{0}\($0.host)" }
    }

    /// The `drift_checks` row of a report: whether the host was examined, and why not.
    public static func check(_ status: HostDriftReport.Status) -> (examined: Bool, reason: String?) {
        switch status {
        case .unreachable(let reason): return (false, reason)
        case .examined: return (true, nil)
        }
    }

    /// What one host's report does to its open episodes. An unreachable host
    /// changes nothing (not seeing drift is not seeing none); an examined one
    /// refreshes or opens an episode per finding (one per kind and subject,
    /// the last given winning) and clears every other open episode, in id order.
    public static func changes(for status: HostDriftReport.Status, open: [DriftFindingRecord]) -> [DriftEpisodeChange] {
        switch status {
        case .unreachable:
            return []
        case .examined(let findings):
            let observations = latest(findings) { "\($0.kind)\u{0}\($0.subject)" }
            var seen: Set<Int64> = []
            var changes: [DriftEpisodeChange] = []
            for observation in observations {
                if let episode = open.first(where: { $0.kind == observation.kind && $0.subject == observation.subject }) {
                    seen.insert(episode.id)
                    changes.append(.refresh(episode: episode.id, observation))
                } else {
                    changes.append(.open(observation))
                }
            }
            for episode in open.sorted(by: { $0.id < $1.id }) where !seen.contains(episode.id) {
                changes.append(.clear(episode: episode.id))
            }
            return changes
        }
    }

    static func latest<Item>(_ items: [Item], key: (Item) -> String) -> [Item] {
        var byKey: [String: Item] = [:]
        var order: [String] = []
        for item in items {
            let k = key(item)
            if byKey[k] == nil { order.append(k) }
            byKey[k] = item
        }
        return order.compactMap { byKey[$0] }
    }
}
