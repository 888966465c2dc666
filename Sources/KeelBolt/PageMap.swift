/// A map from page ids to values, for a write transaction's hot paths (its node cache and its
/// dirty pages): open addressing with linear probing and a multiplicative hash, so a lookup is a
/// multiply and usually one probe, where `Dictionary` runs SipHash for every access.
///
/// Page ids are below the high-water mark, so `UInt64.max` marks an empty slot and may not be
/// used as a key. Removal shifts later entries of the probe run back (no tombstones), so lookups
/// stay short however many removals happen.
struct PageMap<Value> {
    private static var empty: UInt64 { .max }
    private var keys: [UInt64]
    private var values: [Value?]
    private(set) var count = 0
    private var mask: Int

    init() {
        keys = []
        values = []
        mask = -1
    }

    var isEmpty: Bool { count == 0 }

    /// Sizes an empty map for `n` entries up front, so filling it does not regrow it step by step.
    mutating func reserve(_ n: Int) {
        guard count == 0, n > 0 else { return }
        var capacity = 16
        while capacity * 3 < n * 4 { capacity *= 2 }
        guard capacity > keys.count else { return }
        keys = [UInt64](repeating: Self.empty, count: capacity)
        values = [Value?](repeating: nil, count: capacity)
        mask = capacity - 1
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int {
        // Fibonacci hashing: the high bits of the product spread consecutive ids.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// The index holding `key`, or nil.
    @inline(__always)
    private func find(_ key: UInt64) -> Int? {
        guard count > 0 else { return nil }
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return i }
            if k == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }

    subscript(key: UInt64) -> Value? {
        get {
            guard let i = find(key) else { return nil }
            return values[i]
        }
        set {
            precondition(key != Self.empty, "PageMap: UInt64.max is not a page id")
            if let newValue { insert(key, newValue) } else { remove(key) }
        }
    }

    private mutating func insert(_ key: UInt64, _ value: Value) {
        if (count + 1) * 4 > keys.count * 3 { grow() }
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { values[i] = value; return }
            if k == Self.empty {
                keys[i] = key
                values[i] = value
                count += 1
                return
            }
            i = (i + 1) & mask
        }
    }

    private mutating func remove(_ key: UInt64) {
        guard var hole = find(key) else { return }
        keys[hole] = Self.empty
        values[hole] = nil
        count -= 1
        // Move back each later entry of the run whose home slot is not between the hole and it.
        var i = (hole + 1) & mask
        while keys[i] != Self.empty {
            let home = slot(keys[i])
            let distanceToHome = (i - home) & mask
            let distanceToHole = (i - hole) & mask
            if distanceToHome >= distanceToHole {
                keys[hole] = keys[i]
                values[hole] = values[i]
                keys[i] = Self.empty
                values[i] = nil
                hole = i
            }
            i = (i + 1) & mask
        }
    }

    private mutating func grow() {
        let capacity = Swift.max(16, keys.count * 2)
        var newKeys = [UInt64](repeating: Self.empty, count: capacity)
        var newValues = [Value?](repeating: nil, count: capacity)
        let newMask = capacity - 1
        // Values are moved (swapped with the new table's nils), not copied: no reference counting.
        newKeys.withUnsafeMutableBufferPointer { nk in
            newValues.withUnsafeMutableBufferPointer { nv in
                values.withUnsafeMutableBufferPointer { ov in
                    for (i, k) in keys.enumerated() where k != Self.empty {
                        var j = Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 32) & newMask
                        while nk[j] != Self.empty { j = (j + 1) & newMask }
                        nk[j] = k
                        swap(&nv[j], &ov[i])
                    }
                }
            }
        }
        keys = newKeys
        values = newValues
        mask = newMask
    }

    /// Empties the map, keeping its storage.
    mutating func removeAll() {
        guard count > 0 else { return }
        for i in keys.indices { keys[i] = Self.empty }
        for i in values.indices { values[i] = nil }
        count = 0
    }

    /// The keys in increasing order.
    func sortedKeys() -> [UInt64] {
        var result: [UInt64] = []
        result.reserveCapacity(count)
        for k in keys where k != Self.empty { result.append(k) }
        result.sort()
        return result
    }
}

/// A set of page ids (the freelist's double-free check): a bitmap for the ids of any real file,
/// which makes each test, insert and remove a shift and a mask, and `PageMap`'s hashing for ids
/// beyond it. It takes any id, `UInt64.max` included, since ids read from a damaged freelist
/// reach it; those never grow the bitmap past `bitmapLimit`.
struct PageSet {
    /// Ids below this live in the bitmap (64M pages: 256 GiB at 4 KiB pages; at most 8 MiB of bits).
    static let bitmapLimit: UInt64 = 1 << 26
    private var bits: [UInt64] = []
    private var bitCount = 0
    private var map = PageMap<Bool>()
    private var hasMax = false

    init() {}

    init(_ ids: some Sequence<UInt64>) {
        for id in ids { insert(id) }
    }

    var count: Int { bitCount + map.count + (hasMax ? 1 : 0) }

    @inline(__always)
    func contains(_ id: UInt64) -> Bool {
        if id < Self.bitmapLimit {
            let word = Int(id >> 6)
            return word < bits.count && bits[word] & (1 << (id & 63)) != 0
        }
        return id == .max ? hasMax : map[id] != nil
    }

    @inline(__always)
    mutating func insert(_ id: UInt64) {
        if id < Self.bitmapLimit {
            let word = Int(id >> 6)
            if word >= bits.count { bits.append(contentsOf: repeatElement(0, count: Swift.max(word + 1, bits.count * 2) - bits.count)) }
            let mask: UInt64 = 1 << (id & 63)
            if bits[word] & mask == 0 {
                bits[word] |= mask
                bitCount += 1
            }
        } else if id == .max {
            hasMax = true
        } else {
            map[id] = true
        }
    }

    @inline(__always)
    mutating func remove(_ id: UInt64) {
        if id < Self.bitmapLimit {
            let word = Int(id >> 6)
            let mask: UInt64 = 1 << (id & 63)
            if word < bits.count, bits[word] & mask != 0 {
                bits[word] &= ~mask
                bitCount -= 1
            }
        } else if id == .max {
            hasMax = false
        } else {
            map[id] = nil
        }
    }
}

/// A bucket's materialised nodes by page id, for one write transaction.
///
/// The table holds its nodes unowned: the transaction's list of nodes keeps every node it made
/// alive until it ends, and a bucket's nodes are reached only while its transaction is open
/// (every public entry point checks that first). Holding plain references makes the table a
/// trivial value: a lookup costs no retain or release, and freeing it costs no work per slot.
struct NodeTable {
    private struct Ref {
        unowned(unsafe) let node: Node
    }

    private var map = PageMap<Ref>()

    var isEmpty: Bool { map.isEmpty }

    /// Sizes an empty table for `n` nodes.
    mutating func reserve(_ n: Int) { map.reserve(n) }

    subscript(pgid: UInt64) -> Node? {
        @inline(__always) get { map[pgid]?.node }
        set { map[pgid] = newValue.map { Ref(node: $0) } }
    }
}
