import Dispatch
import KeelIO
#if canImport(Glibc)
import Glibc
#endif

/// A bbolt-format database file: a copy-on-write B+tree with buckets, one writer and any number
/// of concurrent readers.
///
/// ```swift
/// let db = try DB.open(path: "my.db")
/// try db.update { tx in try tx.createBucketIfNotExists(Array("widgets".utf8)).put(Array("k".utf8), Array("v".utf8)) }
/// let value = try db.view { tx in try tx.bucket(Array("widgets".utf8))?.get(Array("k".utf8))?.bytes }
/// ```
///
/// Thread safety: a `DB` may be shared between threads. Each transaction is used by one thread.
/// Across processes, an exclusive `flock` keeps a second writer out (read-only opens take a shared
/// lock).
public final class DB: @unchecked Sendable {
    /// The file's path.
    public let path: String
    /// The options it was opened with.
    public let options: Options
    /// The page size of this file.
    public let pageSize: Int
    let file: any FileHandle
    /// The writer's free page bookkeeping. Only touched while holding the writer lock.
    let freelist: Freelist
    /// Memory of write transactions, reused from one to the next (only the writer touches it).
    let writerArena = Arena()
    /// The writer's dirty-page table, handed from one write transaction to the next so that its
    /// storage is reused instead of regrown every commit (touched only under the writer lock).
    var spareDirtyTable = PageMap<(pointer: UnsafeMutableRawPointer, pages: Int)>()
    /// Nodes of ended write transactions, for the next writer to reuse (see `Node.make`;
    /// touched only under the writer lock). At most `maxSpareNodes`.
    var spareNodes: [Node] = []
    /// How many nodes the last write transaction made: the size new node tables start at.
    var lastWriterNodeCount = 0
    static let maxSpareNodes = 4096
    private let writerLock = DispatchSemaphore(value: 1)
    /// The thread holding the write transaction, if any.
    private let writerThread = Locked<pthread_t?>(nil)
    private let shared: Locked<Shared>

    struct Shared {
        var meta: Meta
        var region: MappedRegion
        /// Open read transactions by txid.
        var readers: [UInt64: Int] = [:]
        var closed = false
        /// Set after a failed sync: writes are refused.
        var writeFailure: String?
        var fileSize: Int64
        var stats = DBStats()
        /// Free (not pending) pages after the last commit or the open.
        var freePages = 0
    }

    private init(path: String, options: Options, pageSize: Int, file: any FileHandle, meta: Meta, region: MappedRegion, fileSize: Int64) {
        self.path = path
        self.options = options
        self.pageSize = pageSize
        self.file = file
        freelist = Freelist(type: options.freelistType)
        shared = Locked(Shared(meta: meta, region: region, fileSize: fileSize))
    }

    deinit {
        file.close()
    }

    // MARK: Open

    /// Opens the database at `path`, creating it (4 pages) when missing or empty (unless read-only).
    /// - Throws: `BoltError.fileTooSmall`, `.invalidMetaPages`, `.unsupportedPageSize`,
    ///   `.pageOutOfBounds` when the high-water mark is past the file's end, `.io` (including
    ///   `IOError.lockTimeout` when another process holds the file).
    public static func open(path: String, options: Options = Options()) throws(BoltError) -> DB {
        let fs = options.fileSystem
        let existed = fs.exists(path)
        let file = try wrap { () throws(IOError) in
            try fs.open(path, options: OpenOptions(writable: !options.readOnly, create: !options.readOnly, mode: options.mode))
        }
        do throws(BoltError) {
            try wrap { () throws(IOError) in
                try file.lock(options.readOnly ? .shared : .exclusive, timeoutSeconds: options.lockTimeout)
            }
            var size = try wrap { () throws(IOError) in try file.size() }
            if size > 0 && !options.readOnly && isInterruptedInitialization(file: file, size: size, pageSize: options.pageSize) {
                // A crash during the very first write left a partial 4-page image: nothing was
                // ever committed, so start over (bbolt would refuse such a file, see bbolt #567).
                try wrap { () throws(IOError) in try file.truncate(to: 0) }
                size = 0
            }
            if size == 0 && !options.readOnly {
                try initialize(file: file, pageSize: options.pageSize)
                // The new file's directory entry must be durable before anything is committed in it.
                if !existed { try wrap { () throws(IOError) in try fs.syncDirectory(parentDirectory(path)) } }
                size = try wrap { () throws(IOError) in try file.size() }
            }
            return try openExisting(path: path, options: options, file: file, size: size)
        } catch {
            file.close()
            throw error
        }
    }

