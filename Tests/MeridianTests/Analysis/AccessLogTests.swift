import Foundation
import Testing
import MeridianTestHosts
@testable import MeridianModel
@testable import MeridianPlanning

/// The `meridian-v1` access-log line: what parses, into what, and what is refused.
@Suite struct AccessLogTests {
    static func parse(_ text: String) -> Result<AccessLogLine, AccessLogProblem> { AccessLogLine.parse(Substring(text)) }

    @Test func readsEveryFieldExactly() throws {
        let line = try Self.parse("1733040000.123\tinference\t127.0.1.2:8102\tgreen\t503\t0.250\t0.249\tEU\textra").get()
        #expect(line == AccessLogLine(endMilliseconds: 1_733_040_000_123, component: "inference",
                                      attempts: [UpstreamAttempt(address: "127.0.1.2:8102", responseMilliseconds: 249, role: .answered)],
                                      slot: .green, status: 503, requestMilliseconds: 250))
        #expect(line.answered?.port == 8102)
    }

    @Test func gatewayAnswersHaveNoUpstream() throws {
        let line = try Self.parse("1733040000.000\t-\t-\t-\t451\t0.000\t-").get()
        #expect(line.component == nil && line.slot == nil && line.attempts.isEmpty && line.status == 451)
    }

    @Test func upstreamListsKeepEveryContact() throws {
        let line = try Self.parse("1733040000.5\tinference\t127.0.1.1:8102, 127.0.1.2:8101 : unix:/srv/s.sock\tblue\t200\t1.2\t0.300, - : 0.010\r").get()
        #expect(line.endMilliseconds == 1_733_040_000_500 && line.requestMilliseconds == 1_200)
        #expect(line.attempts == [
            UpstreamAttempt(address: "127.0.1.1:8102", responseMilliseconds: 300, role: .passedOn),
            UpstreamAttempt(address: "127.0.1.2:8101", responseMilliseconds: nil, role: .handedOver),
            UpstreamAttempt(address: "unix:/srv/s.sock", responseMilliseconds: 10, role: .answered),
        ])
        #expect(line.attempts.map(\.port) == [8102, 8101, nil])
        #expect(UpstreamAttempt(address: "[::1]:8101", responseMilliseconds: nil, role: .answered).port == 8101)
        #expect(UpstreamAttempt(address: "backend", responseMilliseconds: nil, role: .answered).port == nil)
    }

    @Test func refusesWhatItCannotReadWithoutGuessing() {
        let cases: [(String, AccessLogProblem)] = [
            ("", .tooFewFields(1)),
            ("1733040000.123\tinference\t127.0.1.2:8102\tgreen\t200\t0.250", .tooFewFields(6)),
            ("1733040000,123\tinference\t127.0.1.2:8102\tgreen\t200\t0.250\t0.249", .badField(1, "end time", "1733040000,123")),
            ("1733040000.1234\tinference\t127.0.1.2:8102\tgreen\t200\t0.250\t0.249", .badField(1, "end time", "1733040000.1234")),
            ("1733040000.123\t\t127.0.1.2:8102\tgreen\t200\t0.250\t0.249", .badField(2, "component", "")),
            ("1733040000.123\tinference\t127.0.1.2:8102\tcanary\t200\t0.250\t0.249", .badField(4, "slot", "canary")),
            ("1733040000.123\tinference\t127.0.1.2:8102\tgreen\t2000\t0.250\t0.249", .badField(5, "status", "2000")),
            ("1733040000.123\tinference\t127.0.1.2:8102\tgreen\t099\t0.250\t0.249", .badField(5, "status", "099")),
            ("1733040000.123\tinference\t127.0.1.2:8102\tgreen\t200\t-0.250\t0.249", .badField(6, "request time", "-0.250")),
            ("1733040000.123\tinference\t127.0.1.2:8102\tgreen\t200\t0.250\t0.2a9", .badField(7, "upstream response time", "0.2a9")),
            ("1733040000.123\tinference\t127.0.1.2:8102, 127.0.1.2:8101\tgreen\t200\t0.250\t0.249", .mismatchedUpstreams("127.0.1.2:8102, 127.0.1.2:8101", "0.249")),
            ("1733040000.123\tinference\t-\tgreen\t200\t0.250\t0.249", .mismatchedUpstreams("-", "0.249")),
            ("1733040000.123\tinference\t127.0.1.2:8102,\tgreen\t200\t0.250\t0.249", .badField(3, "upstream address", "127.0.1.2:8102,")),
        ]
        for (text, problem) in cases {
            #expect(Self.parse(text) == .failure(problem), "\(text.debugDescription)")
        }
    }

    @Test func aLogCountsItsUnparsableLinesByNumber() {
        let text = "1733040000.000\t-\t-\t-\t200\t0.001\t-\nnot a line\n\n1733040000.001\t-\t-\t-\t200\t0.001\t-\n\u{0}\u{7f}é\t\t\n"
        let log = AccessLog(text: text)
        #expect(log.lines.count == 2)
        #expect(log.unparsable.map(\.number) == [2, 5])
        #expect(log.count == 4)
        #expect(log.unparsable[0].problem.description == "expected 7 TAB-separated fields of the meridian-v1 format, got 1")
    }

    /// Mangled lines never crash the parser, and whatever still parses keeps
    /// the format's invariants. The seed of a failing line is printed.
    @Test func mangledLinesParseIntoValidValuesOrAreRefused() {
        let valid = "1733040000.123\tinference\t127.0.1.1:8102, 127.0.1.2:8101 : 127.0.1.3:8101\tblue\t200\t0.400\t0.300, 0.090 : 0.010"
        let pieces: [String] = ["\t", " ", ",", ", ", " : ", ":", ".", "-", "0", "9", "é", "\u{0}", "\r", "blue", "5"]
        var parsed = 0
        for seed in UInt64(1)...2_000 {
            var random = SplitMix64(seed: seed)
            var characters = Array(valid)
            for _ in 0..<Int(random.next() % 4 + 1) {
                let at = Int(random.next() % UInt64(characters.count))
                if random.next() % 2 == 0 { characters.remove(at: at) }
                else { characters.insert(contentsOf: pieces[Int(random.next() % UInt64(pieces.count))], at: at) }
            }
            let text = String(characters)
            guard case .success(let line) = Self.parse(text) else { continue }
            parsed += 1
            #expect((100...599).contains(line.status), "seed \(seed): \(text.debugDescription)")
            #expect(line.attempts.last.map { $0.role == .answered } ?? true, "seed \(seed): \(text.debugDescription)")
            #expect(line.attempts.dropLast().allSatisfy { $0.role != .answered }, "seed \(seed): \(text.debugDescription)")
            #expect(line.attempts.allSatisfy { !$0.address.isEmpty && !$0.address.contains(" ") && !$0.address.contains(",") && ($0.responseMilliseconds ?? 0) >= 0 },
                    "seed \(seed): \(text.debugDescription)")
        }
        #expect(parsed > 50, "some mangled lines should still be valid lines")
    }
}
