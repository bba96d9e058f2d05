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
    public var canonicalText: String {
        var out = ""
        write(to: &out, indent: nil, depth: 0)
        return out
    }

    /// The canonical serialization as UTF-8 bytes: what a hash is taken of.
    public var canonicalData: Data { Data(canonicalText.utf8) }

    /// SHA-256 of the canonical bytes, in lowercase hex.
    public var canonicalHash: String { SHA256.hex(canonicalData) }

    /// The indented serialization for display, without a trailing newline.
    public var prettyText: String {
        var out = ""
        write(to: &out, indent: "  ", depth: 0)
        return out
    }

    /// Object keys in canonical order: by their UTF-8 bytes, which is also
    /// Unicode code point order and does not depend on locale.
    public static func sortedKeys<Value>(_ object: [String: Value]) -> [String] {
        object.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    private func write(to out: inout String, indent: String?, depth: Int) {
        switch self {
        case .null:
            out += "null"
        case .bool(let value):
            out += value ? "true" : "false"
        case .integer(let value):
            out += String(value)
        case .number(let value):
            out += CanonicalJSON.numberText(value)
        case .string(let value):
            CanonicalJSON.writeString(value, to: &out)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                CanonicalJSON.newline(&out, indent: indent, depth: depth + 1)
                item.write(to: &out, indent: indent, depth: depth + 1)
            }
            CanonicalJSON.newline(&out, indent: indent, depth: depth)
            out += "]"
        case .object(let members):
            if members.isEmpty { out += "{}"; return }
            out += "{"
            for (index, key) in CanonicalJSON.sortedKeys(members).enumerated() {
                if index > 0 { out += "," }
                CanonicalJSON.newline(&out, indent: indent, depth: depth + 1)
                CanonicalJSON.writeString(key, to: &out)
                out += indent == nil ? ":" : ": "
                members[key]!.write(to: &out, indent: indent, depth: depth + 1)
            }
            CanonicalJSON.newline(&out, indent: indent, depth: depth)
            out += "}"
        }
    }

    private static func newline(_ out: inout String, indent: String?, depth: Int) {
        guard let indent else { return }
        out += "\n"
        out += String(repeating: indent, count: depth)
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

    static func writeString(_ value: String, to out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{09}": out += "\\t"
            case "\u{0A}": out += "\\n"
            case "\u{0C}": out += "\\f"
            case "\u{0D}": out += "\\r"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
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