    private static func openExisting(path: String, options: Options, file: any FileHandle, size: Int64) throws(BoltError) -> DB {
        let pageSize = try discoverPageSize(path: path, file: file, size: size, fallback: options.pageSize)
        guard size >= Int64(pageSize * 2) else { throw BoltError.fileTooSmall(path: path, size: size) }
        let reserve = max(options.mapReserveBytes, Int(size))
        let region: MappedRegion
        do throws(IOError) {
            region = try file.map(length: reserve)
        } catch {
            // Address space could not be reserved (ulimit -v?): map what is there and grow later.
            region = try wrap { () throws(IOError) in try file.map(length: max(Int(size) * 2, 1 << 20)) }
        }
        let meta = try selectMeta(path: path, region: region, pageSize: pageSize, fileSize: size)
        let db = DB(path: path, options: options, pageSize: pageSize, file: file, meta: meta, region: region, fileSize: size)
        if !options.readOnly {
            try db.loadFreelist(meta: meta)
            if !options.noFreelistSync && meta.freelist == PageLayout.noFreelist {
                // A file written without a freelist: store one now, as bbolt does.
                try db.update { _ throws(BoltError) in }
            }
        }
        return db
    }

    /// Whether the file holds only a prefix of the initial image (each byte equal or zero), as a
    /// crash during `initialize` leaves it.
    private static func isInterruptedInitialization(file: any FileHandle, size: Int64, pageSize: Int) -> Bool {
        guard size < Int64(pageSize * 4), pageSize >= PageLayout.minPageSize, pageSize <= PageLayout.maxPageSize,
              pageSize & (pageSize - 1) == 0, let bytes = try? file.read(count: Int(size), at: 0) else { return false }
        let image = initialImage(pageSize: pageSize)
        for (i, byte) in bytes.enumerated() where byte != 0 && byte != image[i] { return false }
        return true
    }

    /// Writes the 4-page initial file: two metas, an empty freelist, an empty root leaf.
    private static func initialize(file: any FileHandle, pageSize: Int) throws(BoltError) {
        guard pageSize >= PageLayout.minPageSize, pageSize <= PageLayout.maxPageSize, pageSize & (pageSize - 1) == 0 else {
            throw BoltError.unsupportedPageSize(path: file.path, pageSize: UInt32(truncatingIfNeeded: pageSize))
        }
        let bytes = initialImage(pageSize: pageSize)
        try wrap { () throws(IOError) in
            try file.write(bytes, at: 0)
            try file.sync()
        }
    }

