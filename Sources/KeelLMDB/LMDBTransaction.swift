import CLMDB
import KeelIO

/// A read or write transaction on an `LMDBEnvironment`.
///
/// Values returned as `UnsafeRawBufferPointer` point into the map: valid until the transaction
/// ends, and in a write transaction only until its next write. Use one thread at a time.
public final class LMDBTransaction {
    public let environment: LMDBEnvironment
    public let writable: Bool
    private var txn: OpaquePointer?
    /// Operations of a write transaction, replayed after the map grows.
    private var log: [Operation] = []
    private var replaying = false
    /// Bucket changes of this write transaction, applied to the environment's caches at commit.
    private var createdHandles: [String: MDB_dbi] = [:]
    private var droppedNames: Set<String> = []
    private var childAdds: [String: Set<[UInt8]>] = [:]
    private var childRemoves: [String: Set<[UInt8]>] = [:]
    private var registryCreated: MDB_dbi?

    enum Operation {
        /// Key and value bytes live in `logBytes` at `offset`.
        case put(bucket: LMDBBucketHandle, offset: Int, keyCount: Int, valueCount: Int)
        case delete(bucket: LMDBBucketHandle, offset: Int, keyCount: Int)
        case createBucket(path: [[UInt8]])
        case deleteBucket(path: [[UInt8]])
    }
    /// The bytes of logged puts and deletes, in one growing buffer (no allocation per operation).
    private var logBytes: [UInt8] = []
    /// Bumped whenever a bucket is created or deleted, so handles re-read their child names.
    private(set) var bucketsVersion = 0

    init(environment: LMDBEnvironment, txn: OpaquePointer, writable: Bool) {
        self.environment = environment
        self.txn = txn
        self.writable = writable
        self.owner = pthread_self()
    }

    /// The thread that began the transaction. LMDB's writer lock is a mutex owned by that
    /// thread: ending a write transaction anywhere else leaves the lock held and the next
    /// writer waits forever, so debug builds stop at once on that mistake.
    private let owner: pthread_t

    private func assertOwner(_ what: StaticString) {
        assert(!writable || pthread_equal(owner, pthread_self()) != 0,
               "LMDB write transaction ended (\(what)) on a thread other than the one that began it")
    }

    deinit { rollback() }

    private func live() throws(LMDBError) -> OpaquePointer {
        guard let txn else { throw LMDBError.txClosed }
        return txn
    }

    // MARK: Buckets

    /// The database handle of the bucket at `path`.
    public func bucket(_ path: [[UInt8]]) throws(LMDBError) -> MDB_dbi {
        let txn = try live()
        guard !path.isEmpty else { throw LMDBError.bucketNotFound(path: "/") }
        let name = BucketName.name(path)
        if writable {
            if let h = createdHandles[name] { return h }
            if droppedNames.contains(name) { throw LMDBError.bucketNotFound(path: BucketName.display(path)) }
        }
        guard let handle = environment.state.withLock({ $0.handles[name] }) else {
            throw LMDBError.bucketNotFound(path: BucketName.display(path))
        }
        // A handle exists env-wide; make sure the bucket exists in this snapshot.
        if !writable {
            var flags: UInt32 = 0
            let exists = mdb_dbi_flags(txn, handle, &flags) == 0 ? try registryContains(name) : false
            if !exists { throw LMDBError.bucketNotFound(path: BucketName.display(path)) }
        }
        return handle
    }

    private func registryHandle() -> MDB_dbi? {
        registryCreated ?? environment.state.withLock { $0.registry }
    }

