#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KeelIO

/// Bytes borrowed from the database: a key or value as stored in a page, or a copy the
/// transaction keeps.
///
/// **Lifetime:** a `ByteView` handed out by a transaction is valid only until that transaction
/// ends (commit or rollback). Copy it (`Array(view)` or `.bytes`) to keep it longer. Inside a write
/// transaction a view stays valid even if its key is later overwritten or deleted in the same
/// transaction: the transaction keeps every buffer it handed out until it ends.
///
/// Debug builds check the lifetime: a view handed out by a transaction (through a cursor or
/// `get`) remembers it, and reading the view after the transaction ended stops the program
/// with a message instead of silently reading memory that was reused (the writer's arena is
/// reused by the next write transaction; a reader's pages may be rewritten once it ended).
/// `isAlive` tells without stopping. Release builds carry no such check.
public struct ByteView: RandomAccessCollection, Hashable, Comparable, @unchecked Sendable, CustomStringConvertible {
    @usableFromInline let base: UnsafeRawPointer?
    public let count: Int
    #if DEBUG
    @usableFromInline var lifetime: ViewLifetime?
    #endif

    @inlinable
    init(base: UnsafeRawPointer?, count: Int) {
        self.base = base
        self.count = count
        #if DEBUG
        lifetime = nil
        #endif
    }

    /// Whether the memory under the view is still the transaction's (always true in release
    /// builds, and for views not handed out by a transaction).
    public var isAlive: Bool {
        #if DEBUG
        return !(lifetime?.ended ?? false)
        #else
        return true
        #endif
    }

    /// The view tied to `lifetime` (debug builds), so a use after it ended is caught.
    @inline(__always)
    func stamped(_ lifetime: ViewLifetime) -> ByteView {
        #if DEBUG
        var v = self
        v.lifetime = lifetime
        return v
        #else
        return self
        #endif
    }

    /// Stops a debug build when the view outlived its transaction.
    @inlinable @inline(__always)
    func checkAlive() {
        #if DEBUG
        if let lifetime, lifetime.ended {
            preconditionFailure("a ByteView was used after its transaction (\(lifetime.owner)) ended; copy it with .bytes to keep it")
        }
        #endif
    }

    /// A view of memory the caller keeps alive and unchanged while the view is used.
    public init(unsafeBytes: UnsafeRawBufferPointer) {
        self.init(base: unsafeBytes.baseAddress, count: unsafeBytes.count)
    }

    /// The bytes as a raw buffer (no lifetime check: internal use on live views).
    var rawBuffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// An empty view.
    public static let empty = ByteView(base: nil, count: 0)

    public typealias Indices = Range<Int>
    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    public var indices: Range<Int> { 0..<count }
    @inlinable public func index(after i: Int) -> Int { i + 1 }
    @inlinable public func index(before i: Int) -> Int { i - 1 }

    public func withContiguousStorageIfAvailable<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R? {
        checkAlive()
        return try body(UnsafeBufferPointer(start: base?.assumingMemoryBound(to: UInt8.self), count: count))
    }

    /// Whether the bytes equal `other`'s (memcmp).
    public func equals(_ other: [UInt8]) -> Bool {
        other.withUnsafeBytes { raw in self == ByteView(base: raw.baseAddress, count: raw.count) }
    }

    @inlinable
    public subscript(position: Int) -> UInt8 {
        precondition(position >= 0 && position < count, "ByteView index out of range")
        checkAlive()
        return base!.load(fromByteOffset: position, as: UInt8.self)
    }

    /// A copy that outlives the transaction.
    public var bytes: [UInt8] {
        checkAlive()
        guard let base, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Calls `body` with the raw bytes (valid only inside the call and the transaction).
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        checkAlive()
        return try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// The first 8 bytes as a big-endian integer, zero-padded when shorter. When two views'
    /// prefixes differ they order as the views do (a shorter key pads with zeros, and a key is
    /// below every longer key it begins), so searches compare prefixes first and whole keys only
    /// on a tie.
    @inlinable
    var orderPrefix: UInt64 {
        checkAlive()
        guard let base else { return 0 }
        if count >= 8 { return base.loadUnaligned(as: UInt64.self).bigEndian }
        var v: UInt64 = 0
        var i = 0
        while i < count {
            v |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) << UInt64(56 - 8 * i)
            i += 1
        }
        return v
    }

    /// `compare(other)` given `other.orderPrefix`: decides on the prefixes when they differ.
    @inlinable @inline(__always)
    func compare(_ other: ByteView, otherPrefix: UInt64) -> Int {
        let p = orderPrefix
        if p != otherPrefix { return p < otherPrefix ? -1 : 1 }
        return compare(other)
    }

    /// Unsigned byte-wise comparison, as `bytes.Compare` in Go: -1, 0 or 1.
    /// Short keys are compared 8 bytes at a time inline; long ones with memcmp.
    @inlinable
    public func compare(_ other: ByteView) -> Int {
        checkAlive()
        other.checkAlive()
        let n = Swift.min(count, other.count)
        if n > 0 {
            let a = base!
            let b = other.base!
            if n > 64 {
                let r = memcmp(a, b, n)
                if r != 0 { return r < 0 ? -1 : 1 }
            } else {
                var i = 0
                while i + 8 <= n {
                    let x = a.loadUnaligned(fromByteOffset: i, as: UInt64.self).bigEndian
                    let y = b.loadUnaligned(fromByteOffset: i, as: UInt64.self).bigEndian
                    if x != y { return x < y ? -1 : 1 }
                    i += 8
                }
                while i < n {
                    let x = a.load(fromByteOffset: i, as: UInt8.self)
                    let y = b.load(fromByteOffset: i, as: UInt8.self)
                    if x != y { return x < y ? -1 : 1 }
                    i += 1
                }
            }
        }
        return count == other.count ? 0 : (count < other.count ? -1 : 1)
    }

    @inlinable
    public static func == (lhs: ByteView, rhs: ByteView) -> Bool {
        lhs.checkAlive()
        rhs.checkAlive()
        return lhs.count == rhs.count && (lhs.count == 0 || memcmp(lhs.base!, rhs.base!, lhs.count) == 0)
    }

    @inlinable
    public static func < (lhs: ByteView, rhs: ByteView) -> Bool { lhs.compare(rhs) < 0 }

    public func hash(into hasher: inout Hasher) {
        checkAlive()
        hasher.combine(count)
        if count > 0 { hasher.combine(bytes: UnsafeRawBufferPointer(start: base, count: count)) }
    }

    /// Printable ASCII as is, anything else as hex.
    public var description: String { printableOrHex(bytes) }
}

/// The life of a transaction, as far as the views it handed out are concerned.
public final class ViewLifetime: @unchecked Sendable {
    @usableFromInline let txid: UInt64
    @usableFromInline let writable: Bool
    @usableFromInline var ended = false

    init(txid: UInt64, writable: Bool) {
        self.txid = txid
        self.writable = writable
    }

    /// Which transaction, for the message.
    @usableFromInline var owner: String { "\(writable ? "write" : "read") transaction \(txid)" }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}


/// Calls `body` with a view of `bytes`, keeping the typed error.
@inline(__always)
func withView<T>(_ bytes: [UInt8], _ body: (ByteView) throws(BoltError) -> T) throws(BoltError) -> T {
    let result: Result<T, BoltError> = bytes.withUnsafeBytes { raw in
        do throws(BoltError) {
            return .success(try body(ByteView(base: raw.baseAddress, count: raw.count)))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}