    /// The bytes of a new, empty database: two metas, an empty freelist, an empty root leaf.
    static func initialImage(pageSize: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: pageSize * 4)
        bytes.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            for i in 0..<2 {
                let meta = Meta(pageSize: UInt32(pageSize), root: 3, freelist: 2, pgid: 4, txid: UInt64(i))
                meta.write(into: base + i * pageSize, pageID: UInt64(i))
            }
            PageWriter(base: base + 2 * pageSize).setHeader(id: 2, flags: .freelist, count: 0, overflow: 0)
            PageWriter(base: base + 3 * pageSize).setHeader(id: 3, flags: .leaf, count: 0, overflow: 0)
        }
        return bytes
    }

    /// Reads meta 0 for the page size; if it is damaged, looks for meta 1 at 1 KiB … 16 MiB.
    private static func discoverPageSize(path: String, file: any FileHandle, size: Int64, fallback: Int) throws(BoltError) -> Int {
        func metaAt(_ offset: Int64) -> Meta? {
            guard offset + 4096 <= size || offset + Int64(PageLayout.headerSize + PageLayout.metaBodySize) <= size else { return nil }
            let n = Int(min(Int64(PageLayout.headerSize + PageLayout.metaBodySize), size - offset))
            guard n == PageLayout.headerSize + PageLayout.metaBodySize,
                  let bytes = try? file.read(count: n, at: offset) else { return nil }
            return bytes.withUnsafeBytes { raw in
                let meta = Meta(page: PageView(base: raw.baseAddress!, capacity: raw.count))
                return meta.problem() == nil ? meta : nil
            }
        }
        if size < Int64(PageLayout.headerSize + PageLayout.metaBodySize) { throw BoltError.fileTooSmall(path: path, size: size) }
        var candidates: [Meta] = []
        if let m0 = metaAt(0) { candidates.append(m0) }
        for i in 0..<15 {
            let offset = Int64(1024 << i)
            if let m = metaAt(offset), Int64(m.pageSize) == offset { candidates.append(m) }
        }
        guard let meta = candidates.first else {
            // Let meta selection explain why both are bad.
            return fallback
        }
        let ps = Int(meta.pageSize)
        guard ps >= PageLayout.minPageSize, ps <= PageLayout.maxPageSize, ps & (ps - 1) == 0 else {
            throw BoltError.unsupportedPageSize(path: path, pageSize: meta.pageSize)
        }
        return ps
    }

    /// Picks the valid meta with the higher txid whose high-water mark fits in the file.
    private static func selectMeta(path: String, region: MappedRegion, pageSize: Int, fileSize: Int64) throws(BoltError) -> Meta {
        var problems: [String] = []
        var valid: [Meta] = []
        for i in 0..<2 {
            let offset = i * pageSize
            guard Int64(offset + pageSize) <= fileSize else { problems.append("beyond the end of the file"); continue }
            let page = PageView(base: region.base + offset, capacity: pageSize)
            let meta = Meta(page: page)
            if let problem = meta.problem() {
                problems.append(problem)
            } else if !page.flags.contains(.meta) {
                problems.append("page flags 0x\(String(page.flags.rawValue, radix: 16)) are not meta")
            } else if Int(meta.pageSize) != pageSize {
                problems.append("page size \(meta.pageSize) differs from \(pageSize)")
            } else if meta.pgid < 2 || meta.root < 2 || meta.root >= meta.pgid ||
                        (meta.freelist != PageLayout.noFreelist && (meta.freelist < 2 || meta.freelist >= meta.pgid)) {
                problems.append("root \(meta.root) / freelist \(meta.freelist) / high-water mark \(meta.pgid) are inconsistent")
            } else if meta.pgid > UInt64(fileSize) / UInt64(pageSize) {
                problems.append("high-water mark \(meta.pgid) is past the end of the file (\(fileSize / Int64(pageSize)) pages)")
            } else {
                problems.append("")
                valid.append(meta)
            }
        }
        guard let best = valid.max(by: { $0.txid < $1.txid }) else {
            throw BoltError.invalidMetaPages(path: path, meta0: problems[0], meta1: problems.count > 1 ? problems[1] : "missing")
        }
        return best
    }

    private func loadFreelist(meta: Meta) throws(BoltError) {
        let tx = Tx(db: self, writable: false, meta: meta, region: shared.withLock { $0.region })
        defer { tx.rollback() }
        let ids: [UInt64]
        if meta.freelist == PageLayout.noFreelist {
            ids = try tx.unreachablePages()
        } else {
            let page = try tx.rawPage(meta.freelist)
            guard page.flags == .freelist else {
                throw BoltError.corruptPage(id: meta.freelist, reason: "meta names it as the freelist but its type is \(page.flags.typeName)")
            }
            ids = try page.freelistIDs(pageID: meta.freelist)
            for id in ids where id < 2 || id >= meta.pgid {
                throw BoltError.corruptPage(id: meta.freelist, reason: "freelist lists page \(id), outside 2..<\(meta.pgid)")
            }
        }
        let sorted = ids.sorted()
        // A page listed twice would be handed out twice: two live trees sharing one page.
        for (a, b) in zip(sorted, sorted.dropFirst()) where a == b {
            throw BoltError.corruptPage(id: meta.freelist, reason: "freelist lists page \(a) more than once")
        }
        freelist.reset(freeIDs: sorted)
        shared.withLock { $0.freePages = freelist.freeCount }
    }

    // MARK: Transactions

    /// Starts a read transaction on the latest committed state.
    public func beginRead() throws(BoltError) -> Tx {
        let (meta, region) = try shared.withLock { s throws(BoltError) in
            if s.closed { throw BoltError.databaseClosed }
            s.readers[s.meta.txid, default: 0] += 1
            s.stats.txN += 1
            return (s.meta, s.region)
        }
        return Tx(db: self, writable: false, meta: meta, region: region)
    }

    /// Starts the write transaction, waiting while another one is open.
    /// - Throws: `.readOnly`, `.databaseClosed`, `.writesDisabled` after a failed sync.
    public func beginWrite() throws(BoltError) -> Tx {
        if options.readOnly { throw BoltError.readOnly }
        if writerThread.withLock({ $0.map { pthread_equal($0, pthread_self()) != 0 } ?? false }) {
            throw BoltError.writeTransactionOpen
        }
        writerLock.wait()
        writerThread.withLock { $0 = pthread_self() }
        do throws(BoltError) {
            let (meta, region, oldest) = try shared.withLock { s throws(BoltError) in
                if s.closed { throw BoltError.databaseClosed }
                if let failure = s.writeFailure { throw BoltError.writesDisabled(cause: failure) }
                return (s.meta, s.region, s.readers.keys.min())
            }
            // Pages freed before the oldest open reader's snapshot can be reused now.
            if let oldest {
                if oldest > 0 { freelist.release(upTo: oldest - 1) }
            } else {
                freelist.release(upTo: .max)
            }
            return Tx(db: self, writable: true, meta: meta, region: region)
        } catch {
            endWriter()
            throw error
        }
    }

    /// Runs `body` in a read transaction, which ends when it returns.
    public func view<T>(_ body: (Tx) throws -> T) throws -> T {
        let tx = try beginRead()
        defer { tx.rollback() }
        return try body(tx)
    }

    /// Runs `body` in the write transaction and commits when it returns; a thrown error rolls
    /// it back and is rethrown.
    public func update<T>(_ body: (Tx) throws -> T) throws -> T {
        let tx = try beginWrite()
        tx.managed = true
        let result: T
        do {
            result = try body(tx)
        } catch {
            tx.rollback()
            throw error
        }
        try tx.commitManaged()
        return result
    }

    /// `update` for bodies that throw only `BoltError`.
    public func update<T>(_ body: (Tx) throws(BoltError) -> T) throws(BoltError) -> T {
        let tx = try beginWrite()
        tx.managed = true
        let result: T
        do throws(BoltError) {
            result = try body(tx)
        } catch {
            tx.rollback()
            throw error
        }
        try tx.commitManaged()
        return result
    }

    /// `view` for bodies that throw only `BoltError`.
    public func view<T>(_ body: (Tx) throws(BoltError) -> T) throws(BoltError) -> T {
        let tx = try beginRead()
        defer { tx.rollback() }
        return try body(tx)
    }

    func endReader(txid: UInt64) {
        shared.withLock { s in
            if let n = s.readers[txid] {
                if n <= 1 { s.readers[txid] = nil } else { s.readers[txid] = n - 1 }
            }
        }
    }

    func endWriter() {
        writerThread.withLock { $0 = nil }
        writerLock.signal()
    }

    func rollbackWriter(_ tx: Tx) {
        freelist.rollback(txid: tx.meta.txid)
        for run in tx.allocatedFromFreelist {
            freelist.returnRun(start: run.start, count: run.count)
        }
        tx.allocatedFromFreelist = []
    }

    // MARK: Commit

    /// The commit protocol: rebalance, spill, freelist, grow, write pages, sync, write meta, sync.
    func commit(_ tx: Tx) throws(BoltError) {
        if let failure = shared.withLock({ $0.writeFailure }) { throw BoltError.writesDisabled(cause: failure) }
        let startPgid = shared.withLock { $0.meta.pgid }
        var t0 = monotonicNanoseconds()
        try tx.root.rebalance()
        var t1 = monotonicNanoseconds()
        tx.stats.rebalanceNanoseconds += t1 - t0
        try tx.root.spill()
        t0 = monotonicNanoseconds()
        tx.stats.spillNanoseconds += t0 - t1
        tx.meta.root = tx.root.root
        tx.meta.sequence = tx.root.sequence

        // The old freelist page is freed; a new one is written unless NoFreelistSync.
        if tx.meta.freelist != PageLayout.noFreelist {
            try tx.freePage(tx.meta.freelist)
        }
        if options.noFreelistSync {
            tx.meta.freelist = PageLayout.noFreelist
        } else {
            let pages = freelist.pageBytes() / pageSize + 1
            let (id, buffer, overflow) = try tx.allocate(pages: pages)
            freelist.write(into: buffer, id: id, overflow: overflow, capacity: pages * pageSize)
            tx.meta.freelist = id
        }

        try growIfNeeded(tx, startPgid: startPgid)
        try writeDirtyPages(tx)
        t1 = monotonicNanoseconds()
        tx.stats.writeNanoseconds += t1 - t0
        try syncFile()
        t0 = monotonicNanoseconds()
        tx.stats.syncNanoseconds += t0 - t1

        if options.strictMode {
            let problems = try tx.checkPages()
            if !problems.isEmpty {
                throw BoltError.corruptPage(id: problems[0].page ?? 0, reason: "strict mode: " + problems.map(\.description).joined(separator: "; "))
            }
        }

        // The meta page: the commit point.
        let metaBuffer = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 4096)
        defer { metaBuffer.deallocate() }
        metaBuffer.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
        let metaPage = tx.meta.txid % 2
        tx.meta.write(into: metaBuffer, pageID: metaPage)
        do throws(IOError) {
            try file.write(UnsafeRawBufferPointer(start: metaBuffer, count: pageSize), at: Int64(metaPage) * Int64(pageSize))
        } catch {
            // The meta may have reached the disk in part or in whole: this commit may be the
            // durable state after a crash, so the pages it wrote must never be reused.
            disableWrites(error.description)
            throw BoltError.io(error)
        }
        try syncFile()
        t1 = monotonicNanoseconds()
        tx.stats.syncNanoseconds += t1 - t0
        tx.stats.write += 1

        let freePages = freelist.freeCount
        shared.withLock { s in
            s.meta = tx.meta
            s.freePages = freePages
            s.stats.txN += 1
            s.stats.accumulate(tx.stats)
        }
        tx.allocatedFromFreelist = []
    }

    /// fdatasync unless NoSync; a failure disables writes for good (never retry a failed fsync).
    private func syncFile() throws(BoltError) {
        if options.noSync { return }
        do throws(IOError) {
            try file.sync()
        } catch {
            disableWrites(error.description)
            throw BoltError.io(error)
        }
    }

    /// Refuses every later write transaction: the file's durable state is unknown.
    private func disableWrites(_ cause: String) {
        shared.withLock { s in if s.writeFailure == nil { s.writeFailure = cause } }
    }

    /// Grows the file like bbolt (power-of-two sizes up to AllocSize, then AllocSize steps) and
    /// makes a larger map when the reserved one is too small.
    private func growIfNeeded(_ tx: Tx, startPgid: UInt64) throws(BoltError) {
        let needed = Int64(tx.meta.pgid + 1) * Int64(pageSize)
        let (fileSize, regionLength) = shared.withLock { ($0.fileSize, $0.region.length) }
        if needed > fileSize {
            var target = Int64(mmapSize(Int(needed)))
            if target >= Int64(options.allocSize) { target = needed + Int64(options.allocSize) }
            try wrap { () throws(IOError) in try file.truncate(to: target) }
            if !options.noGrowSync { try syncFile() }
            shared.withLock { $0.fileSize = target }
        }
        let dataSize = Int(tx.meta.pgid) * pageSize
        if dataSize > regionLength {
            // Outgrew the reservation: a bigger map beside the old one. Readers keep theirs.
            let length = max(regionLength * 2, dataSize + options.allocSize)
            let region = try wrap { () throws(IOError) in try file.map(length: length) }
            shared.withLock { $0.region = region }
        }
    }

    /// bbolt's mmap sizing: powers of two from 32 KiB to 1 GiB, then 1 GiB steps.
    func mmapSize(_ size: Int) -> Int {
        for shift in 15...30 where size <= 1 << shift { return 1 << shift }
        let gib = 1 << 30
        var sz = size
        if sz % gib != 0 { sz = (sz / gib + 1) * gib }
        if sz % pageSize != 0 { sz = (sz / pageSize + 1) * pageSize }
        return sz
    }

    /// Writes dirty pages in id order, one pwritev per run of neighbouring pages.
    private func writeDirtyPages(_ tx: Tx) throws(BoltError) {
        var pages = tx.dirtyOrder
        tx.dirtyOrder = []
        var sorted = true
        var k = 1
        while k < pages.count {
            if pages[k - 1].id > pages[k].id { sorted = false; break }
            k += 1
        }
        if !sorted { pages.sort { $0.id < $1.id } }
        var i = 0
        var vectors: [UnsafeRawBufferPointer] = []
        while i < pages.count {
            vectors.removeAll(keepingCapacity: true)
            var j = i
            var d = pages[i]
            vectors.append(UnsafeRawBufferPointer(start: d.pointer, count: d.pages * pageSize))
            var bytes = d.pages * pageSize
            while j + 1 < pages.count, pages[j + 1].id == pages[j].id + UInt64(d.pages), bytes < 16 << 20 {
                j += 1
                d = pages[j]
                vectors.append(UnsafeRawBufferPointer(start: d.pointer, count: d.pages * pageSize))
                bytes += d.pages * pageSize
            }
            let offset = Int64(pages[i].id) * Int64(pageSize)
            try wrap { () throws(IOError) in
                if vectors.count == 1 { try file.write(vectors[0], at: offset) } else { try file.write(vectors: vectors, at: offset) }
            }
            tx.stats.write += 1
            tx.stats.pagesWritten += j - i + 1
            i = j + 1
        }
    }

    // MARK: Close and info

    /// Closes the database: waits for the writer, releases the lock. Open read transactions must
    /// be ended first; their views stay readable until they end.
    /// - Throws: `.closeInWriteTransaction` when called on the thread that holds the write
    ///   transaction (waiting for it there would never end).
    public func close() throws(BoltError) {
        if writerThread.withLock({ $0.map { pthread_equal($0, pthread_self()) != 0 } ?? false }) {
            throw BoltError.closeInWriteTransaction
        }
        writerLock.wait()
        shared.withLock { $0.closed = true }
        file.unlock()
        file.close()
        writerLock.signal()
    }

    /// The file's size as this handle last set or saw it (it grows at commits).
    public var fileSize: Int64 { shared.withLock { $0.fileSize } }

    /// Whether writes were disabled by a failed sync, and why.
    public var writeFailure: String? { shared.withLock { $0.writeFailure } }

    /// The current committed meta.
    public var currentMeta: Meta { shared.withLock { $0.meta } }

    /// Database-wide statistics.
    public func stats() -> DBStats {
        shared.withLock { s in
            var st = s.stats
            st.openTxN = s.readers.values.reduce(0, +)
            return st
        }
    }

    /// The bytes the committed data uses, as etcd defines it: high-water mark × page size minus
    /// the free (not pending) pages. Does not wait for the writer. A read-only handle does not
    /// load the freelist, so it reports the high-water mark.
    public var sizeInUse: Int64 {
        shared.withLock { s in (Int64(s.meta.pgid) - Int64(s.freePages)) * Int64(pageSize) }
    }

    /// Free and pending page counts (writer's view; taken under the writer lock).
    public func freelistCounts() -> (free: Int, pending: Int) {
        writerLock.wait()
        defer { writerLock.signal() }
        return (freelist.freeCount, freelist.pendingCount)
    }
}

/// Database statistics, like bbolt's `DB.Stats()`.
public struct DBStats: Sendable, Equatable {
    /// Transactions started (read) and committed (write).
    public var txN = 0
    /// Read transactions open now.
    public var openTxN = 0
    /// Totals over committed write transactions.
    public var pagesAllocated = 0
    public var pagesWritten = 0
    public var splits = 0
    public var spills = 0
    public var rebalances = 0

    mutating func accumulate(_ tx: TxStats) {
        pagesAllocated += tx.pageCount
        pagesWritten += tx.pagesWritten
        splits += tx.split
        spills += tx.spill
        rebalances += tx.rebalance
    }
}

/// Turns an IOError into a BoltError.
@inline(__always)
func wrap<T>(_ body: () throws(IOError) -> T) throws(BoltError) -> T {
    do throws(IOError) { return try body() } catch { throw BoltError.io(error) }
}
