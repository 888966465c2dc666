/// Which in-memory structure tracks free pages. The on-disk format is the same for both.
public enum FreelistType: String, Sendable, CaseIterable {
    /// A sorted array; allocation takes the lowest run that fits (first fit). bbolt's default.
    case array
    /// Runs grouped by length; allocation prefers a run of exactly the asked length.
    case hashmap
}

/// Free-page bookkeeping for the writer: pages free now, and pages freed by a transaction that
/// older readers may still see (pending), released once no such reader remains.
///
/// Not thread-safe: only the write transaction touches it.
final class Freelist {
    @exclusivity(unchecked) private var store: any FreePageStore
    /// Pages freed by each transaction not yet released, in increasing txid order (a writer's
    /// frees append to the last entry, without hashing).
    @exclusivity(unchecked) private(set) var pending: [(txid: UInt64, ids: [UInt64])] = []
    /// Every free or pending id, for double-free detection.
    @exclusivity(unchecked) private var cache = PageSet()

    init(type: FreelistType) {
        store = type == .array ? ArrayFreePages() : HashmapFreePages()
    }

    var freeCount: Int { store.count }
    var pendingCount: Int { pending.reduce(0) { $0 + $1.ids.count } }
    /// Free plus pending.
    var count: Int { freeCount + pendingCount }

    /// Allocates `n` contiguous free pages; 0 when there is no such run.
    func allocate(txid: UInt64, _ n: Int) -> UInt64 {
        guard n > 0, let start = store.allocate(n) else { return 0 }
        for id in start..<(start + UInt64(n)) { cache.remove(id) }
        return start
    }

    /// Marks a page (and its overflow) freed by `txid`. It becomes allocatable after `release`.
    func free(txid: UInt64, id: UInt64, overflow: UInt32) throws(BoltError) {
        guard id > 1 else { throw BoltError.corruptPage(id: id, reason: "cannot free a meta page") }
        // One page into the current transaction's entry: the common case, without ranges.
        if overflow == 0, let i = pending.indices.last, pending[i].txid == txid {
            if cache.contains(id) { throw BoltError.pageAlreadyFreed(id: id) }
            pending[i].ids.append(id)
            cache.insert(id)
            return
        }
        let last = id + UInt64(overflow)
        for p in id...last where cache.contains(p) { throw BoltError.pageAlreadyFreed(id: p) }
        // Appended in place: copying the list out and back would make a transaction's frees
        // quadratic in the number of pages it frees.
        if let i = pendingIndex(txid) {
            pending[i].ids.append(contentsOf: id...last)
        } else {
            let entry = (txid: txid, ids: Array(id...last))
            if let at = pending.firstIndex(where: { $0.txid > txid }) { pending.insert(entry, at: at) } else { pending.append(entry) }
        }
        for p in id...last { cache.insert(p) }
    }

    /// The index of `txid`'s entry in `pending` (searched from the newest).
    private func pendingIndex(_ txid: UInt64) -> Int? {
        var i = pending.count - 1
        while i >= 0 {
            if pending[i].txid == txid { return i }
            if pending[i].txid < txid { return nil }
            i -= 1
        }
        return nil
    }

    /// Moves pages freed by transactions up to and including `txid` to the free set.
    func release(upTo txid: UInt64) {
        var released: [UInt64] = []
        var n = 0
        while n < pending.count, pending[n].txid <= txid {
            released += pending[n].ids
            n += 1
        }
        guard n > 0 else { return }
        pending.removeFirst(n)
        if !released.isEmpty { store.add(released.sorted()) }
    }

    /// Gives back a run `allocate` returned, when its transaction rolls back.
    func returnRun(start: UInt64, count: Int) {
        let ids = Array(start..<(start + UInt64(count)))
        store.add(ids)
        for id in ids { cache.insert(id) }
    }

    /// Forgets the pages `txid` freed (rollback).
    func rollback(txid: UInt64) {
        guard let i = pendingIndex(txid) else { return }
        for id in pending.remove(at: i).ids { cache.remove(id) }
    }

