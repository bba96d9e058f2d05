import CLibSSH2
import Foundation
import MeridianBasics

extension SSHSession {
    /// Sends one HTTP request to `address`:`port` as the host reaches it (its
    /// service address, usually its own), through a direct-tcpip channel of
    /// this session, so the host needs no HTTP client, and returns the whole
    /// response (the request asks the server to close).
    public func httpRequest(
        method: String = "GET",
        address: String,
        port: Int,
        path: String,
        headers: [HTTPHeader] = [],
        body: Data? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> HTTPResponse {
        let pieces = [method, path] + headers.flatMap { [$0.name, $0.value] }
        if let bad = pieces.first(where: { $0.contains("\r") || $0.contains("\n") }) {
            throw SSHError(.tunnelFailed(address: address, port: port, reason: "refusing a line break in \"\(bad)\""), at: place)
        }
        guard path.hasPrefix("/"), !path.contains(" ") else {
            throw SSHError(.tunnelFailed(address: address, port: port, reason: "the path \"\(path)\" must start with / and hold no space"), at: place)
        }
        guard !address.isEmpty, address.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".:-%".contains($0)) }) else {
            throw SSHError(.tunnelFailed(address: address, port: port, reason: "\"\(address)\" is not an IP address or host name"), at: place)
        }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(HostPort(address, port))\r\nConnection: close\r\nUser-Agent: meridian\r\n"
        for header in headers { request += "\(header.name): \(header.value)\r\n" }
        if let body { request += "Content-Length: \(body.count)\r\n" }
        request += "\r\n"
        var payload = Data(request.utf8)
        if let body { payload.append(body) }
        let bytes = payload
        let raw = try await onQueue { try self.exchangeOnQueue(bytes, address: address, port: port, timeout: timeout) }
        switch HTTPResponse.parse(raw, bodyless: method == "HEAD") {
        case .success(let response): return response
        case .failure(let error): throw SSHError(.tunnelFailed(address: address, port: port, reason: "bad response: \(error.reason)"), at: place)
        }
    }

    /// Writes `payload` to `address`:`port` as the host reaches it and reads
    /// until the far side closes.
    private func exchangeOnQueue(_ payload: Data, address: String, port: Int, timeout: Duration) throws -> Data {
        let session = try requireUsable()
        let deadline = ContinuousClock.now + timeout
        let timedOut = SSHError(.tunnelFailed(address: address, port: port, reason: "no complete answer within \(Self.seconds(timeout)) s"), at: place)
        let channel: OpaquePointer
        do {
            switch try retryPointer(until: deadline, {
                libssh2_channel_direct_tcpip_ex(session, address, Int32(port), "127.0.0.1", 0)
            }) {
            case .success(let opened): channel = opened
            case .failure(let failed):
                if LibSSH2.isSocketFailure(failed.code) { throw failure("a request to \(HostPort(address, port))", code: failed.code, message: failed.message) }
                throw SSHError(.tunnelFailed(address: address, port: port, reason: "the host refused the forward (nothing listening?): \(LibSSH2.codeName(failed.code)) \(failed.message)"), at: place)
            }
        } catch is TimedOut {
            throw timedOut
        }
        do {
            try writeAll(payload, to: channel, deadline: deadline, during: "a request to \(HostPort(address, port))")
            var received = Data()
            try readToEnd(channel, deadline: deadline, during: "a request to \(HostPort(address, port))") { chunk in
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
