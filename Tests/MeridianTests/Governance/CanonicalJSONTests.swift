import Foundation
import Testing
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
