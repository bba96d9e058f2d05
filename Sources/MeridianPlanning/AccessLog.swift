import MeridianModel

/// One request as the gateway logged it in the `meridian-v1` format: seven
/// TAB-separated fields (end time, component, upstream addresses, slot,
/// status, request time, upstream response times); anything after the
/// seventh field is ignored. Times are whole milliseconds, as nginx writes them.
public struct AccessLogLine: Sendable, Equatable, Codable {
    /// When the request ended, in milliseconds since the Unix epoch (`$msec`).
    public var endMilliseconds: Int64
    /// The component whose location served the request; nil for `-`.
    public var component: String?
    /// Every upstream contacted, in order; the last one answered. Empty when
    /// the gateway answered by itself (`$upstream_addr` is `-`).
    public var attempts: [UpstreamAttempt]
    /// The slot of the answering upstream as the gateway's map derived it; nil for `-`.
    public var slot: Slot?
    public var status: Int
    /// `$request_time`: what the client waited, retries and its own network included.
    public var requestMilliseconds: Int

    public init(endMilliseconds: Int64, component: String?, attempts: [UpstreamAttempt], slot: Slot?, status: Int, requestMilliseconds: Int) {
        self.endMilliseconds = endMilliseconds
        self.component = component
        self.attempts = attempts
        self.slot = slot
        self.status = status
        self.requestMilliseconds = requestMilliseconds
    }

    /// The upstream that produced the response the client got, if any.
    public var answered: UpstreamAttempt? { attempts.last }

    /// Parses one line; a line that does not fit the format is a problem, never a guess.
    public static func parse(_ text: Substring) -> Result<AccessLogLine, AccessLogProblem> {
        var line = text
        if line.last == "\r" { line = line.dropLast() }
        let fields = line.utf8.split(separator: UInt8(ascii: "\t"), maxSplits: 7, omittingEmptySubsequences: false).map { Substring($0) }
        guard fields.count >= 7 else { return .failure(.tooFewFields(fields.count)) }
        guard let end = AccessLogNumber.milliseconds(fields[0]) else { return .failure(.badField(1, "end time", String(fields[0]))) }
        let component: String? = fields[1] == "-" ? nil : String(fields[1])
        if fields[1].isEmpty || fields[1].contains(" ") { return .failure(.badField(2, "component", String(fields[1]))) }
        let slot: Slot?
        switch fields[3] {
        case "-": slot = nil
        case "blue": slot = .blue
        case "green": slot = .green
        default: return .failure(.badField(4, "slot", String(fields[3])))
        }
        guard fields[4].count == 3, let status = Int(fields[4]), (100...599).contains(status) else {
            return .failure(.badField(5, "status", String(fields[4])))
        }
        guard let requestTime = AccessLogNumber.milliseconds(fields[5]), requestTime <= Int64(Int32.max) else {
            return .failure(.badField(6, "request time", String(fields[5])))
        }
        let attempts: [UpstreamAttempt]
        switch UpstreamAttempt.zip(addresses: fields[2], times: fields[6]) {
        case .success(let list): attempts = list
        case .failure(let problem): return .failure(problem)
        }
        return .success(AccessLogLine(endMilliseconds: end, component: component, attempts: attempts, slot: slot,
                                      status: status, requestMilliseconds: Int(requestTime)))
    }
}

/// One contact with an upstream server during a request.
public struct UpstreamAttempt: Sendable, Equatable, Codable {
    public var address: String
    /// `$upstream_response_time` of this contact; nil when nginx wrote `-`.
    public var responseMilliseconds: Int?
    public var role: Role

    /// What became of the contact. nginx separates servers tried within one
    /// upstream group with `, ` (it moved on after an error, a timeout or a
    /// status `proxy_next_upstream` names) and groups reached through an
    /// internal redirect with ` : `.
    public enum Role: String, Sendable, Equatable, Codable {
        /// Failed, and nginx tried the next server of the same group.
        case passedOn = "passed-on"
        /// The last server of a group that handed the request to another group;
        /// how it answered is not in the log.
        case handedOver = "handed-over"
        /// Produced the response the client got.
        case answered
    }

    public init(address: String, responseMilliseconds: Int?, role: Role) {
        self.address = address
        self.responseMilliseconds = responseMilliseconds
        self.role = role
    }

    /// The port of `host:port` or `[v6]:port`; nil for a socket path or an upstream group name.
    public var port: Int? {
        guard let colon = address.lastIndex(of: ":") else { return nil }
        let digits = address[address.index(after: colon)...]
        guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(digits),
              (1...65535).contains(port) else { return nil }
        return port
    }

