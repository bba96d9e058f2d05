import Foundation

/// An HTTP/1.x response read whole from a connection the server closed.
/// Invariant: `body` is the decoded payload (chunked transfer coding removed,
/// cut to Content-Length when one is given).
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var reason: String
    /// Header fields in the order received; names as sent.
    public var headers: [HTTPHeader]
    public var body: Data

    public init(status: Int, reason: String, headers: [HTTPHeader], body: Data) {
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, matched case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// Parses the bytes of a complete response; nil with a reason when malformed.
    /// `bodyless` is true for the answer to a HEAD request: its Content-Length
    /// describes a body that is not sent.
    public static func parse(_ raw: Data, bodyless: Bool = false) -> Result<HTTPResponse, HTTPParseError> {
        let bytes = [UInt8](raw)
        guard let headerEnd = find([13, 10, 13, 10], in: bytes, from: 0) else {
            return .failure(HTTPParseError(reason: "no end of headers in \(bytes.count) bytes"))
        }
        let head = String(decoding: bytes[0..<headerEnd], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]), (100...999).contains(status) else {
            return .failure(HTTPParseError(reason: "bad status line \"\(statusLine)\""))
        }
        var headers: [HTTPHeader] = []
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                return .failure(HTTPParseError(reason: "bad header line \"\(line)\""))
            }
            headers.append(HTTPHeader(name: String(line[..<colon]), value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = HTTPResponse(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers, body: Data())
        let rest = Array(bytes[(headerEnd + 4)...])
        if bodyless {
            return .success(response)
        }
        if response.header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
            switch dechunk(rest) {
            case .success(let body): response.body = Data(body)
            case .failure(let error): return .failure(error)
            }
        } else if let lengthText = response.header("Content-Length"), let length = Int(lengthText) {
            guard rest.count >= length else {
                return .failure(HTTPParseError(reason: "body has \(rest.count) of \(length) bytes"))
            }
            response.body = Data(rest.prefix(length))
        } else {
            response.body = Data(rest)
        }
        return .success(response)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var index = start
        while index <= haystack.count - needle.count {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }

    private static func dechunk(_ bytes: [UInt8]) -> Result<[UInt8], HTTPParseError> {
        var body: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = find([13, 10], in: bytes, from: index) else {
                return .failure(HTTPParseError(reason: "truncated chunk size"))
            }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                return .failure(HTTPParseError(reason: "bad chunk size \"\(sizeText)\""))
            }
            if size == 0 { return .success(body) }
            let start = lineEnd + 2
            guard bytes.count >= start + size else { return .failure(HTTPParseError(reason: "truncated chunk")) }
            body.append(contentsOf: bytes[start..<(start + size)])
            index = start + size + 2
        }
    }
}

/// One HTTP header field.
public struct HTTPHeader: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// Why bytes were not a valid HTTP response.
public struct HTTPParseError: Error, Sendable, Equatable {
    public var reason: String
}
