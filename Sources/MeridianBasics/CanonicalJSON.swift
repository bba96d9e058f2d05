import Foundation

/// A JSON value with exactly one byte serialization for each value, so that
/// equal values hash equally wherever they are rendered.
///
/// The canonical form (`canonicalText`, `canonicalData`), which is what gets
/// hashed:
/// - no whitespace outside strings;
/// - object members sorted by the UTF-8 bytes of their keys;
/// - `integer` written in decimal with no sign for zero and no fraction; a
///   `number` with an integral value below 2^53 in magnitude is written the
///   same way, so `.number(2)` and `.integer(2)` serialize alike; any other
///   finite `number` is written in the shortest form that reads back to the
///   same Double (`0.25`, `1e-05`, `1e+300`); NaN and the infinities, which
///   JSON cannot express, are written as `null`;
/// - strings escaped minimally: `"` and `\` with a backslash, the control
///   characters U+0008, U+0009, U+000A, U+000C, U+000D as `\b \t \n \f \r`, the
///   other characters below U+0020 as `\u00xx` with lowercase hex, and every
///   other character as its own UTF-8 bytes (no `\u` escapes for non-ASCII).
///
/// The pretty form (`prettyText`) is for people: the same member order, two
/// spaces of indentation, `"key": value`, and `[]` / `{}` for empty containers.
///
/// Object keys are Swift strings, which compare by canonical Unicode
/// equivalence: two keys that differ only in normalization cannot coexist in
/// one object.
public enum CanonicalJSON: Sendable, Hashable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([CanonicalJSON])
    case object([String: CanonicalJSON])

    /// The canonical serialization.
    public var canonicalText: String { String(decoding: canonicalBytes, as: UTF8.self) }

    /// The canonical serialization as UTF-8 bytes: what a hash is taken of.
    public var canonicalData: Data { Data(canonicalBytes) }

    /// SHA-256 of the canonical bytes, in lowercase hex.
    public var canonicalHash: String { SHA256.hex(canonicalData) }

    /// The indented serialization for display, without a trailing newline.
    public var prettyText: String {
        var writer = Writer(indent: Array("  ".utf8))
        writer.write(self, depth: 0)
        return String(decoding: writer.out, as: UTF8.self)
    }

    var canonicalBytes: [UInt8] {
        var writer = Writer(indent: nil)
        writer.write(self, depth: 0)
        return writer.out
    }

    /// Object keys in canonical order: by their UTF-8 bytes, which is also
    /// Unicode code point order and does not depend on locale.
    public static func sortedKeys<Value>(_ object: [String: Value]) -> [String] {
        object.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Serializes into a byte buffer; bundles hold the whole routing table,
    /// so this runs over megabytes when a fleet has hundreds of regions.
    struct Writer {
        /// Nil writes the canonical form; otherwise the pretty form with this indentation unit.
        let indent: [UInt8]?
        var out: [UInt8] = []

        init(indent: [UInt8]?) {
            self.indent = indent
            out.reserveCapacity(4096)
        }

        mutating func write(_ value: CanonicalJSON, depth: Int) {
            switch value {
            case .null:
                out.append(contentsOf: "null".utf8)
            case .bool(let value):
                out.append(contentsOf: (value ? "true" : "false").utf8)
            case .integer(let value):
                out.append(contentsOf: String(value).utf8)
            case .number(let value):
                out.append(contentsOf: CanonicalJSON.numberText(value).utf8)
            case .string(let value):
                writeString(value)
            case .array(let items):
                if items.isEmpty { out.append(contentsOf: "[]".utf8); return }
                out.append(UInt8(ascii: "["))
                for (index, item) in items.enumerated() {
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    newline(depth + 1)
                    write(item, depth: depth + 1)
                }
                newline(depth)
                out.append(UInt8(ascii: "]"))
            case .object(let members):
                if members.isEmpty { out.append(contentsOf: "{}".utf8); return }
                out.append(UInt8(ascii: "{"))
                let sorted = members.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
                for (index, member) in sorted.enumerated() {
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    newline(depth + 1)
                    writeString(member.key)
                    out.append(UInt8(ascii: ":"))
                    if indent != nil { out.append(UInt8(ascii: " ")) }
                    write(member.value, depth: depth + 1)
                }
                newline(depth)
                out.append(UInt8(ascii: "}"))
            }
        }

        private mutating func newline(_ depth: Int) {
            guard let indent else { return }
            out.append(UInt8(ascii: "\n"))
            for _ in 0..<depth { out.append(contentsOf: indent) }
        }

        /// Only `"`, `\` and bytes below 0x20 are escaped; every other byte,
        /// including each byte of a multi-byte character, is copied as it is.
        private mutating func writeString(_ value: String) {
            out.append(UInt8(ascii: "\""))
            for byte in value.utf8 {
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
                case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
                case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0..<0x20:
                    let digits = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: "\\u00".utf8)
                    out.append(digits[Int(byte >> 4)])
                    out.append(digits[Int(byte & 0xf)])
                default:
                    out.append(byte)
                }
            }
            out.append(UInt8(ascii: "\""))
        }
    }

    static func numberText(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        // Integral values below 2^53 are exact in a Double; writing them as
        // integers keeps 2 and 2.0 from hashing differently.
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
            return String(Int64(value))
        }
        // Swift's description is the shortest text that reads back to the same
        // Double; it is valid JSON for finite values.
        return value.description
    }
}

extension CanonicalJSON: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: CanonicalJSON...) { self = .array(elements) }

    /// A later duplicate key replaces an earlier one, as JSON parsers commonly do.
    public init(dictionaryLiteral elements: (String, CanonicalJSON)...) {
        var members: [String: CanonicalJSON] = [:]
        for (key, value) in elements { members[key] = value }
        self = .object(members)
    }
}
