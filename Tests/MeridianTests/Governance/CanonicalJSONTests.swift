import Foundation
import Testing
import MeridianTestHosts
@testable import MeridianBasics

@Suite struct CanonicalJSONTests {
    @Test func objectKeysAreSortedByUTF8Bytes() {
        // "Z" (0x5A) < "_" (0x5F) < "a" (0x61) < "é" (0xC3 0xA9) < "😀" (0xF0 …)
        let value: CanonicalJSON = ["é": 1, "a": 2, "_": 3, "Z": 4, "😀": 5, "ab": 6]
        #expect(value.canonicalText == #"{"Z":4,"_":3,"a":2,"ab":6,"é":1,"😀":5}"#)
    }

    @Test func nestedValuesHaveNoWhitespace() {
        let value: CanonicalJSON = ["list": [1, true, nil, "x", [:], []], "object": ["b": false, "a": 0.5]]
        #expect(value.canonicalText == #"{"list":[1,true,null,"x",{},[]],"object":{"a":0.5,"b":false}}"#)
    }

    @Test(arguments: [
        (CanonicalJSON.integer(0), "0"),
        (.integer(-42), "-42"),
        (.integer(Int.max), "9223372036854775807"),
        (.number(2.0), "2"),
        (.number(-0.0), "0"),
        (.number(0.1), "0.1"),
        (.number(-1.5), "-1.5"),
        (.number(1e-5), "1e-05"),
        (.number(1e300), "1e+300"),
        (.number(.nan), "null"),
        (.number(.infinity), "null"),
    ])
    func numbers(value: CanonicalJSON, text: String) {
        #expect(value.canonicalText == text)
    }

    @Test func stringsAreEscapedMinimally() {
        let value = CanonicalJSON.string("quote \" backslash \\ slash / tab \t nl \n cr \r bs \u{08} ff \u{0C} nul \u{00} us \u{1F} del \u{7F} é ✓ \u{2028}")
        #expect(value.canonicalText == "\"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r bs \\b ff \\f nul \\u0000 us \\u001f del \u{7F} é ✓ \u{2028}\"")
    }

    @Test func canonicalTextIsValidJSONThatReadsBackToTheSameValue() throws {
        let value: CanonicalJSON = ["s": "a\u{01}\"\\\n✓", "n": -3, "f": 0.25, "b": true, "z": nil, "l": [["k": "v"]]]
        let parsed = try JSONSerialization.jsonObject(with: value.canonicalData) as? [String: Any]
        #expect(parsed?["s"] as? String == "a\u{01}\"\\\n✓")
        #expect((parsed?["n"] as? NSNumber)?.intValue == -3)
        #expect((parsed?["f"] as? NSNumber)?.doubleValue == 0.25)
        #expect(((parsed?["l"] as? [Any])?.first as? [String: String]) == ["k": "v"])
        let pretty = try JSONSerialization.jsonObject(with: Data(value.prettyText.utf8)) as? [String: Any]
        #expect(pretty?["s"] as? String == "a\u{01}\"\\\n✓")
    }

    @Test func prettyTextIndentsByTwoSpacesWithSortedKeys() {
        let value: CanonicalJSON = ["b": [1, ["y": nil, "x": "1"]], "a": [:], "c": []]
        #expect(value.prettyText == """
        {
          "a": {},
          "b": [
            1,
            {
              "x": "1",
              "y": null
            }
          ],
          "c": []
        }
        """)
    }

    @Test func hashIsTakenOfTheCanonicalBytes() {
        let value: CanonicalJSON = ["b": 1, "a": [true]]
        #expect(value.canonicalHash == SHA256.hex(#"{"a":[true],"b":1}"#))
        #expect(CanonicalJSON.number(2).canonicalHash == CanonicalJSON.integer(2).canonicalHash)
    }
}

@Suite struct CanonicalJSONPropertyTests {
    /// Characters that stress escaping: controls, quotes, backslashes, slashes,
    /// DEL, separators, multi-byte and astral characters, combining marks.
    static let alphabet: [Character] = ["a", "Z", "0", " ", "\"", "\\", "/", "\u{00}", "\u{01}", "\u{08}", "\t", "\n", "\u{0B}", "\u{0C}", "\r",
                                        "\u{1F}", "\u{7F}", "é", "\u{2028}", "✓", "😀", "e\u{301}", "_", "{", "]"]

    static func randomString(_ random: inout SplitMix64) -> String {
        String((0..<Int.random(in: 0...12, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
    }

    @Test func stringsAndKeysReadBackExactlyAndKeysComeInByteOrder() throws {
        let seed: UInt64 = 0x6A73_6F6E
        var random = SplitMix64(seed: seed)
        for round in 0..<300 {
            var members: [String: CanonicalJSON] = [:]
            for _ in 0..<Int.random(in: 0...6, using: &random) {
                members[Self.randomString(&random)] = .string(Self.randomString(&random))
            }
            let value = CanonicalJSON.object(members)
            let text = value.canonicalText
            let parsed = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? [String: String]
            let expected = members.mapValues { member -> String in
                guard case .string(let string) = member else { return "" }
                return string
            }
            #expect(parsed == expected, "seed \(seed) round \(round): \(text)")
            #expect(!text.contains("\n") && !text.contains("\r") && !text.contains("\t"), "seed \(seed) round \(round)")
            // Member order: the serialization of the sorted keys, one after the other.
            let keys = CanonicalJSON.sortedKeys(members)
            #expect(zip(keys, keys.dropFirst()).allSatisfy { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }, "seed \(seed) round \(round)")
            var cursor = text.startIndex
            for key in keys {
                let written = CanonicalJSON.string(key).canonicalText + ":"
                let found = text.range(of: written, range: cursor..<text.endIndex)
                #expect(found != nil, "seed \(seed) round \(round): \(key) out of order in \(text)")
                if let found { cursor = found.upperBound }
            }
            #expect(value.prettyText.count >= text.count, "seed \(seed) round \(round)")
        }
    }
}