    /// Pairs `$upstream_addr` with `$upstream_response_time`: both lists must
    /// have the same shape, or the line is refused.
    static func zip(addresses: Substring, times: Substring) -> Result<[UpstreamAttempt], AccessLogProblem> {
        if addresses == "-" {
            return times == "-" ? .success([]) : .failure(.mismatchedUpstreams(String(addresses), String(times)))
        }
        let addressGroups = UpstreamList.groups(addresses)
        let timeGroups = UpstreamList.groups(times)
        guard addressGroups.map(\.count) == timeGroups.map(\.count) else {
            return .failure(.mismatchedUpstreams(String(addresses), String(times)))
        }
        var attempts: [UpstreamAttempt] = []
        for (g, (addressGroup, timeGroup)) in Swift.zip(addressGroups, timeGroups).enumerated() {
            for (i, (address, time)) in Swift.zip(addressGroup, timeGroup).enumerated() {
                guard !address.isEmpty, !address.contains(" "), !address.contains(",") else { return .failure(.badField(3, "upstream address", String(addresses))) }
                var milliseconds: Int?
                if time != "-" {
                    guard let value = AccessLogNumber.milliseconds(time), value <= Int64(Int32.max) else {
                        return .failure(.badField(7, "upstream response time", String(times)))
                    }
                    milliseconds = Int(value)
                }
                let role: Role = i < addressGroup.count - 1 ? .passedOn : (g < addressGroups.count - 1 ? .handedOver : .answered)
                attempts.append(UpstreamAttempt(address: String(address), responseMilliseconds: milliseconds, role: role))
            }
        }
        return .success(attempts)
    }

}

/// Why a line of the access log was not read.
public enum AccessLogProblem: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    case tooFewFields(Int)
    /// Field number (1-based), what it should hold, what it held.
    case badField(Int, String, String)
    /// `$upstream_addr` and `$upstream_response_time` list different contacts.
    case mismatchedUpstreams(String, String)

    public var description: String {
        switch self {
        case .tooFewFields(let count):
            return "expected 7 TAB-separated fields of the meridian-v1 format, got \(count)"
        case .badField(let index, let what, let value):
            let shown = value.count > 60 ? String(value.prefix(60)) + "…" : value
            return "field \(index) should be the \(what), got \"\(shown)\""
        case .mismatchedUpstreams(let addresses, let times):
            return "the upstream addresses \"\(addresses)\" and response times \"\(times)\" do not list the same contacts"
        }
    }
}

/// A line that did not parse, with its 1-based number in the text read.
public struct UnparsableLine: Sendable, Equatable, Codable {
    public var number: Int
    public var problem: AccessLogProblem

    public init(number: Int, problem: AccessLogProblem) {
        self.number = number
        self.problem = problem
    }
}

/// A piece of the gateway's access log, read line by line: what parsed and
/// what did not. Empty lines (a trailing newline) are neither.
public struct AccessLog: Sendable, Equatable {
    public var lines: [AccessLogLine]
    public var unparsable: [UnparsableLine]

    public init(lines: [AccessLogLine] = [], unparsable: [UnparsableLine] = []) {
        self.lines = lines
        self.unparsable = unparsable
    }

    public init(text: String) {
        self.init()
        let whole = Substring(text)
        for (index, bytes) in whole.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let raw = Substring(bytes)
            if raw.isEmpty || raw == "\r" { continue }
            switch AccessLogLine.parse(raw) {
            case .success(let line): lines.append(line)
            case .failure(let problem): unparsable.append(UnparsableLine(number: index + 1, problem: problem))
            }
        }
    }

    /// Lines read, parsed or not.
    public var count: Int { lines.count + unparsable.count }
}

/// nginx's `seconds.milliseconds` numbers (`$msec`, `$request_time`,
/// `$upstream_response_time`), read exactly into whole milliseconds.
enum AccessLogNumber {
    static func milliseconds(_ text: Substring) -> Int64? {
        var seconds: Int64 = 0, fraction: Int64 = 0
        var wholeDigits = 0, fractionDigits = 0, sawPoint = false
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                if sawPoint { return nil }
                sawPoint = true
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(byte - UInt8(ascii: "0"))
            if sawPoint {
                fractionDigits += 1
                fraction = fraction * 10 + digit
            } else {
                wholeDigits += 1
                seconds = seconds * 10 + digit
            }
        }
        guard (1...12).contains(wholeDigits), !sawPoint || (1...3).contains(fractionDigits) else { return nil }
        for _ in fractionDigits..<3 { fraction *= 10 }
        return seconds * 1000 + fraction
    }
}

/// Splits nginx's upstream lists (`a, b : c`) into groups of contacts,
/// scanning bytes: the separators are plain ASCII.
enum UpstreamList {
    static func groups(_ text: Substring) -> [[Substring]] {
        var groups: [[Substring]] = []
        var current: [Substring] = []
        let bytes = text.utf8
        var start = bytes.startIndex
        var i = bytes.startIndex
        let comma = UInt8(ascii: ","), space = UInt8(ascii: " "), colon = UInt8(ascii: ":")
        while i != bytes.endIndex {
            let next = bytes.index(after: i)
            if bytes[i] == comma, next != bytes.endIndex, bytes[next] == space { // ", " between servers of a group
                current.append(Substring(bytes[start..<i]))
                start = bytes.index(after: next)
                i = start
                continue
            }
            if bytes[i] == space, next != bytes.endIndex, bytes[next] == colon { // " : " between groups
                let after = bytes.index(after: next)
                if after != bytes.endIndex, bytes[after] == space {
                    current.append(Substring(bytes[start..<i]))
                    groups.append(current)
                    current = []
                    start = bytes.index(after: after)
                    i = start
                    continue
                }
            }
            i = next
        }
        current.append(Substring(bytes[start..<bytes.endIndex]))
        groups.append(current)
        return groups
    }
}