    /// Whether `id` is free or pending.
    func isFreed(_ id: UInt64) -> Bool { cache.contains(id) }

    /// Replaces the free set with `ids` (as read from disk or rebuilt), keeping pending pages out.
    func reset(freeIDs ids: [UInt64]) {
        let pendingSet = Set(pending.lazy.flatMap(\.ids))
        let free = ids.filter { !pendingSet.contains($0) }.sorted()
        store.reset(free)
        cache = PageSet(free)
        for id in pendingSet { cache.insert(id) }
    }

    /// All free and pending ids, ascending: what a freelist page stores.
    func allIDs() -> [UInt64] {
        let free = store.sortedIDs()
        if pending.isEmpty { return free }
        // The free ids are sorted already: sort only the pending ones, then merge.
        var held: [UInt64] = []
        for entry in pending { held += entry.ids }
        held.sort()
        var all: [UInt64] = []
        all.reserveCapacity(free.count + held.count)
        var i = 0
        var j = 0
        while i < free.count && j < held.count {
            if free[i] <= held[j] { all.append(free[i]); i += 1 } else { all.append(held[j]); j += 1 }
        }
        all += free[i...]
        all += held[j...]
        return all
    }

    /// Bytes a freelist page needs for the current ids.
    func pageBytes() -> Int {
        let n = count
        return PageLayout.headerSize + 8 * (n >= PageLayout.maxElementCount ? n + 1 : n)
    }

    /// Writes the freelist into a page buffer of `capacity` bytes (header flags and count
    /// included; the rest zeroed).
    func write(into page: UnsafeMutableRawPointer, id: UInt64, overflow: UInt32, capacity: Int) {
        let ids = allIDs()
        let w = PageWriter(base: page)
        var start = PageLayout.headerSize
        if ids.count < PageLayout.maxElementCount {
            w.setHeader(id: id, flags: .freelist, count: ids.count, overflow: overflow)
        } else {
            w.setHeader(id: id, flags: .freelist, count: PageLayout.maxElementCount, overflow: overflow)
            w.setU64(start, UInt64(ids.count))
            start += 8
        }
        ids.withUnsafeBytes { raw in
            if !ids.isEmpty { (page + start).copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
        }
        let end = start + ids.count * 8
        precondition(end <= capacity, "freelist of \(ids.count) ids overflows its \(capacity)-byte pages")
        (page + end).initializeMemory(as: UInt8.self, repeating: 0, count: capacity - end)
    }
}

/// The free (not pending) page ids, in one of two shapes.
protocol FreePageStore {
    var count: Int { get }
    /// Removes and returns the first id of a run of `n` contiguous free ids.
    mutating func allocate(_ n: Int) -> UInt64?
    /// Adds sorted ids that are not already present.
    mutating func add(_ sortedIDs: [UInt64])
    mutating func reset(_ sortedIDs: [UInt64])
    func sortedIDs() -> [UInt64]
}

/// bbolt's array freelist: one sorted array, first fit (the lowest run that fits).
/// Stored in descending order so the common single-page allocation pops the lowest id in O(1).
struct ArrayFreePages: FreePageStore {
    private var descending: [UInt64] = []
    var count: Int { descending.count }

    mutating func allocate(_ n: Int) -> UInt64? {
        guard !descending.isEmpty else { return nil }
        if n == 1 { return descending.removeLast() }
        // Walk ascending ids (from the end) looking for n consecutive ones.
        var runEnd = descending.count - 1  // index of the run's lowest id
        var i = descending.count - 1
        while i >= 0 {
            if i < runEnd && descending[i] != descending[i + 1] + 1 { runEnd = i }
            if runEnd - i + 1 == n {
                let start = descending[runEnd]
                descending.removeSubrange(i...runEnd)
                return start
            }
            i -= 1
        }
        return nil
    }

