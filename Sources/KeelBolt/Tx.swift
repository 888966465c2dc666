import KeelIO

/// Counters of what a transaction did, like bbolt's TxStats.
public struct TxStats: Sendable, Equatable {
    /// Pages allocated and their bytes.
    public var pageCount = 0
    public var pageAlloc = 0
    public var cursorCount = 0
    public var nodeCount = 0
    public var rebalance = 0
    public var split = 0
    public var spill = 0
    /// Write calls and pages written at commit.
    public var write = 0
    public var pagesWritten = 0
    /// Nanoseconds spent in each commit phase.
    public var rebalanceNanoseconds: UInt64 = 0
    public var spillNanoseconds: UInt64 = 0
    public var writeNanoseconds: UInt64 = 0
    public var syncNanoseconds: UInt64 = 0
}

/// A read-only or read-write transaction.
///
/// A read transaction sees the database as of its start, whatever writers commit meanwhile; any
/// number may run at once, on any threads (one thread per transaction). There is at most one
/// write transaction at a time; it blocks other writers, never readers.
///
/// Everything obtained through a transaction (buckets, cursors, keys, values) is valid only until
/// it ends. Always end it: `commit()` or `rollback()` (or use `DB.view` / `DB.update`). A read
/// transaction left open holds back the reuse of pages freed after it began, so the file grows.
public final class Tx {
    /// The database.
    public let db: DB
    /// Whether this transaction may write.
    public let writable: Bool
    /// The meta this transaction started from (for a writer: with txid + 1 and its own changes).
    @exclusivity(unchecked) public internal(set) var meta: Meta
    let region: MappedRegion
    /// The writer reuses the database's arena; readers get their own (rarely used).
    let arena: Arena
    var root: Bucket!
    @exclusivity(unchecked) var dirty = PageMap<(pointer: UnsafeMutableRawPointer, pages: Int)>()
    /// The dirty pages in the order they were registered: nearly always increasing (the
    /// freelist hands out its lowest pages first, then the file grows), so commit rarely has
    /// to sort them.
    @exclusivity(unchecked) var dirtyOrder: [(id: UInt64, pointer: UnsafeMutableRawPointer, pages: Int)] = []
    /// Runs taken from the freelist, returned to it on rollback.
    @exclusivity(unchecked) var allocatedFromFreelist: [(start: UInt64, count: Int)] = []
    @exclusivity(unchecked) private var trackedNodes: [Node] = []
    /// The database's pool of spare nodes, held by the writer while it runs (see `Node.make`).
    @exclusivity(unchecked) var spareNodes: [Node] = []
    @exclusivity(unchecked) private(set) var closed = false
    var managed = false
    private var commitHandlers: [() -> Void] = []
    /// What this transaction did.
    @exclusivity(unchecked) public internal(set) var stats = TxStats()
    /// Ends with the transaction; debug builds check views against it.
    let lifetime: ViewLifetime

    init(db: DB, writable: Bool, meta: Meta, region: MappedRegion) {
        self.db = db
        self.writable = writable
        self.meta = meta
        self.region = region
        arena = writable ? db.writerArena : Arena()
        lifetime = ViewLifetime(txid: meta.txid + (writable ? 1 : 0), writable: writable)
        if writable {
            self.meta.txid += 1
            swap(&dirty, &db.spareDirtyTable)
            swap(&spareNodes, &db.spareNodes)
        }
        root = Bucket(tx: self, root: meta.root, sequence: meta.sequence)
    }

    deinit {
        if !closed { close(committed: false) }
    }

    /// The transaction id: the meta txid it reads (reader) or will write (writer).
    public var id: UInt64 { meta.txid }

    /// The size in bytes of the database as this transaction sees it (high-water mark × page size).
    public var size: Int64 { Int64(meta.pgid) * Int64(db.pageSize) }

    func track(_ node: Node) { trackedNodes.append(node) }

    /// Buckets holding a scratch cursor, released at close to break the cycle.
    private var scratchBuckets: [Bucket] = []
    func trackScratch(_ bucket: Bucket) { scratchBuckets.append(bucket) }

    func checkOpen() throws(BoltError) {
        if closed { throw BoltError.txClosed }
    }

    func checkWritable() throws(BoltError) {
        if closed { throw BoltError.txClosed }
        if !writable { throw BoltError.readOnly }
    }

    // MARK: Buckets

    /// The top-level bucket `name`, or nil.
    public func bucket(_ name: some Collection<UInt8>) throws(BoltError) -> Bucket? { try root.bucket(name) }

    /// Creates the top-level bucket `name`.
    @discardableResult
    public func createBucket(_ name: some Collection<UInt8>) throws(BoltError) -> Bucket { try root.createBucket(name) }

    /// Creates the top-level bucket `name` unless it exists.
    @discardableResult
    public func createBucketIfNotExists(_ name: some Collection<UInt8>) throws(BoltError) -> Bucket {
        try root.createBucketIfNotExists(name)
    }

    /// Deletes the top-level bucket `name` and all it holds.
    public func deleteBucket(_ name: some Collection<UInt8>) throws(BoltError) { try root.deleteBucket(name) }

    /// The root bucket, whose keys are the top-level bucket names.
    public var rootBucket: Bucket { root }

    /// A cursor over the top-level bucket names.
    public func cursor() -> Cursor { root.cursor() }

    /// The names of the top-level buckets, in order.
    public func bucketNames() throws(BoltError) -> [[UInt8]] {
        var names: [[UInt8]] = []
        try root.forEach { k, _ throws(BoltError) in names.append(k.bytes) }
        return names
    }

    /// Runs `handler` after a successful commit.
    public func onCommit(_ handler: @escaping () -> Void) { commitHandlers.append(handler) }

