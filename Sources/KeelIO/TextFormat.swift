/// One JSON object built field by field, in order, printed on one line. The single place Keel's
/// tools make JSON, so every string is escaped the same (RFC 8259: quote, backslash and every
/// control character).
public struct JSONLine: CustomStringConvertible, Sendable {
    private var fields: [String] = []

    public init() {}

    /// A string field.
    public mutating func add(_ key: String, _ value: String) { fields.append(JSONLine.quote(key) + ":" + JSONLine.quote(value)) }
    /// An integer field.
    public mutating func add<I: BinaryInteger>(_ key: String, _ value: I) { fields.append(JSONLine.quote(key) + ":" + String(value)) }
    /// A number with at most `decimals` digits after the point (non-finite values print as 0).
    public mutating func add(_ key: String, _ value: Double, decimals: Int) {
        fields.append(JSONLine.quote(key) + ":" + formatDecimal(value, decimals))
    }
    /// A Boolean field.
    public mutating func add(_ key: String, _ value: Bool) { fields.append(JSONLine.quote(key) + ":" + (value ? "true" : "false")) }
    /// A field whose value is already JSON (an array or object made here).
    public mutating func addRaw(_ key: String, _ json: String) { fields.append(JSONLine.quote(key) + ":" + json) }

    public var description: String { "{" + fields.joined(separator: ",") + "}" }

    /// A JSON string literal for `text`.
    public static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A JSON array of strings.
    public static func array(_ items: [String]) -> String { "[" + items.map(quote).joined(separator: ",") + "]" }
}

/// `value` rounded to `decimals` places, without an exponent (non-finite values print as 0).
public func formatDecimal(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    if decimals == 0 || abs(rounded) >= 1e15 { return String(Int64(rounded)) }
    var text = String(rounded)
    if text.contains("e") { text = String(Int64(rounded)) }
    return text
}

/// When `printableOrHex` puts quotes around text.
public enum TextQuoting: Sendable {
    case never, always, whenItHasSpaces
}

/// Bytes as text when they are printable, else as lower-case hex (after `hexPrefix`): how Keel's
/// messages and tools show keys and values. Printable means ASCII 0x20–0x7E, or with
/// `allowUTF8` any valid UTF-8 without control or invisible characters except tab and newline
/// (bbolt's `auto` format). Empty bytes are text (an empty string).
public func printableOrHex(_ bytes: some Collection<UInt8>, quoting: TextQuoting = .never, hexPrefix: String = "",
                           allowUTF8: Bool = false) -> String {
    let text: String?
    if allowUTF8 {
        let decoded = String(validating: bytes, as: UTF8.self)
        text = decoded.flatMap { t in
            t.unicodeScalars.allSatisfy { !$0.properties.isDefaultIgnorableCodePoint && ($0.value >= 0x20 || $0 == "\n" || $0 == "\t") } && !t.unicodeScalars.contains { $0.value == 0x7F } ? t : nil
        }
    } else {
        text = bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) ? String(decoding: bytes, as: UTF8.self) : nil
    }
    if let text {
        switch quoting {
        case .never: return text
        case .always: return "\"" + text + "\""
        case .whenItHasSpaces: return text.contains(" ") ? "\"" + text + "\"" : text
        }
    }
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0xF)])
    }
    return hexPrefix + String(decoding: out, as: UTF8.self)
}
