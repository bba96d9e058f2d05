import Foundation

/// A blocking HTTP/1.1 client for load through test gateways: it keeps one
/// connection alive across requests, as browsers and SDKs do, and like them
/// retries a request once on a fresh connection when a reused connection
/// closed before any byte of the answer arrived (RFC 9112 §9.3.1: the server
/// may close an idle connection at any time). Everything else is an error.
/// Invariant: it connects only to 127.0.0.0/8, from a loopback source address.
public final class KeepAliveHTTPClient {
    public struct Response: Sendable, Equatable {
        public var status: Int
        /// Header names lower-cased.
        public var headers: [String: String]
        public var body: Data
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public let address: String
    public let port: Int
    /// The loopback address requests come from; nil lets the kernel choose.
    public let sourceAddress: String?
    /// Requests retried because a reused connection had been closed.
    public private(set) var staleRetries = 0
    /// Connections opened.
    public private(set) var connections = 0
    private var fd: Int32 = -1
    private var pending = Data()
    private let timeoutSeconds: Int

    public init(address: String, port: Int, sourceAddress: String? = nil, timeoutSeconds: Int = 10) {
        precondition(address.hasPrefix("127.") && (sourceAddress?.hasPrefix("127.") ?? true), "test traffic stays on loopback")
        self.address = address
        self.port = port
        self.sourceAddress = sourceAddress
        self.timeoutSeconds = timeoutSeconds
    }

    deinit { disconnect() }

    public func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        pending = Data()
    }

    /// GET `path`; throws `Failure` unless a whole response arrived.
    public func get(_ path: String) throws -> Response { try send("GET", path) }

    /// One request with extra header lines (sent in the order given, so a
    /// test can repeat a header) and a body; throws `Failure` unless a whole
    /// response arrived. A request whose reused connection was closed before
    /// any answer byte is sent once more on a new connection, as HTTP/1.1
    /// clients do, only when `method` is GET.
    public func send(_ method: String, _ path: String, headers: [(String, String)] = [], body: Data = Data()) throws -> Response {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address):\(port)\r\nUser-Agent: meridian-test\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if method != "GET" || !body.isEmpty { head += "Content-Length: \(body.count)\r\n" }
        let request = Data((head + "\r\n").utf8) + body
        let reused = fd >= 0
        if !reused { try connect() }
        switch exchange(request) {
        case .success(let response): return response
        case .failure(.nothingReceived) where reused && method == "GET":
            staleRetries += 1
            disconnect()
            try connect()
            switch exchange(request) {
            case .success(let response): return response
            case .failure(let error): disconnect(); throw Failure(description: "after a retry on a new connection: \(error)")
            }
        case .failure(let error):
            disconnect()
            throw Failure(description: "\(error)")
        }
    }

    enum ExchangeError: Error, CustomStringConvertible {
        case nothingReceived(String)
        case broken(String)
        var description: String {
            switch self {
            case .nothingReceived(let reason): return "no answer: \(reason)"
            case .broken(let reason): return "broken answer: \(reason)"
            }
        }
    }

    private func connect() throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        _ = setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(socketFD, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        _ = setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if let sourceAddress {
            var source = Self.socketAddress(sourceAddress, port: 0)
            let bound = withUnsafePointer(to: &source) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else {
                close(socketFD)
                throw Failure(description: "bind to \(sourceAddress): \(String(cString: strerror(errno)))")
            }
        }
        var target = Self.socketAddress(address, port: port)
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(socketFD)
            throw Failure(description: "connect to \(address):\(port): \(reason)")
        }
        fd = socketFD
        connections += 1
    }

    static func socketAddress(_ address: String, port: Int) -> sockaddr_in {
        var result = sockaddr_in()
        result.sin_family = sa_family_t(AF_INET)
        result.sin_port = in_port_t(UInt16(port).bigEndian)
        _ = inet_pton(AF_INET, address, &result.sin_addr)
        return result
    }

    private func exchange(_ request: Data) -> Result<Response, ExchangeError> {
        let sent = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, request.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { return .failure(.nothingReceived("send: \(String(cString: strerror(errno)))")) }
        var received = pending
        pending = Data()
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        func readMore() -> Int {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { received.append(contentsOf: buffer[0..<count]) }
            return count
        }
        let separator = Data("\r\n\r\n".utf8)
        var headEnd: Range<Data.Index>?
        while headEnd == nil {
            headEnd = received.range(of: separator)
            if headEnd != nil { break }
            let count = readMore()
            if count <= 0 {
                let reason = count == 0 ? "the connection was closed" : String(cString: strerror(errno))
                return .failure(received.isEmpty ? .nothingReceived(reason) : .broken(reason))
            }
        }
        guard let end = headEnd else { return .failure(.broken("no header end")) }
        let head = String(decoding: received[received.startIndex..<end.lowerBound], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let statusWords = lines.first?.split(separator: " ") ?? []
        guard statusWords.count >= 2, let status = Int(statusWords[1]) else { return .failure(.broken("status line \(lines.first ?? "")")) }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let length = headers["content-length"].flatMap({ Int($0) }) else { return .failure(.broken("no Content-Length")) }
        let bodyStart = end.upperBound
        while received.count - (bodyStart - received.startIndex) < length {
            let count = readMore()
            if count <= 0 { return .failure(.broken("body cut short")) }
        }
        let body = received[bodyStart..<(bodyStart + length)]
        pending = Data(received[(bodyStart + length)...])
        if headers["connection"]?.lowercased() == "close" { disconnect() }
        return .success(Response(status: status, headers: headers, body: Data(body)))
    }
}
