import Foundation

/// A tiny HTTP/1.1 server on a loopback address for tests: probes through SSH, health
/// checks, webhooks. It answers every request with one response (whose status
/// a test may change) and records each request, raw head and parsed.
/// Invariant: it listens on loopback only and its thread ends when `stop()`
/// runs or the server is released.
public final class LoopbackHTTPServer: @unchecked Sendable {
    /// One request as received.
    public struct Request: Sendable, Equatable {
        /// The request line and headers as sent.
        public var head: String
        public var method: String
        public var path: String
        /// Header names lower-cased.
        public var headers: [String: String]
        public var body: Data
    }

    /// The loopback address it listens on.
    public let address: String
    public let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var seen: [Request] = []
    private var stopped = false
    private var status: Int
    private var reason: String
    private let headers: [String: String]
    private let body: String

    /// Starts listening on an ephemeral port of `address` (a 127.x.y.z address).
    public init(address host: String = "127.0.0.1", status: Int = 200, reason: String = "OK", headers: [String: String] = [:], body: String = "ok") throws {
        guard host.hasPrefix("127."), inet_addr(host) != INADDR_NONE else { throw TestHostError("\(host) is not a loopback IPv4 address") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestHostError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr(host)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestHostError("bind/listen on \(host): \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        self.address = host
        port = Int(UInt16(bigEndian: address.sin_port))
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        let thread = Thread { [weak self] in self?.serve() }
        thread.start()
    }

    deinit { stop() }

    /// The requests received so far, oldest first.
    public var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return seen
    }

    /// Answers later requests with another status (e.g. 500 to test a failing webhook).
    public func setStatus(_ status: Int, reason: String = "Status") {
        lock.lock()
        self.status = status
        self.reason = reason
        lock.unlock()
    }

    public func stop() {
        lock.lock()
        let first = !stopped
        stopped = true
        lock.unlock()
        if first {
            shutdown(listener, Int32(SHUT_RDWR))
            close(listener)
        }
    }

    private func serve() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var received = Data()
            var buffer = [UInt8](repeating: 0, count: 4096)
            var headEnd: Range<Data.Index>?
            while headEnd == nil, received.count < 1 << 20 {
                let count = read(client, &buffer, buffer.count)
                if count <= 0 { break }
                received.append(contentsOf: buffer[0..<count])
                headEnd = received.range(of: Data("\r\n\r\n".utf8))
            }
            let head = String(decoding: headEnd.map { received[..<$0.lowerBound] } ?? received[...], as: UTF8.self)
            var lines = head.components(separatedBy: "\r\n")
            let requestLine = lines.isEmpty ? [] : lines.removeFirst().split(separator: " ").map(String.init)
            var parsed: [String: String] = [:]
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            var requestBody = headEnd.map { Data(received[$0.upperBound...]) } ?? Data()
            let length = min(Int(parsed["content-length"] ?? "0") ?? 0, 1 << 20)
            while requestBody.count < length {
                let count = read(client, &buffer, buffer.count)
                if count <= 0 { break }
                requestBody.append(contentsOf: buffer[0..<count])
            }
            lock.lock()
            seen.append(Request(head: head, method: requestLine.first ?? "", path: requestLine.dropFirst().first ?? "", headers: parsed, body: requestBody))
            var response = "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
            lock.unlock()
            for (name, value) in headers.sorted(by: { $0.key < $1.key }) { response += "\(name): \(value)\r\n" }
            let bytes = Array((response + "\r\n" + body).utf8)
            _ = bytes.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            close(client)
        }
    }
}
