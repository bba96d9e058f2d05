import MeridianBasics
import Foundation
import MeridianPlanning
import MeridianSSH

/// A gateway step that did not end with the new configuration serving.
/// Every case names the host; the live configuration is what the sentence says.
public enum GatewayActivationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `nginx -t` refused the new configuration; the live one was not touched.
    case checkFailed(host: String, message: String)
    /// nginx was not running and did not start.
    case startFailed(host: String, message: String)
    /// Writing the configuration failed, or nginx is missing.
    case failed(host: String, message: String)
    /// After start or reload the gateway kept answering with another
    /// configuration (nginx keeps the old one when a reload fails).
    case notConfirmed(host: String, expected: String, serving: String?, attempts: Int, errorLog: String)

    public var description: String {
        switch self {
        case .checkFailed(let host, let message):
            return "host \(host): nginx -t refused the new gateway configuration, the live one still serves: \(message)"
        case .startFailed(let host, let message):
            return "host \(host): nginx did not start with the new gateway configuration: \(message)"
        case .failed(let host, let message):
            return "host \(host): the gateway configuration was not applied: \(message)"
        case .notConfirmed(let host, let expected, let serving, let attempts, let errorLog):
            let seen = serving.map { "configuration \($0.prefix(12))" } ?? "no answer"
            let log = errorLog.isEmpty ? "nothing new in router/logs/error.log" : "router/logs/error.log says: \(errorLog)"
            return "host \(host): after \(attempts) looks the gateway still serves \(seen), not the new \(expected.prefix(12)); \(log)"
        }
    }
}

/// How a configuration came to serve.
public struct GatewayActivationReport: Sendable, Equatable {
    public var outcome: GatewayActivationOutcome
    /// The identity location was asked this many times before it answered with the new identity.
    public var confirmAttempts: Int
}

/// Carries out the gateway step on one gateway host: the activation script
/// (write, `nginx -t`, swap, start or reload), then confirmation through the
/// SSH connection that the new configuration is the one serving.
public enum GatewayActivation {
    /// - Parameters:
    ///   - host: names the host in errors.
    ///   - attempts, interval: how often and how far apart the identity is asked for (bounded).
    public static func activate(
        _ config: GatewayConfig, root: String, on session: SSHSession, host: String,
        attempts: Int = 200, interval: Duration = .milliseconds(25)
    ) async throws -> GatewayActivationReport {
        let scripts = GatewayScripts(root: root)
        let result = try await session.run(RemoteCommand(["sh", "-c", scripts.activate(config)]), stdin: Data(config.text.utf8))
        let outcome: GatewayActivationOutcome
        switch GatewayScripts.parseActivation(result.stdout, host: host) {
        case .success(let parsed): outcome = parsed
        case .failure(let error): throw GatewayActivationError.failed(host: host, message: error.description)
        }
        let logOffset: Int
        switch outcome {
        case .checkFailed(let message): throw GatewayActivationError.checkFailed(host: host, message: message)
        case .startFailed(let message): throw GatewayActivationError.startFailed(host: host, message: message)
        case .failed(let message): throw GatewayActivationError.failed(host: host, message: message)
        case .started: logOffset = 0
        case .reloaded(_, let offset, _, _): logOffset = offset
        }
        let expected = config.identity
        var serving: String?
        for attempt in 1...max(1, attempts) {
            serving = try? await servingIdentity(config, on: session)
            if serving == expected, try await oldWorkersStopped(outcome, on: session) {
                return GatewayActivationReport(outcome: outcome, confirmAttempts: attempt)
            }
            if attempt < attempts { try await Task.sleep(for: interval) }
        }
        let log = (try? await session.exec(RemoteCommand(["sh", "-c", scripts.errorLogSince(logOffset)])))?.stdoutText ?? ""
        throw GatewayActivationError.notConfirmed(
            host: host, expected: expected, serving: serving, attempts: max(1, attempts),
            errorLog: log.split(separator: "\n").joined(separator: " | "))
    }

    /// After a reload, whether the old workers stopped accepting connections
    /// (the new identity answering proves only that a new worker runs);
    /// after a fresh start there are no old workers.
    static func oldWorkersStopped(_ outcome: GatewayActivationOutcome, on session: SSHSession) async throws -> Bool {
        // The activation script waited for the old workers itself unless it ran out of time.
        guard case .reloaded(let pid, _, let settled, _) = outcome, !settled else { return true }
        let output = try await session.exec(RemoteCommand(["sh", "-c", GatewayScripts.acceptingWorkers(master: pid)])).stdoutText
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("workers ") }),
              let count = Int(line.dropFirst("workers ".count)) else { return false }
        return count <= GatewayConfig.workerProcesses
    }

    /// The identity the gateway serves now, read through the SSH connection
    /// from its identity location; nil when it answers with something else.
    public static func servingIdentity(_ config: GatewayConfig, on session: SSHSession) async throws -> String? {
        let response = try await session.httpRequest(address: config.listenAddress, port: config.listenPort, path: GatewayConfig.identityLocation, timeout: .seconds(5))
        guard response.status == 200 else { return nil }
        return String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
