import Foundation

/// A tiny HTTP/1.1 server on 127.0.0.1 for tests of probes through SSH: it
/// answers every request with one fixed response and records the request
/// heads it saw. Invariant: it listens on loopback only and its thread ends
/// when `stop()` runs or the server is released.
public final class LoopbackHTTPServer: @unchecked Sendable {
    public let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var seen: [String] = []
    private var stopped = false

    /// Starts listening on an ephemeral port of 127.0.0.1.
    public init(status: Int = 200, reason: String = "OK", headers: [String: String] = [:], body: String) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestHostError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestHostError("bind/listen on 127.0.0.1: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))

        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        let response = Array((head + "\r\n" + body).utf8)
        let thread = Thread { [weak self] in self?.serve(response) }
        thread.start()
    }

    deinit { stop() }

    /// The request heads received so far (request line and headers).
    public var requests: [String] {
        lock.lock()
        defer { lock.unlock() }
        return seen
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

    private func serve(_ response: [UInt8]) {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while received.count < 1 << 20 {
                let count = read(client, &buffer, buffer.count)
                if count <= 0 { break }
                received.append(contentsOf: buffer[0..<count])
                if let text = String(bytes: received, encoding: .utf8), text.contains("\r\n\r\n") { break }
            }
            let text = String(decoding: received, as: UTF8.self)
            lock.lock()
            seen.append(text.components(separatedBy: "\r\n\r\n").first ?? text)
            lock.unlock()
            _ = response.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            close(client)
        }
    }
}
