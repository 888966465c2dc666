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
    private var store: any FreePageStore
    /// txid → pages that transaction freed.
    private(set) var pending: [UInt64: [UInt64]] = [:]
    /// Every free or pending id, for double-free detection.
    private var cache: Set<UInt64> = []

    init(type: FreelistType) {
        store = type == .array ? ArrayFreePages() : HashmapFreePages()
    }

    var freeCount: Int { store.count }
    var pendingCount: Int { pending.values.reduce(0) { $0 + $1.count } }
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
        var ids = pending[txid] ?? []
        for p in id...(id + UInt64(overflow)) {
            if cache.contains(p) { throw BoltError.pageAlreadyFreed(id: p) }
            ids.append(p)
            cache.insert(p)
        }
        pending[txid] = ids
    }

    /// Moves pages freed by transactions up to and including `txid` to the free set.
    func release(upTo txid: UInt64) {
        var released: [UInt64] = []
        for (tid, ids) in pending where tid <= txid {
            released += ids
            pending[tid] = nil
        }
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
        guard let ids = pending.removeValue(forKey: txid) else { return }
        for id in ids { cache.remove(id) }
    }

    /// Whether `id` is free or pending.
    func isFreed(_ id: UInt64) -> Bool { cache.contains(id) }

    /// Replaces the free set with `ids` (as read from disk or rebuilt), keeping pending pages out.
    func reset(freeIDs ids: [UInt64]) {
        let pendingSet = Set(pending.values.joined())
        let free = ids.filter { !pendingSet.contains($0) }.sorted()
        store.reset(free)
        cache = Set(free).union(pendingSet)
    }

    /// All free and pending ids, ascending: what a freelist page stores.
    func allIDs() -> [UInt64] {
        var all = store.sortedIDs()
        if !pending.isEmpty {
            all += pending.values.joined()
            all.sort()
        }
        return all
    }

    /// Bytes a freelist page needs for the current ids.
    func pageBytes() -> Int {
        let n = count
        return PageLayout.headerSize + 8 * (n >= PageLayout.maxElementCount ? n + 1 : n)
    }

    /// Writes the freelist into a page buffer (header flags and count included).
    func write(into page: UnsafeMutableRawPointer, id: UInt64, overflow: UInt32) {
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

/// bbolt's array freelist: one sorted array, first fit.
struct ArrayFreePages: FreePageStore {
    private var ids: [UInt64] = []
    var count: Int { ids.count }

    mutating func allocate(_ n: Int) -> UInt64? {
        guard !ids.isEmpty else { return nil }
        var initial: UInt64 = 0
        var previous: UInt64 = 0
        for (i, id) in ids.enumerated() {
            // Reset the run when this id does not follow the previous one.
            if previous == 0 || id - previous != 1 { initial = id }
            if id - initial + 1 == UInt64(n) {
                ids.removeSubrange((i + 1 - n)...i)
                return initial
            }
            previous = id
        }
        return nil
    }

    mutating func add(_ sortedIDs: [UInt64]) {
        guard !sortedIDs.isEmpty else { return }
        var merged: [UInt64] = []
        merged.reserveCapacity(ids.count + sortedIDs.count)
        var i = 0, j = 0
        while i < ids.count && j < sortedIDs.count {
            if ids[i] < sortedIDs[j] { merged.append(ids[i]); i += 1 } else { merged.append(sortedIDs[j]); j += 1 }
        }
        merged += ids[i...]
        merged += sortedIDs[j...]
        ids = merged
    }

    mutating func reset(_ sortedIDs: [UInt64]) { ids = sortedIDs }
    func sortedIDs() -> [UInt64] { ids }
}

/// bbolt's hashmap freelist: runs indexed by start, by end and by length.
struct HashmapFreePages: FreePageStore {
    private var byStart: [UInt64: UInt64] = [:]  // start → length
    private var byEnd: [UInt64: UInt64] = [:]  // last id → length
    private var bySize: [UInt64: Set<UInt64>] = [:]  // length → starts
    private(set) var count = 0

    mutating func allocate(_ n: Int) -> UInt64? {
        let size = UInt64(n)
        if let starts = bySize[size], let start = starts.min() {
            removeRun(start: start, size: size)
            return start
        }
        // No exact fit: split the smallest larger run (deterministic, unlike Go's map order).
        guard let larger = bySize.keys.filter({ $0 > size }).min(), let start = bySize[larger]!.min() else { return nil }
        removeRun(start: start, size: larger)
        addRun(start: start + size, size: larger - size)
        return start
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
        bySize[size, default: []].insert(start)
        count += Int(size)
    }

    private mutating func removeRun(start: UInt64, size: UInt64) {
        byStart[start] = nil
        byEnd[start + size - 1] = nil
        bySize[size]?.remove(start)
        if bySize[size]?.isEmpty == true { bySize[size] = nil }
        count -= Int(size)
    }
}
