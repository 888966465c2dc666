/// A bucket path: top-level bucket name, then nested bucket names.
public typealias BucketPath = [[UInt8]]

/// The storage engine the MVCC layer sees: named buckets (nested allowed) of ordered keys,
/// read transactions that run concurrently with one write transaction, size accounting, a hot
/// backup stream, defragmentation.
///
/// Conformances: `BoltBackend` (KeelBolt), `LMDBBackend` (LMDB), and `CrossCheckedBackend`,
/// which runs two backends and fails loudly on the first difference.
public protocol Backend: AnyObject, Sendable {
    /// "bolt", "lmdb", …
    var kind: String { get }
    /// The largest key every operation accepts.
    var maxKeySize: Int { get }
    /// A read transaction on the latest committed state.
    func beginRead() throws(BackendError) -> any BackendReadTx
    /// The write transaction; waits while another is open.
    func beginWrite() throws(BackendError) -> any BackendWriteTx
    /// Bytes the store occupies on disk.
    func size() throws(BackendError) -> Int64
    /// Bytes in use (size minus free pages).
    func sizeInUse() throws(BackendError) -> Int64
    /// Streams a consistent image of the store (a file the same engine can open) to `sink`,
    /// while writers continue. Returns the bytes streamed.
    @discardableResult
    func backup(to sink: (UnsafeRawBufferPointer) throws(BackendError) -> Void) throws(BackendError) -> Int64
    /// Rewrites the store compactly. No transaction may be open.
    func defragment() throws(BackendError)
    /// Closes the store. Transactions must have ended.
    func close() throws(BackendError)
}

/// A read transaction. Buffers passed to callbacks are valid only during the call.
public protocol BackendReadTx: AnyObject {
    /// The child buckets of `path` ([] for the top level) in byte order.
    func buckets(in path: BucketPath) throws(BackendError) -> [[UInt8]]
    /// A handle on the bucket at `path`.
    /// - Throws: `.bucketNotFound`.
    func bucket(_ path: BucketPath) throws(BackendError) -> any BackendBucket
    /// Ends the transaction (idempotent).
    func end()
}

/// The write transaction. Changes are visible to it at once and to others after `commit`.
public protocol BackendWriteTx: BackendReadTx {
    /// Creates the bucket at `path` (its parent must exist).
    /// - Throws: `.bucketExists`, `.incompatibleValue`, `.bucketNotFound` (parent), `.keyRequired`, `.keyTooLarge`.
    func createBucket(_ path: BucketPath) throws(BackendError)
    /// Deletes the bucket at `path` and everything in it.
    func deleteBucket(_ path: BucketPath) throws(BackendError)
    /// Makes the changes durable and ends the transaction.
    func commit() throws(BackendError)
    /// Drops the changes and ends the transaction.
    func rollback()
}

/// One bucket inside a transaction. Plain keys only: nested buckets are listed by `buckets(in:)`.
public protocol BackendBucket: AnyObject {
    /// The value of `key`, valid during `body`; nil when absent.
    func get<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws(BackendError) -> T) throws(BackendError) -> T
    /// Sets `key` (1…maxKeySize bytes) to `value`.
    /// - Throws: `.incompatibleValue` when a nested bucket has that name, `.readOnly`, `.keyRequired`, `.keyTooLarge`.
    func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BackendError)
    /// `put` for a key above every key in the bucket (etcd's `UnsafeSeqPut`: revision keys);
    /// engines may pack pages fuller for it (bbolt's 0.9 fill, as etcd sets).
    func putSequential(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BackendError)
    /// Removes `key`; no error when absent.
    func delete(_ key: UnsafeRawBufferPointer) throws(BackendError)
    /// Visits keys in `[start, end)` (`end` nil: to the last key) in ascending order, or
    /// descending from the last key below `end` when `reverse`; at most `limit` (0: no limit).
    /// `body` returns false to stop.
    func range(from start: UnsafeRawBufferPointer, to end: UnsafeRawBufferPointer?, limit: Int, reverse: Bool,
               _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(BackendError) -> Bool) throws(BackendError)
}

