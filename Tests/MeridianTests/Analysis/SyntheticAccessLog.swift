import Foundation
import MeridianTestHosts
@testable import MeridianModel
@testable import MeridianPlanning

/// Draws for synthetic logs, from the test target's seeded SplitMix64.
extension SplitMix64 {
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Standard normal, by Box-Muller.
    mutating func normal() -> Double {
        let u = max(unit(), 1e-300), v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

/// How one slot behaves in a synthetic log.
struct SlotBehaviour {
    /// Share of requests answered 5xx.
    var errorRate = 0.002
    /// Share of requests answered 4xx (the client's fault).
    var clientErrorRate = 0.02
    /// Added to every latency of the slot.
    var addedMilliseconds = 0.0
    /// Share of this slot's failures nginx passes on to the other slot, which then answers 200.
    var passedOnShare = 0.0
}

/// A period in which a slot fails far more often, or every slot is slower.
struct Burst {
    var offsetMilliseconds: Int64
    var lengthMilliseconds: Int64
    var errorRate: Double
    var slots: Set<Slot>
}

/// Writes `meridian-v1` access-log text for one component of one region:
/// requests spread over a window (or squeezed into a burst), split between
/// the slots by the canary weight, latencies log-normal around a median.
struct SyntheticAccessLog {
    var seed: UInt64
    var startMilliseconds: Int64 = 1_733_040_000_000
    var durationMilliseconds: Int64 = 120_000
    var requests = 2_000
    var canaryWeight = 0.1
    var canarySlot = Slot.green
    var canary = SlotBehaviour()
    var stable = SlotBehaviour()
    var medianMilliseconds = 120.0
    var spread = 0.35
    /// All requests arrive within this part of the window instead of across all of it.
    var arrivals: (offset: Int64, length: Int64)?
    var errorBursts: [Burst] = []
    /// Lines of another component mixed in.
    var otherComponentLines = 50
    var garbageLines = 0

    static let component = Component(name: "inference", artifact: .path("a/{version}"), start: ["serve"],
                                     ports: SlotPorts(blue: 8101, green: 8102), strategy: .canary)
    static let address = "127.0.1.1"

    var window: AnalysisWindow {
        AnalysisWindow(startMilliseconds: startMilliseconds, endMilliseconds: startMilliseconds + durationMilliseconds)
    }

    func text() -> String {
        var random = SplitMix64(seed: seed)
        var lines: [String] = []
        let ports = Self.component.ports
        for _ in 0..<requests {
            let (offset, length) = arrivals ?? (0, durationMilliseconds)
            let end = startMilliseconds + offset + Int64(random.unit() * Double(length))
            let slot = random.unit() < canaryWeight ? canarySlot : canarySlot.other
            let behaviour = slot == canarySlot ? canary : stable
            var errorRate = behaviour.errorRate
            for burst in errorBursts where burst.slots.contains(slot) {
                let at = end - startMilliseconds
                if at >= burst.offsetMilliseconds, at < burst.offsetMilliseconds + burst.lengthMilliseconds { errorRate = burst.errorRate }
            }
            let latency = max(1, Int(medianMilliseconds * exp(spread * random.normal()) + behaviour.addedMilliseconds))
            let draw = random.unit()
            var status = draw < errorRate ? 503 : (draw < errorRate + behaviour.clientErrorRate ? 404 : 200)
            var addresses = "\(Self.address):\(ports[slot])"
            var times = Self.seconds(latency)
            var answeringSlot = slot
            var total = latency
            if status >= 500, random.unit() < behaviour.passedOnShare {
                let retry = max(1, Int(medianMilliseconds * exp(spread * random.normal())))
                answeringSlot = slot.other
                addresses += ", \(Self.address):\(ports[slot.other])"
                times += ", " + Self.seconds(retry)
                total += retry
                status = 200
            }
            lines.append([Self.seconds(Int(end - startMilliseconds), base: startMilliseconds), "inference", addresses, answeringSlot.rawValue,
                          String(status), Self.seconds(total + 2), times].joined(separator: "\t"))
        }
        for i in 0..<otherComponentLines {
            let end = startMilliseconds + Int64(random.unit() * Double(durationMilliseconds))
            lines.append([Self.seconds(Int(end - startMilliseconds), base: startMilliseconds), "knowledge-base", "\(Self.address):820\(1 + i % 2)",
                          i % 2 == 0 ? "blue" : "green", "500", "0.050", "0.049"].joined(separator: "\t"))
        }
        for i in 0..<garbageLines { lines.insert("garbage line \(i)", at: Int(random.next() % UInt64(lines.count + 1))) }
        return lines.joined(separator: "\n") + "\n"
    }

    func log() -> AccessLog { AccessLog(text: text()) }

    func analyze(_ settings: CanaryAnalysis) -> CanaryVerdict {
        CanaryAnalyzer.analyze(log: log(), component: Self.component.name, ports: Self.component.ports, canarySlot: canarySlot,
                               window: window, settings: settings)
    }

    /// `seconds.milliseconds` as nginx writes it, optionally offset from a base in milliseconds.
    static func seconds(_ milliseconds: Int, base: Int64 = 0) -> String {
        let total = base + Int64(milliseconds)
        let fraction = String(total % 1000)
        return "\(total / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}