    mutating func add(_ sortedIDs: [UInt64]) {
        guard !sortedIDs.isEmpty else { return }
        var merged: [UInt64] = []
        merged.reserveCapacity(descending.count + sortedIDs.count)
        var i = 0
        var j = sortedIDs.count - 1
        while i < descending.count && j >= 0 {
            if descending[i] > sortedIDs[j] { merged.append(descending[i]); i += 1 } else { merged.append(sortedIDs[j]); j -= 1 }
        }
        merged += descending[i...]
        while j >= 0 { merged.append(sortedIDs[j]); j -= 1 }
        descending = merged
    }

    mutating func reset(_ sortedIDs: [UInt64]) { descending = sortedIDs.reversed() }
    func sortedIDs() -> [UInt64] { descending.reversed() }
}

/// bbolt's hashmap freelist: runs indexed by start, by end and by length. A run of exactly the
/// asked length is taken in O(1); otherwise the smallest longer run is split. `bySize` keeps
/// starts in stacks with lazy deletion (an entry is live only while `byStart` agrees), so merges
/// never search it.
struct HashmapFreePages: FreePageStore {
    private var byStart: [UInt64: UInt64] = [:]  // start → length
    private var byEnd: [UInt64: UInt64] = [:]  // last id → length
    private var bySize: [UInt64: [UInt64]] = [:]  // length → starts (may hold stale entries)
    private(set) var count = 0

    mutating func allocate(_ n: Int) -> UInt64? {
        let size = UInt64(n)
        if let start = popLive(size) {
            removeRun(start: start, size: size)
            return start
        }
        // No exact fit: split the smallest longer run.
        for larger in bySize.keys.filter({ $0 > size }).sorted() {
            guard let start = popLive(larger) else { continue }
            removeRun(start: start, size: larger)
            addRun(start: start + size, size: larger - size)
            return start
        }
        return nil
    }

    /// Pops a live start of a run of `size`, dropping stale entries on the way.
    private mutating func popLive(_ size: UInt64) -> UInt64? {
        while let start = bySize[size]?.popLast() {
            if byStart[start] == size {
                // Keep the entry until removeRun, which only touches the maps.
                return start
            }
        }
        bySize[size] = nil
        return nil
    }

    mutating func add(_ sortedIDs: [UInt64]) {
        for id in sortedIDs { addMerging(id) }
    }

    mutating func reset(_ sortedIDs: [UInt64]) {
        byStart = [:]
        byEnd = [:]
        bySize = [:]
        count = 0
        var i = 0
        while i < sortedIDs.count {
            var j = i
            while j + 1 < sortedIDs.count && sortedIDs[j + 1] == sortedIDs[j] + 1 { j += 1 }
            addRun(start: sortedIDs[i], size: UInt64(j - i + 1))
            i = j + 1
        }
    }

    func sortedIDs() -> [UInt64] {
        var all: [UInt64] = []
        all.reserveCapacity(count)
        for start in byStart.keys.sorted() { all += (start..<(start + byStart[start]!)) }
        return all
    }

    private mutating func addMerging(_ id: UInt64) {
        if byStart[id] != nil { return }
        var start = id
        var size: UInt64 = 1
        if id > 0, let leftSize = byEnd[id - 1] {
            let leftStart = id - leftSize
            removeRun(start: leftStart, size: leftSize)
            start = leftStart
            size += leftSize
        }
        if let rightSize = byStart[id + 1] {
            removeRun(start: id + 1, size: rightSize)
            size += rightSize
        }
        addRun(start: start, size: size)
    }

    private mutating func addRun(start: UInt64, size: UInt64) {
        guard size > 0 else { return }
        byStart[start] = size
        byEnd[start + size - 1] = size
        bySize[size, default: []].append(start)
        count += Int(size)
    }

    private mutating func removeRun(start: UInt64, size: UInt64) {
        byStart[start] = nil
        byEnd[start + size - 1] = nil
        count -= Int(size)
    }
}