    // MARK: Pages

    /// The branch or leaf page `id` of this transaction's snapshot, checked: in bounds, self id,
    /// type, element array inside the page.
    func page(_ id: UInt64) throws(BoltError) -> PageView {
        if writable, !dirty.isEmpty, let d = dirty[id] {
            return PageView(base: UnsafeRawPointer(d.pointer), capacity: d.pages * db.pageSize)
        }
        let page = try rawPage(id)
        let flags = page.flags
        guard flags == .leaf || flags == .branch else {
            throw BoltError.corruptPage(id: id, reason: "invalid page type \(flags.typeName) where a branch or leaf was expected")
        }
        try page.validateElements(pageID: id)
        return page
    }

    /// Any page of the snapshot, checked only for bounds and its self id.
    func rawPage(_ id: UInt64) throws(BoltError) -> PageView {
        if writable, !dirty.isEmpty, let d = dirty[id] {
            return PageView(base: UnsafeRawPointer(d.pointer), capacity: d.pages * db.pageSize)
        }
        guard id < meta.pgid else { throw BoltError.pageOutOfBounds(id: id, highWaterMark: meta.pgid) }
        let pageSize = db.pageSize
        let base = region.base + Int(id) * pageSize
        let head = PageView(base: base, capacity: pageSize)
        guard head.id == id else {
            throw BoltError.corruptPage(id: id, reason: "page self-identifies as \(head.id)")
        }
        let overflow = UInt64(head.overflow)
        guard overflow < meta.pgid - id else {
            throw BoltError.corruptPage(id: id, reason: "overflow of \(overflow) pages runs past the high-water mark \(meta.pgid)")
        }
        return PageView(base: base, capacity: Int(overflow + 1) * pageSize)
    }

    /// Allocates `count` contiguous pages for dirty data: from the freelist, else at the end.
    func allocate(pages count: Int) throws(BoltError) -> (UInt64, UnsafeMutableRawPointer, UInt32) {
        let buffer = arena.allocatePage(count * db.pageSize, alignment: min(db.pageSize, 4096))
        let id = try register(buffer, pages: count)
        return (id, buffer, UInt32(count - 1))
    }

    /// A one-page buffer in the writer's arena, uninitialised, valid until the transaction ends.
    func pageBuffer() -> UnsafeMutableRawPointer {
        arena.allocatePage(db.pageSize, alignment: min(db.pageSize, 4096))
    }

    /// Gives `buffer` (arena memory of `count` pages, filled by the caller) a page id, from the
    /// freelist or else at the end of the file, and files it as dirty so that commit writes it.
    func register(_ buffer: UnsafeMutableRawPointer, pages count: Int) throws(BoltError) -> UInt64 {
        var id = db.freelist.allocate(txid: meta.txid, count)
        if id != 0 {
            allocatedFromFreelist.append((id, count))
        } else {
            id = meta.pgid
            meta.pgid += UInt64(count)
        }
        dirty[id] = (buffer, count)
        dirtyOrder.append((id, buffer, count))
        stats.pageCount += 1
        stats.pageAlloc += count * db.pageSize
        return id
    }

    /// Frees page `id` (and its overflow) into this transaction's pending list.
    func freePage(_ id: UInt64) throws(BoltError) {
        let page = try rawPage(id)
        try db.freelist.free(txid: meta.txid, id: id, overflow: page.overflow)
    }

    /// Frees page `id`, known to be one page without overflow (it was read and checked as such).
    func freeSinglePage(_ id: UInt64) throws(BoltError) {
        try db.freelist.free(txid: meta.txid, id: id, overflow: 0)
    }

    // MARK: End

    /// Writes all changes to disk: pages, fdatasync, meta page, fdatasync.
    /// - Throws: `.readOnly` for a read transaction, `.txClosed`, `.managedTxCommit` inside
    ///   `update`, `.writesDisabled` after a sync failure, `.io` on a write or sync error (the
    ///   transaction is then rolled back; after a failed sync the database refuses all writes).
    public func commit() throws(BoltError) {
        if managed { throw BoltError.managedTxCommit }
        try commitManaged()
    }

    func commitManaged() throws(BoltError) {
        try checkOpen()
        guard writable else { throw BoltError.readOnly }
        do throws(BoltError) {
            try db.commit(self)
        } catch {
            close(committed: false)
            throw error
        }
        close(committed: true)
        for handler in commitHandlers { handler() }
    }

    /// Ends the transaction, dropping any changes. Safe to call more than once.
    public func rollback() {
        if closed { return }
        close(committed: false)
    }

    func close(committed: Bool) {
        closed = true
        lifetime.ended = true
        for bucket in scratchBuckets { bucket.dropScratchCursor() }
        scratchBuckets = []
        if writable {
            if !committed { db.rollbackWriter(self) }
            // The nodes stop holding each other, the buckets let go of theirs, and each node now
            // held only by this list goes to the pool for the next writer. A node still held
            // elsewhere (a cursor or bucket the caller kept) is left to be freed with its holder.
            db.lastWriterNodeCount = trackedNodes.count
            for node in trackedNodes { node.unlink() }
            root = nil
            for i in trackedNodes.indices where spareNodes.count < DB.maxSpareNodes && isKnownUniquelyReferenced(&trackedNodes[i]) {
                trackedNodes[i].clearForReuse()
                spareNodes.append(trackedNodes[i])
            }
            trackedNodes = []
            swap(&spareNodes, &db.spareNodes)
            dirty.removeAll()
            swap(&dirty, &db.spareDirtyTable)
            arena.reset()
            db.endWriter()
        } else {
            root = nil
            db.endReader(txid: meta.txid)
        }
    }
}
