#if canImport(Glibc)
import Glibc
#endif

/// The in-memory key index: keys in byte order, each with its `KeyIndex`.
///
/// A sorted list of chunks (each at most `chunkCapacity` keys, split when full, dropped when
/// empty): lookups are two binary searches, an insert moves at most one chunk's worth of
/// references, and a range scan walks chunks in order. Not thread-safe; the store serialises
/// access.
final class TreeIndex {
    static let chunkCapacity = 256

    private final class Chunk {
        var keys: [[UInt8]] = []
        /// The first 8 bytes of each key, big-endian and zero-padded: most comparisons end here
        /// without touching the key arrays (order-consistent: see `prefix`).
        var prefixes: [UInt64] = []
        var items: [KeyIndex] = []
    }

    /// The first 8 bytes of `key` as a big-endian number, zero-padded. When two keys' prefixes
    /// differ, they order the keys as a byte-wise comparison does.
    @inline(__always)
    static func prefix(_ key: [UInt8]) -> UInt64 {
        var p: UInt64 = 0
        let n = min(key.count, 8)
        key.withUnsafeBufferPointer { b in
            for i in 0..<n { p |= UInt64(b[i]) << (56 - 8 * UInt64(i)) }
        }
        return p
    }

    private var chunks: [Chunk] = []
    /// Each chunk's first key prefix, so finding a chunk rarely touches a chunk.
    private var firstPrefixes: [UInt64] = []
    private(set) var count = 0

    /// The chunk that holds `key`, or would: the last chunk whose first key ≤ key (else the first).
    private func chunkIndex(for key: [UInt8], _ p: UInt64) -> Int {
        var lo = 0
        var hi = chunks.count
        firstPrefixes.withUnsafeBufferPointer { firsts in
            while lo < hi {
                let mid = (lo + hi) / 2
                let q = firsts[mid]
                let notAfter = q != p ? q < p : compareBytes(chunks[mid].keys[0], key) <= 0
                if notAfter { lo = mid + 1 } else { hi = mid }
            }
        }
        return max(lo - 1, 0)
    }

    /// Index of the first key ≥ `key` within a chunk.
    private func lowerBound(_ chunk: Chunk, _ key: [UInt8], _ p: UInt64) -> Int {
        var lo = 0
        var hi = chunk.keys.count
        chunk.prefixes.withUnsafeBufferPointer { prefixes in
            while lo < hi {
                let mid = (lo + hi) / 2
                let q = prefixes[mid]
                let less = q != p ? q < p : compareBytes(chunk.keys[mid], key) < 0
                if less { lo = mid + 1 } else { hi = mid }
            }
        }
        return lo
    }

    func get(_ key: [UInt8]) -> KeyIndex? {
        guard !chunks.isEmpty else { return nil }
        let p = TreeIndex.prefix(key)
        let chunk = chunks[chunkIndex(for: key, p)]
        let i = lowerBound(chunk, key, p)
        return i < chunk.keys.count && chunk.prefixes[i] == p && chunk.keys[i] == key ? chunk.items[i] : nil
    }

    /// The index entry for `key`, created when missing.
    func getOrInsert(_ key: [UInt8]) -> KeyIndex {
        if chunks.isEmpty {
            // Chunks are never empty (chunkIndex reads each one's first key).
            let chunk = Chunk()
            let item = KeyIndex(key: key)
            chunk.keys = [key]
            chunk.prefixes = [TreeIndex.prefix(key)]
            chunk.items = [item]
            chunks.append(chunk)
            firstPrefixes.append(chunk.prefixes[0])
            count = 1
            return item
        }
        let p = TreeIndex.prefix(key)
        let ci = chunkIndex(for: key, p)
        let chunk = chunks[ci]
        let i = lowerBound(chunk, key, p)
        if i < chunk.keys.count && chunk.prefixes[i] == p && chunk.keys[i] == key { return chunk.items[i] }
        let item = KeyIndex(key: key)
        chunk.keys.insert(key, at: i)
        chunk.prefixes.insert(p, at: i)
        chunk.items.insert(item, at: i)
        count += 1
        if i == 0 { firstPrefixes[ci] = p }
        if chunk.keys.count > TreeIndex.chunkCapacity {
            let half = chunk.keys.count / 2
            let right = Chunk()
            right.keys = Array(chunk.keys[half...])
            right.prefixes = Array(chunk.prefixes[half...])
            right.items = Array(chunk.items[half...])
            chunk.keys.removeSubrange(half...)
            chunk.prefixes.removeSubrange(half...)
            chunk.items.removeSubrange(half...)
            chunks.insert(right, at: ci + 1)
            firstPrefixes.insert(right.prefixes[0], at: ci + 1)
        }
        return item
    }

    func remove(_ key: [UInt8]) {
        guard !chunks.isEmpty else { return }
        let p = TreeIndex.prefix(key)
        let ci = chunkIndex(for: key, p)
        let chunk = chunks[ci]
        let i = lowerBound(chunk, key, p)
        guard i < chunk.keys.count && chunk.keys[i] == key else { return }
        chunk.keys.remove(at: i)
        chunk.prefixes.remove(at: i)
        chunk.items.remove(at: i)
        count -= 1
        if chunk.keys.isEmpty {
            chunks.remove(at: ci)
            firstPrefixes.remove(at: ci)
        } else if i == 0 {
            firstPrefixes[ci] = chunk.prefixes[0]
        }
    }

    /// Calls `body` for each entry with key in `[start, end)` in order (`end` nil: no upper
    /// bound) until it returns false.
    func forEach(from start: [UInt8], to end: [UInt8]?, _ body: (KeyIndex) -> Bool) {
        guard !chunks.isEmpty else { return }
        let p = TreeIndex.prefix(start)
        var ci = chunkIndex(for: start, p)
        var i = lowerBound(chunks[ci], start, p)
        while ci < chunks.count {
            let chunk = chunks[ci]
            while i < chunk.keys.count {
                if let end, compareBytes(chunk.keys[i], end) >= 0 { return }
                if !body(chunk.items[i]) { return }
                i += 1
            }
            ci += 1
            i = 0
        }
    }

    /// Every entry, in key order.
    func all(_ body: (KeyIndex) -> Void) {
        for chunk in chunks { for item in chunk.items { body(item) } }
    }
}

/// Unsigned byte-wise comparison, as Go's `bytes.Compare`.
func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    let n = min(a.count, b.count)
    let r = a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n) } }
    if r != 0 { return r < 0 ? -1 : 1 }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}
