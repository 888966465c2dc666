/// An etcd revision: `main` counts write transactions that changed something, `sub` the changes
/// inside one of them (0, 1, …).
public struct Revision: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var main: Int64
    public var sub: Int64

    public init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    public static func < (a: Revision, b: Revision) -> Bool { a.main != b.main ? a.main < b.main : a.sub < b.sub }

    public var description: String { "\(main)_\(sub)" }

    /// The 17-byte key of the `key` bucket: main (8 bytes big-endian), `_`, sub (8 bytes
    /// big-endian); a tombstone appends `t` (18 bytes).
    public func bytes(tombstone: Bool = false) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: tombstone ? 18 : 17)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: UInt64(bitPattern: main) >> (56 - 8 * UInt64(i)))
            out[9 + i] = UInt8(truncatingIfNeeded: UInt64(bitPattern: sub) >> (56 - 8 * UInt64(i)))
        }
        out[8] = UInt8(ascii: "_")
        if tombstone { out[17] = UInt8(ascii: "t") }
        return out
    }

    /// Decodes a `key` bucket key; `tombstone` is true for the 18-byte form.
    /// - Throws: `MVCCError.corrupt` for any other length or shape.
    public static func decode(_ bytes: some Collection<UInt8>) throws(MVCCError) -> (revision: Revision, tombstone: Bool) {
        let b = Array(bytes)
        guard b.count == 17 || (b.count == 18 && b[17] == UInt8(ascii: "t")), b[8] == UInt8(ascii: "_") else {
            throw MVCCError.corrupt("key bucket key of \(b.count) bytes is not a revision (main '_' sub [t])")
        }
        var main: UInt64 = 0
        var sub: UInt64 = 0
        for i in 0..<8 {
            main = main << 8 | UInt64(b[i])
            sub = sub << 8 | UInt64(b[9 + i])
        }
        return (Revision(main: Int64(bitPattern: main), sub: Int64(bitPattern: sub)), b.count == 18)
    }
}

/// Big-endian 8 bytes, as etcd stores `consistent_index` and `authRevision`.
func bigEndianBytes(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
}

/// The inverse of `bigEndianBytes`; nil unless exactly 8 bytes.
func bigEndianValue(_ bytes: [UInt8]) -> UInt64? {
    guard bytes.count == 8 else { return nil }
    return bytes.reduce(0) { $0 << 8 | UInt64($1) }
}
