import Foundation
import MeridianEngine
import MeridianPlanning

/// The progress of an apply as one line per region, redrawn in place on a
/// terminal: hosts finished out of all, failures, and what each busy host is
/// doing. Events arrive from many hosts at once, so the state is guarded.
final class ApplyLiveView: @unchecked Sendable {
    struct RegionProgress: Equatable {
        var name: String
        var hosts: [String]
        var finished: Set<String> = []
        var failed: Set<String> = []
        var current: [String: String] = [:]
    }

    private let lock = NSLock()
    private var regions: [RegionProgress]
    private var linesDrawn = 0
    private let write: @Sendable (String) -> Void

    convenience init(plan: Plan, write: @escaping @Sendable (String) -> Void = { Output.text($0) }) {
        self.init(regions: plan.regions.map { ($0.name, $0.hosts.map(\.host)) }, write: write)
    }

    init(regions: [(name: String, hosts: [String])], write: @escaping @Sendable (String) -> Void) {
        self.regions = regions.map { RegionProgress(name: $0.name, hosts: $0.hosts) }
        self.write = write
    }

    /// Whether standard output is a terminal that understands cursor movement.
    static var isAvailable: Bool {
        isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["TERM"].map { $0 != "dumb" } ?? false
    }

    func handle(_ event: ApplyEvent) {
        lock.lock()
        defer { lock.unlock() }
        apply(event)
        redraw()
    }

    /// The lines of the current frame, without cursor movement.
    func frame() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines()
    }

    private func apply(_ event: ApplyEvent) {
        func update(_ region: String, _ change: (inout RegionProgress) -> Void) {
            if let index = regions.firstIndex(where: { $0.name == region }) { change(&regions[index]) }
        }
        switch event {
        case .observed(let region, let host):
            update(region) { $0.current[host] = "observed" }
        case .stepStarted(let region, let host, let step):
            update(region) { $0.current[host] = step }
        case .stepFinished(let region, let host, let step, let error):
            update(region) { $0.current[host] = error == nil ? "\(step) ✓" : "\(step) FAILED" }
        case .hostFinished(let region, let host, let error):
            update(region) {
                $0.finished.insert(host)
                $0.current[host] = nil
                if error != nil { $0.failed.insert(host) }
            }
        case .waveStarted:
            // The approval it waited for, if any, is given.
            for index in regions.indices { regions[index].current["wave"] = nil }
        case .waitingForApproval(let wave):
            for index in regions.indices { regions[index].current["wave"] = "wave \(wave) waits for `meridian rollout promote --wave \(wave)`" }
        case .rollout(.transition(let region, let component, _, let to, _)):
            update(region) { $0.current["rollout " + component] = "\(to)" }
        }
    }

    private func lines() -> [String] {
        let width = regions.map(\.name.count).max() ?? 0
        return regions.map { region in
            var line = region.name.padding(toLength: width, withPad: " ", startingAt: 0)
            line += "  \(region.finished.count)/\(region.hosts.count) hosts"
            if !region.failed.isEmpty { line += ", \(region.failed.count) failed" }
            let busy = region.hosts.compactMap { host in region.current[host].map { "\(host): \($0)" } }
            if !busy.isEmpty { line += "  " + busy.prefix(2).joined(separator: "; ") + (busy.count > 2 ? "; …" : "") }
            return line
        }
    }

    private func redraw() {
        var text = linesDrawn > 0 ? "\u{1B}[\(linesDrawn)A" : ""
        let frame = lines()
        for line in frame { text += "\r\u{1B}[2K" + String(line.prefix(160)) + "\n" }
        linesDrawn = frame.count
        write(text)
    }
}
