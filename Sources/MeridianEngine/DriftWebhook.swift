import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MeridianPlanning

/// The JSON a drift webhook receives when the set of findings changes.
public struct DriftNotification: Codable, Sendable, Equatable {
    public var formatVersion = 1
    public var fleet: String
    public var startedAt: Date
    public var exitCode: Int32
    public var findings: Int
    public var appeared: [DriftFinding]
    public var cleared: [DriftFinding]
    public var unreachableHosts: [String]

    public init(fleet: String, report: DriftReport, appeared: [DriftFinding], cleared: [DriftFinding]) {
        self.fleet = fleet
        self.startedAt = report.startedAt
        self.exitCode = report.exitCode
        self.findings = report.findings.count
        self.appeared = appeared.sorted()
        self.cleared = cleared.sorted()
        self.unreachableHosts = report.unexaminedHosts.map { "\($0.region)/\($0.host)" }.sorted()
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", fleet, startedAt = "started_at", exitCode = "exit_code", findings, appeared, cleared
        case unreachableHosts = "unreachable_hosts"
    }
}

/// POSTs drift notifications to a webhook URL.
public struct DriftWebhook: Sendable {
    public var url: URL
    public var timeout: TimeInterval

    public init(url: URL, timeout: TimeInterval = 10) {
        self.url = url
        self.timeout = timeout
    }

    /// Sends one notification; a non-2xx answer or a network failure is an error naming the URL.
    public func send(_ notification: DriftNotification) async throws {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("meridian", forHTTPHeaderField: "User-Agent")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        request.httpBody = try encoder.encode(notification)
        let response: URLResponse
        do {
            (_, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw DriftWebhookError(url: url, reason: error.localizedDescription)
        }
        guard let http = response as? HTTPURLResponse, (200..<300).contains(http.statusCode) else {
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            throw DriftWebhookError(url: url, reason: "it answered HTTP \(status)")
        }
    }
}

/// A drift webhook could not be delivered.
public struct DriftWebhookError: Error, CustomStringConvertible, Sendable {
    public var url: URL
    public var reason: String
    public var description: String { "could not notify \(url.absoluteString): \(reason); the drift report was still written" }
}
