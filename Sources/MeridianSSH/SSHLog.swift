import Foundation
import Logging

/// The one logger of SSH traffic: connections with their handshake time,
/// remote commands and transfers with their region, host, duration and
/// outcome. Every entry is at `debug` (a command's full text at `trace`), so
/// a run prints them only when the operator asks (`--verbose`). Invariant:
/// no entry carries the bytes sent to a host (stdin, file contents) or
/// received from it (stdout, stderr) — only their sizes — so a secret
/// rendered into a file never reaches a log line.
enum SSHLog {
    /// Created on first use, after the command line has chosen the log handler.
    static let logger = Logger(label: "meridian.ssh")

    /// How much of a command line a `debug` entry shows; `trace` shows all of it.
    static let commandPreview = 160

    static func place(_ endpoint: SSHEndpoint) -> Logger.Metadata {
        [
            "region": .string(endpoint.region),
            "host": .string(endpoint.hostName),
            "address": .string("\(endpoint.address):\(endpoint.port)"),
        ]
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Logger.MetadataValue {
        let (seconds, attoseconds) = (ContinuousClock.now - start).components
        return .string(String(format: "%.1f", Double(seconds) * 1000 + Double(attoseconds) / 1e15))
    }

    /// The start of a command line, on one line.
    static func preview(_ line: String) -> String {
        let flat = line.replacingOccurrences(of: "\n", with: "⏎")
        return flat.count <= commandPreview ? flat : String(flat.prefix(commandPreview)) + "…"
    }
}
