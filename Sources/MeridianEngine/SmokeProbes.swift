import Foundation
import MeridianBasics
import MeridianModel
import MeridianPlanning
import MeridianSSH

/// One smoke probe's outcome against one slot. Invariant: `failure` is nil
/// exactly when the probe passed.
public struct SmokeProbeResult: Sendable, Equatable {
    public var probe: String
    /// `METHOD address:port path`, as sent.
    public var request: String
    public var failure: String?

    public var passed: Bool { failure == nil }
}

/// Runs a component's smoke probes against one slot directly (not through
/// the gateway), through the host's SSH connection to the slot's service
/// address and port, so the host needs no HTTP client.
public enum SmokeProbeRunner {
    /// Every probe in order, each asked once; all are run, so every failure is
    /// reported together. A refused connection or a timeout is a failure, not a throw.
    public static func run(_ probes: [SmokeProbe], address: String, port: Int, on session: SSHSession, timeout: Duration = .seconds(10)) async -> [SmokeProbeResult] {
        var results: [SmokeProbeResult] = []
        for probe in probes {
            let request = "\(probe.method) \(HostPort(address, port))\(probe.path)"
            let failure: String?
            do {
                let response = try await session.httpRequest(method: probe.method, address: address, port: port, path: probe.path, timeout: timeout)
                failure = probe.failure(status: response.status, body: response.bodyText)
            } catch let error as SSHError {
                switch error.kind {
                case .tunnelFailed(_, _, let reason): failure = reason
                default: failure = error.description
                }
            } catch {
                failure = "\(error)"
            }
            results.append(SmokeProbeResult(probe: probe.name, request: request, failure: failure))
        }
        return results
    }
}