extension BackendBucket {
    public func putSequential(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BackendError) { try put(key, value) }

    public func putSequential(_ key: [UInt8], _ value: [UInt8]) throws(BackendError) {
        try withBackendBytes(key) { k throws(BackendError) in try withBackendBytes(value) { v throws(BackendError) in try putSequential(k, v) } }
    }

    /// A copy of the value of `key`.
    public func get(_ key: [UInt8]) throws(BackendError) -> [UInt8]? {
        try withBackendBytes(key) { k throws(BackendError) in try get(k) { v throws(BackendError) in v.map { Array($0) } } }
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) throws(BackendError) {
        try withBackendBytes(key) { k throws(BackendError) in try withBackendBytes(value) { v throws(BackendError) in try put(k, v) } }
    }

    public func delete(_ key: [UInt8]) throws(BackendError) {
        try withBackendBytes(key) { k throws(BackendError) in try delete(k) }
    }

    /// Copies of the entries `range` visits.
    public func entries(from start: [UInt8] = [], to end: [UInt8]? = nil, limit: Int = 0, reverse: Bool = false) throws(BackendError) -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        try withBackendBytes(start) { s throws(BackendError) in
            if let end {
                try withBackendBytes(end) { e throws(BackendError) in
                    try range(from: s, to: e, limit: limit, reverse: reverse) { k, v throws(BackendError) in result.append((Array(k), Array(v))); return true }
                }
            } else {
                try range(from: s, to: nil, limit: limit, reverse: reverse) { k, v throws(BackendError) in result.append((Array(k), Array(v))); return true }
            }
        }
        return result
    }
}

/// Calls `body` with the bytes of `array`, keeping the typed error.
@inline(__always)
public func withBackendBytes<T>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(BackendError) -> T) throws(BackendError) -> T {
    let result: Result<T, BackendError> = array.withUnsafeBytes { raw in
        do throws(BackendError) { return .success(try body(raw)) } catch { return .failure(error) }
    }
    return try result.get()
}

/// Unsigned byte-wise comparison (-1, 0, 1).
@inline(__always)
func compareRaw(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
    let n = min(a.count, b.count)
    if n > 0 {
        let r = memcmp(a.baseAddress!, b.baseAddress!, n)
        if r != 0 { return r < 0 ? -1 : 1 }
    }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

/// A cursor position for `walkRange`: a key and its value, or a nil value for an entry the
/// range skips (a nested bucket).
typealias RangeEntry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?)

/// The range semantics every `BackendBucket` shares, over an engine's cursor moves: keys in
/// `[start, end)` ascending, or descending from the last key below `end`; at most `limit`
/// (0: no limit) entries with values; `body` returns false to stop.
func walkRange(from start: UnsafeRawBufferPointer, to end: UnsafeRawBufferPointer?, limit: Int, reverse: Bool,
               seek: (UnsafeRawBufferPointer) throws(BackendError) -> RangeEntry?,
               first: () throws(BackendError) -> RangeEntry?,
               last: () throws(BackendError) -> RangeEntry?,
               next: () throws(BackendError) -> RangeEntry?,
               prev: () throws(BackendError) -> RangeEntry?,
               _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(BackendError) -> Bool) throws(BackendError) {
    var visited = 0
    var entry: RangeEntry?
    if reverse {
        if let end {
            entry = try seek(end) == nil ? try last() : try prev()
        } else {
            entry = try last()
        }
    } else {
        entry = start.count == 0 ? try first() : try seek(start)
    }
    while let e = entry {
        if reverse {
            if compareRaw(e.key, start) < 0 { break }
        } else if let end, compareRaw(e.key, end) >= 0 {
            break
        }
        if let value = e.value {
            if !(try body(e.key, value)) { return }
            visited += 1
            if limit > 0 && visited >= limit { return }
        }
        entry = reverse ? try prev() : try next()
    }
}

#if canImport(Glibc)
import Glibc
#endif
