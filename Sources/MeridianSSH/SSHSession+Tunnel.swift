import CLibSSH2
import Foundation

extension SSHSession {
    /// Sends one HTTP request to `host`:`port` as the host reaches it
    /// (127.0.0.1 unless given, e.g. a service address) through a
    /// direct-tcpip channel of this session, so the host needs no HTTP client,
    /// and returns the whole response (the request asks the server to close).
    public func httpRequest(
        method: String = "GET",
        host: String = "127.0.0.1",
        port: Int,
        path: String,
        headers: [HTTPHeader] = [],
        body: Data? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> HTTPResponse {
        let pieces = [method, path, host] + headers.flatMap { [$0.name, $0.value] }
        if let bad = pieces.first(where: { $0.contains("\r") || $0.contains("\n") }) {
            throw SSHError(.tunnelFailed(port: port, reason: "refusing a line break in \"\(bad)\""), at: place)
        }
        guard path.hasPrefix("/"), !path.contains(" ") else {
            throw SSHError(.tunnelFailed(port: port, reason: "the path \"\(path)\" must start with / and hold no space"), at: place)
        }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(host.contains(":") ? "[\(host)]" : host):\(port)\r\nConnection: close\r\nUser-Agent: meridian\r\n"
        for header in headers { request += "\(header.name): \(header.value)\r\n" }
        if let body { request += "Content-Length: \(body.count)\r\n" }
        request += "\r\n"
        var payload = Data(request.utf8)
        if let body { payload.append(body) }
        let bytes = payload
        let raw = try await onQueue { try self.exchangeOnQueue(bytes, host: host, port: port, timeout: timeout) }
        switch HTTPResponse.parse(raw) {
        case .success(let response): return response
        case .failure(let error): throw SSHError(.tunnelFailed(port: port, reason: "bad response: \(error.reason)"), at: place)
        }
    }

    /// Writes `payload` to `host`:`port` as the host reaches it and reads
    /// until the far side closes.
    private func exchangeOnQueue(_ payload: Data, host: String, port: Int, timeout: Duration) throws -> Data {
        let session = try requireUsable()
        let deadline = ContinuousClock.now + timeout
        let timedOut = SSHError(.tunnelFailed(port: port, reason: "no complete answer within \(Self.seconds(timeout)) s"), at: place)
        let channel: OpaquePointer
        do {
            switch try retryPointer(until: deadline, {
                libssh2_channel_direct_tcpip_ex(session, host, Int32(port), "127.0.0.1", 0)
            }) {
            case .success(let opened): channel = opened
            case .failure(let failed):
                if LibSSH2.isSocketFailure(failed.code) { throw failure("a request to port \(port)", code: failed.code, message: failed.message) }
                throw SSHError(.tunnelFailed(port: port, reason: "the host refused the forward (nothing listening?): \(LibSSH2.codeName(failed.code)) \(failed.message)"), at: place)
            }
        } catch is TimedOut {
            throw timedOut
        }
        do {
            try writeAll(payload, to: channel, deadline: deadline, during: "a request to port \(port)")
            var received = Data()
            try readToEnd(channel, deadline: deadline, during: "a request to port \(port)") { chunk in
                if case .stdout(let data) = chunk { received.append(data) }
            }
            _ = try retry(until: deadline) { libssh2_channel_close(channel) }
            freeChannel(channel)
            return received
        } catch is TimedOut {
            abandon(channel)
            throw timedOut
        } catch {
            abandon(channel)
            throw error
        }
    }
}
