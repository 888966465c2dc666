/// The LMDB database name of a bucket path: each component percent-escaped ('%', '/', and bytes
/// outside printable ASCII become %XX), joined with '/'. Injective, so two different paths never
/// share a database; names beginning with `__keel` are reserved for Keel's registry.
public enum BucketName {
    /// The registry database: every bucket's escaped path.
    static let registry = "__keel/buckets"

    public static func escape(_ component: [UInt8]) -> String {
        var out = ""
        out.reserveCapacity(component.count)
        for byte in component {
            if byte == UInt8(ascii: "%") || byte == UInt8(ascii: "/") || byte < 0x21 || byte > 0x7E {
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xF, radix: 16, uppercase: true)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            }
        }
        return out
    }

    /// The database name of `path` (non-empty).
    public static func name(_ path: [[UInt8]]) -> String { path.map(escape).joined(separator: "/") }

    /// The path of a database name made by `name`.
    public static func path(_ name: String) -> [[UInt8]] {
        name.split(separator: "/", omittingEmptySubsequences: false).map { part in
            var bytes: [UInt8] = []
            var it = Array(part.utf8).makeIterator()
            while let c = it.next() {
                if c == UInt8(ascii: "%"), let h = it.next(), let l = it.next(),
                   let v = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16) {
                    bytes.append(v)
                } else {
                    bytes.append(c)
                }
            }
            return bytes
        }
    }

    /// A printable form of a path for messages.
    public static func display(_ path: [[UInt8]]) -> String { "/" + name(path) }
}