    private func registryContains(_ name: String) throws(LMDBError) -> Bool {
        guard let registry = registryHandle() else { return false }
        return try withBytes(Array(name.utf8)) { raw throws(LMDBError) in
            var key = MDB_val(mv_size: raw.count, mv_data: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            var data = MDB_val()
            let rc = mdb_get(try live(), registry, &key, &data)
            if rc == MDB_NOTFOUND || rc == EINVAL { return false }
            try check("mdb_get registry", rc)
            return true
        }
    }

    /// Whether a bucket exists at `path`.
    public func bucketExists(_ path: [[UInt8]]) throws(LMDBError) -> Bool {
        guard !path.isEmpty else { return true }
        let name = BucketName.name(path)
        if writable {
            if createdHandles[name] != nil { return true }
            if droppedNames.contains(name) { return false }
        }
        return try registryContains(name)
    }

    /// The child buckets of `path` ([] for the top level), in byte order, as this transaction sees them.
    public func buckets(in path: [[UInt8]]) throws(LMDBError) -> [[UInt8]] {
        let txn = try live()
        if !path.isEmpty, !(try bucketExists(path)) { throw LMDBError.bucketNotFound(path: BucketName.display(path)) }
        guard let registry = registryHandle() else { return [] }
        let prefix = path.isEmpty ? "" : BucketName.name(path) + "/"
        var cursor: OpaquePointer?
        try check("mdb_cursor_open registry", mdb_cursor_open(txn, registry, &cursor))
        defer { mdb_cursor_close(cursor) }
        var names: [[UInt8]] = []
        var prefixBytes = Array(prefix.utf8)
        var key = MDB_val()
        var data = MDB_val()
        var rc: Int32 = prefixBytes.withUnsafeMutableBytes { raw in
            key = MDB_val(mv_size: raw.count, mv_data: raw.baseAddress)
            return raw.count == 0 ? mdb_cursor_get(cursor, &key, &data, MDB_FIRST) : mdb_cursor_get(cursor, &key, &data, MDB_SET_RANGE)
        }
        while rc == 0 {
            let name = Array(UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size))
            guard name.starts(with: prefixBytes) else { break }
            let rest = name.dropFirst(prefixBytes.count)
            if !rest.contains(UInt8(ascii: "/")) {
                names.append(BucketName.path(String(decoding: rest, as: UTF8.self))[0])
            }
            rc = mdb_cursor_get(cursor, &key, &data, MDB_NEXT)
        }
        if rc != 0 && rc != MDB_NOTFOUND { try check("mdb_cursor_get registry", rc) }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Whether `parent` has a child bucket named `name`, from the writer's caches.
    private func hasChildBucket(_ parent: [[UInt8]], _ name: [UInt8]) -> Bool {
        let parentName = BucketName.name(parent)
        if childAdds[parentName]?.contains(name) == true { return true }
        if childRemoves[parentName]?.contains(name) == true { return false }
        return environment.state.withLock { $0.children[parentName]?.contains(name) ?? false }
    }

    /// Creates the bucket at `path`; its parent must exist.
    public func createBucket(_ path: [[UInt8]]) throws(LMDBError) {
        try apply(.createBucket(path: path))
    }

    /// Deletes the bucket at `path` and everything under it.
    public func deleteBucket(_ path: [[UInt8]]) throws(LMDBError) {
        try apply(.deleteBucket(path: path))
    }

    // MARK: Keys

    /// The value of `key` in the bucket, or nil. Valid until the transaction ends or writes again.
    public func get(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
        let txn = try live()
        guard key.count > 0 else { return nil }
        guard key.count <= environment.maxKeySize else { return nil }
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(txn, dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try check("mdb_get", rc)
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    /// A handle on the bucket at `path` for `get`, `put`, `delete` and cursors.
    public func openBucket(_ path: [[UInt8]]) throws(LMDBError) -> LMDBBucketHandle {
        let dbi = try bucket(path)
        return LMDBBucketHandle(path: path, name: BucketName.name(path), dbi: dbi)
    }

    /// The value of `key`, or nil. Valid until the transaction ends or writes again.
    public func get(_ bucket: LMDBBucketHandle, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
        try get(bucket.dbi, key)
    }

    /// Whether a put or delete of `key` would hit a nested bucket of that name.
    private func namesChildBucket(_ bucket: LMDBBucketHandle, _ key: UnsafeRawBufferPointer) -> Bool {
        if bucket.childrenVersion != bucketsVersion || bucket.children == nil {
            var names = environment.state.withLock { $0.children[bucket.name] ?? [] }
            if let added = childAdds[bucket.name] { names.formUnion(added) }
            if let removed = childRemoves[bucket.name] { names.subtract(removed) }
            bucket.children = names
            bucket.childrenVersion = bucketsVersion
        }
        guard let children = bucket.children, !children.isEmpty else { return false }
        return children.contains(Array(key))
    }

    private func logBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer?) -> Int {
        let offset = logBytes.count
        logBytes.append(contentsOf: a)
        if let b { logBytes.append(contentsOf: b) }
        return offset
    }

    /// Sets `key` to `value`.
    public func put(_ bucket: LMDBBucketHandle, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(LMDBError) {
        guard writable else { throw LMDBError.readOnly }
        if key.count == 0 { throw LMDBError.keyRequired }
        if key.count > environment.maxKeySize { throw LMDBError.keyTooLarge(size: key.count, max: environment.maxKeySize) }
        if namesChildBucket(bucket, key) { throw LMDBError.incompatibleValue(path: BucketName.display(bucket.path + [Array(key)])) }
        let offset = logBytes(key, value)
        log.append(.put(bucket: bucket, offset: offset, keyCount: key.count, valueCount: value.count))
        try retryingMapFull { () throws(LMDBError) in try rawPut(bucket.dbi, key, value) }
    }

    private func rawPut(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(LMDBError) {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        try check("mdb_put", mdb_put(try live(), dbi, &k, &v, 0))
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    public func delete(_ bucket: LMDBBucketHandle, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> Bool {
        guard writable else { throw LMDBError.readOnly }
        if key.count == 0 || key.count > environment.maxKeySize { return false }
        if namesChildBucket(bucket, key) { throw LMDBError.incompatibleValue(path: BucketName.display(bucket.path + [Array(key)])) }
        let offset = logBytes(key, nil)
        log.append(.delete(bucket: bucket, offset: offset, keyCount: key.count))
        var found = false
        try retryingMapFull { () throws(LMDBError) in found = try rawDelete(bucket.dbi, key) }
        return found
    }

    private func rawDelete(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        let rc = mdb_del(try live(), dbi, &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try check("mdb_del", rc)
        return true
    }

    /// A cursor over the bucket's keys.
    public func cursor(_ dbi: MDB_dbi) throws(LMDBError) -> LMDBCursor {
        var cursor: OpaquePointer?
        try check("mdb_cursor_open", mdb_cursor_open(try live(), dbi, &cursor))
        return LMDBCursor(cursor: cursor!, transaction: self)
    }

    // MARK: Applying operations (also used for replay)

    private func apply(_ op: Operation) throws(LMDBError) {
        guard writable else { throw LMDBError.readOnly }
        _ = try live()
        switch op {
        case let .createBucket(path):
            try validateNewBucket(path)
            log.append(op)
            try retryingMapFull { () throws(LMDBError) in try rawCreateBucket(path) }
        case let .deleteBucket(path):
            guard !path.isEmpty, try bucketExists(path) else { throw LMDBError.bucketNotFound(path: BucketName.display(path)) }
            log.append(op)
            try retryingMapFull { () throws(LMDBError) in try rawDeleteBucket(path) }
        case .put, .delete:
            preconditionFailure("put and delete are applied directly")
        }
    }

    private func validateNewBucket(_ path: [[UInt8]]) throws(LMDBError) {
        guard let last = path.last, !path.contains(where: { $0.isEmpty }) else { throw LMDBError.keyRequired }
        let name = BucketName.name(path)
        if name.hasPrefix("__keel") { throw LMDBError.bucketNameReserved(name: String(decoding: path[0], as: UTF8.self)) }
        if name.utf8.count > environment.maxKeySize { throw LMDBError.bucketPathTooLong(path: BucketName.display(path), bytes: name.utf8.count) }
        if last.count > environment.maxKeySize { throw LMDBError.keyTooLarge(size: last.count, max: environment.maxKeySize) }
        let parent = Array(path.dropLast())
        if !parent.isEmpty {
            guard try bucketExists(parent) else { throw LMDBError.bucketNotFound(path: BucketName.display(parent)) }
        }
        if try bucketExists(path) { throw LMDBError.bucketExists(path: BucketName.display(path)) }
        if !parent.isEmpty {
            let parentDbi = try bucket(parent)
            let existing = try withBytes(last) { raw throws(LMDBError) in try get(parentDbi, raw) }
            if existing != nil { throw LMDBError.incompatibleValue(path: BucketName.display(path)) }
        }
    }

    private func ensureRegistry() throws(LMDBError) -> MDB_dbi {
        if let r = registryHandle() { return r }
        var dbi: MDB_dbi = 0
        try check("mdb_dbi_open registry", mdb_dbi_open(try live(), BucketName.registry, UInt32(MDB_CREATE), &dbi))
        registryCreated = dbi
        return dbi
    }

    private func rawCreateBucket(_ path: [[UInt8]]) throws(LMDBError) {
        let txn = try live()
        let registry = try ensureRegistry()
        let name = BucketName.name(path)
        var dbi: MDB_dbi = 0
        let rc = mdb_dbi_open(txn, name, UInt32(MDB_CREATE), &dbi)
        if rc == MDB_DBS_FULL { throw LMDBError.tooManyBuckets(max: environment.options.maxBuckets) }
        try check("mdb_dbi_open '\(name)'", rc)
        try withBytes(Array(name.utf8)) { raw throws(LMDBError) in
            var k = MDB_val(mv_size: raw.count, mv_data: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            var v = MDB_val(mv_size: 0, mv_data: nil)
            try check("mdb_put registry", mdb_put(txn, registry, &k, &v, 0))
        }
        createdHandles[name] = dbi
        droppedNames.remove(name)
        bucketsVersion += 1
        let parentName = BucketName.name(Array(path.dropLast()))
        childAdds[parentName, default: []].insert(path.last!)
        childRemoves[parentName]?.remove(path.last!)
    }

    private func rawDeleteBucket(_ path: [[UInt8]]) throws(LMDBError) {
        for child in try buckets(in: path) { try rawDeleteBucket(path + [child]) }
        let txn = try live()
        let name = BucketName.name(path)
        let dbi = try bucket(path)
        // Empty it rather than delete it: deleting closes the handle for every transaction at
        // once, while readers of older snapshots may still be using it. The empty named database
        // stays behind and is reused if a bucket of that name is created again.
        try check("mdb_drop '\(name)'", mdb_drop(txn, dbi, 0))
        try withBytes(Array(name.utf8)) { raw throws(LMDBError) in
            var k = MDB_val(mv_size: raw.count, mv_data: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            let rc = mdb_del(txn, try ensureRegistry(), &k, nil)
            if rc != MDB_NOTFOUND { try check("mdb_del registry", rc) }
        }
        createdHandles[name] = nil
        droppedNames.insert(name)
        bucketsVersion += 1
        let parentName = BucketName.name(Array(path.dropLast()))
        childRemoves[parentName, default: []].insert(path.last!)
        childAdds[parentName]?.remove(path.last!)
    }

    /// Runs a write; on MDB_MAP_FULL aborts, grows the map and replays the whole transaction.
    private func retryingMapFull(_ body: () throws(LMDBError) -> Void) throws(LMDBError) {
        do throws(LMDBError) {
            try body()
        } catch {
            guard error.code == MDB_MAP_FULL, !replaying else { throw error }
            try growAndReplay()
        }
    }

    private func growAndReplay() throws(LMDBError) {
        while true {
            resetToNewTxn(abort: true)
            try environment.growMap()
            txn = try environment.beginWriteTxn()
            do throws(LMDBError) {
                try replay()
                return
            } catch {
                if error.code != MDB_MAP_FULL { throw error }
            }
        }
    }

    private func resetToNewTxn(abort: Bool) {
        if abort, let txn { mdb_txn_abort(txn) }
        txn = nil
        createdHandles = [:]
        droppedNames = []
        childAdds = [:]
        childRemoves = [:]
        registryCreated = nil
        bucketsVersion += 1
    }

    private func replay() throws(LMDBError) {
        replaying = true
        defer { replaying = false }
        let ops = log
        for op in ops {
            switch op {
            case let .put(handle, offset, keyCount, valueCount):
                handle.dbi = try bucket(handle.path)
                let bytes = logBytes
                try withBytes(bytes) { raw throws(LMDBError) in
                    try rawPut(handle.dbi, UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + keyCount)]),
                               UnsafeRawBufferPointer(rebasing: raw[(offset + keyCount)..<(offset + keyCount + valueCount)]))
                }
            case let .delete(handle, offset, keyCount):
                handle.dbi = try bucket(handle.path)
                let bytes = logBytes
                _ = try withBytes(bytes) { raw throws(LMDBError) in
                    try rawDelete(handle.dbi, UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + keyCount)]))
                }
            case let .createBucket(path):
                try rawCreateBucket(path)
            case let .deleteBucket(path):
                try rawDeleteBucket(path)
            }
        }
    }

    // MARK: End

    /// Commits (a read transaction just ends; its opened handles stay valid).
    public func commit() throws(LMDBError) {
        guard let txn else { throw LMDBError.txClosed }
        assertOwner("commit")
        if !writable {
            self.txn = nil
            _ = mdb_txn_commit(txn)
            environment.endReader()
            return
        }
        var rc = mdb_txn_commit(txn)
        self.txn = nil
        if rc == MDB_MAP_FULL {
            // The commit itself ran out of room: grow, replay, commit again.
            resetToNewTxn(abort: false)
            do throws(LMDBError) {
                try growAndReplay()
                rc = mdb_txn_commit(self.txn!)
                self.txn = nil
            } catch {
                if let t = self.txn { mdb_txn_abort(t) }
                self.txn = nil
                environment.endWriter()
                throw error
            }
        }
        if rc != 0 {
            resetToNewTxn(abort: false)
            environment.endWriter()
            try check("mdb_txn_commit", rc)
        }
        // Publish bucket changes.
        environment.state.withLock { s in
            if let r = registryCreated { s.registry = r }
            for (name, h) in createdHandles { s.handles[name] = h }
            for (parent, names) in childRemoves { s.children[parent]?.subtract(names) }
            for (parent, names) in childAdds { s.children[parent, default: []].formUnion(names) }
        }
        log = []
        logBytes = []
        createdHandles = [:]
        droppedNames = []
        childAdds = [:]
        childRemoves = [:]
        environment.endWriter()
    }

    /// Ends the transaction, dropping any changes. Safe to call more than once.
    public func rollback() {
        guard let txn else { return }
        assertOwner("rollback")
        if writable {
            resetToNewTxnAfterAbort(txn)
            environment.endWriter()
        } else {
            self.txn = nil
            mdb_txn_abort(txn)
            environment.endReader()
        }
        log = []
        logBytes = []
    }

    private func resetToNewTxnAfterAbort(_ t: OpaquePointer) {
        mdb_txn_abort(t)
        txn = nil
        resetToNewTxn(abort: false)
    }
}

/// A cursor over one bucket. Keys and values point into the map (see `LMDBTransaction`).
public final class LMDBCursor {
    private let cursor: OpaquePointer
    private let transaction: LMDBTransaction

    init(cursor: OpaquePointer, transaction: LMDBTransaction) {
        self.cursor = cursor
        self.transaction = transaction
    }

    deinit { mdb_cursor_close(cursor) }

    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    private func get(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) throws(LMDBError) -> Entry? {
        var k = MDB_val(mv_size: key?.count ?? 0, mv_data: UnsafeMutableRawPointer(mutating: key?.baseAddress))
        var v = MDB_val()
        let rc = mdb_cursor_get(cursor, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try check("mdb_cursor_get", rc)
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    public func first() throws(LMDBError) -> Entry? { try get(MDB_FIRST) }
    public func last() throws(LMDBError) -> Entry? { try get(MDB_LAST) }
    public func next() throws(LMDBError) -> Entry? { try get(MDB_NEXT) }
    public func prev() throws(LMDBError) -> Entry? { try get(MDB_PREV) }
    /// The first key >= `key`.
    public func seek(_ key: UnsafeRawBufferPointer) throws(LMDBError) -> Entry? {
        if key.count == 0 { return try first() }
        if key.count > transaction.environment.maxKeySize {
            // Longer than any stored key: position after every key that is a prefix-smaller.
            let probe = Array(key.prefix(transaction.environment.maxKeySize))
            return try withBytes(probe) { raw throws(LMDBError) in
                var entry = try get(MDB_SET_RANGE, key: raw)
                while let e = entry, compare(e.key, key) < 0 { entry = try get(MDB_NEXT) }
                return entry
            }
        }
        return try get(MDB_SET_RANGE, key: key)
    }
}

/// Unsigned byte-wise comparison (-1, 0, 1).
@inline(__always)
public func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
    let n = min(a.count, b.count)
    if n > 0 {
        let r = memcmp(a.baseAddress!, b.baseAddress!, n)
        if r != 0 { return r < 0 ? -1 : 1 }
    }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

#if canImport(Glibc)
import Glibc
#endif

/// A bucket opened in a transaction: its path, database name and handle, and a cache of its
/// child bucket names for the key/bucket collision check.
public final class LMDBBucketHandle {
    public let path: [[UInt8]]
    public let name: String
    public internal(set) var dbi: MDB_dbi
    var children: Set<[UInt8]>?
    var childrenVersion = -1

    init(path: [[UInt8]], name: String, dbi: MDB_dbi) {
        self.path = path
        self.name = name
        self.dbi = dbi
    }
}
