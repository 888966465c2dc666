import CLMDB
import KeelIO
import KeelLMDB

/// `Backend` over an LMDB environment directory; nested buckets are named databases.
public final class LMDBBackend: Backend, @unchecked Sendable {
    public let kind = "lmdb"
    public let maxKeySize: Int
    public let path: String
    public let options: LMDBOptions
    private let environment: Locked<LMDBEnvironment>

    /// Opens (or creates) the environment directory at `path`.
    public init(path: String, options: LMDBOptions = LMDBOptions()) throws(BackendError) {
        self.path = path
        self.options = options
        let env = try mapLMDB { () throws(LMDBError) in try LMDBEnvironment(path: path, options: options) }
        maxKeySize = env.maxKeySize
        environment = Locked(env)
    }

    /// The LMDB environment underneath.
    public var env: LMDBEnvironment { environment.withLock { $0 } }

    public func beginRead() throws(BackendError) -> any BackendReadTx {
        LMDBReadTx(try mapLMDB { () throws(LMDBError) in try env.beginRead() })
    }

    public func beginWrite() throws(BackendError) -> any BackendWriteTx {
        LMDBWriteTx(try mapLMDB { () throws(LMDBError) in try env.beginWrite() })
    }

    private var dataFile: String { path + "/data.mdb" }
    private let fs = POSIXFileSystem()

    public func size() throws(BackendError) -> Int64 {
        try ioCall { () throws(IOError) in
            let file = try fs.open(dataFile, options: .readOnly)
            defer { file.close() }
            return try file.size()
        }
    }

    /// Pages up to the last one used, minus the pages LMDB's free database lists.
    public func sizeInUse() throws(BackendError) -> Int64 {
        let env = self.env
        let info = try mapLMDB { () throws(LMDBError) in try env.info() }
        let tx = try mapLMDB { () throws(LMDBError) in try env.beginRead() }
        defer { tx.rollback() }
        let pages = info.lastPage + 1
        let free = try mapLMDB { () throws(LMDBError) in try freePageCount(tx, pages: pages) }
        return Int64(pages - free) * Int64(info.pageSize)
    }

    /// Counts the page numbers recorded in LMDB's free-page database (dbi 0): each value is a
    /// list whose first word is its length. The counts come from the file, so each one and
    /// their sum are checked against the `pages` the environment has.
    private func freePageCount(_ tx: LMDBTransaction, pages: Int) throws(LMDBError) -> Int {
        let cursor = try tx.cursor(0)
        var count = 0
        var entry = try cursor.first()
        while let e = entry {
            if e.value.count >= MemoryLayout<Int>.size {
                let n = e.value.loadUnaligned(as: Int.self)
                let (sum, overflow) = count.addingReportingOverflow(n)
                guard n >= 0, !overflow, sum <= pages else {
                    throw LMDBError.notAnEnvironment(path: path, reason: "the free-page database lists \(n) pages in one entry (\(count) before it), more than the \(pages) the environment has: it is damaged")
                }
                count = sum
            }
            entry = try cursor.next()
        }
        return count
    }

    /// A scratch directory inside the environment, removed with its contents afterwards.
    private func withScratchDirectory<T>(_ name: String, _ body: (String) throws(BackendError) -> T) throws(BackendError) -> T {
        let dir = path + "/" + name
        if fs.exists(dir) { try? fs.removeTree(dir) }
        try ioCall { () throws(IOError) in try fs.makeDirectory(dir, intermediate: false) }
        defer { try? fs.removeTree(dir) }
        return try body(dir)
    }

    /// A consistent copy through `mdb_env_copy2` into a scratch directory, streamed to `sink`.
    @discardableResult
    public func backup(to sink: (UnsafeRawBufferPointer) throws(BackendError) -> Void) throws(BackendError) -> Int64 {
        try withScratchDirectory("backup.tmp") { dir throws(BackendError) in
            try mapLMDB { () throws(LMDBError) in try env.copy(toDirectory: dir, compact: false) }
            let file = try ioCall { () throws(IOError) in try fs.open(dir + "/data.mdb", options: .readOnly) }
            defer { file.close() }
            let total = try ioCall { () throws(IOError) in try file.size() }
            var offset: Int64 = 0
            while offset < total {
                let n = Int(min(Int64(1 << 20), total - offset))
                let piece = try ioCall { () throws(IOError) in try file.read(count: n, at: offset) }
                try withBackendBytes(piece) { raw throws(BackendError) in try sink(raw) }
                offset += Int64(n)
            }
            return total
        }
    }

    /// Copies compacted (MDB_CP_COMPACT) and swaps the data file in.
    public func defragment() throws(BackendError) {
        try environment.withLock { env throws(BackendError) in
            try withScratchDirectory("defrag.tmp") { dir throws(BackendError) in
                try mapLMDB { () throws(LMDBError) in try env.copy(toDirectory: dir, compact: true) }
                try ioCall { () throws(IOError) in
                    let copy = try fs.open(dir + "/data.mdb", options: .readWrite)
                    defer { copy.close() }
                    try copy.sync()
                }
                env.close()
                try ioCall { () throws(IOError) in
                    try fs.rename(dir + "/data.mdb", to: dataFile)
                    try fs.syncDirectory(path)
                }
                env = try mapLMDB { () throws(LMDBError) in try LMDBEnvironment(path: path, options: options) }
            }
        }
    }

    @inline(__always)
    private func ioCall<T>(_ body: () throws(IOError) -> T) throws(BackendError) -> T {
        do throws(IOError) { return try body() } catch { throw BackendError.engine(kind: kind, message: error.description) }
    }

    public func close() { env.close() }
}

class LMDBReadTx: BackendReadTx {
    let tx: LMDBTransaction
    init(_ tx: LMDBTransaction) { self.tx = tx }
    deinit { tx.rollback() }

    func buckets(in path: BucketPath) throws(BackendError) -> [[UInt8]] {
        try mapLMDB { () throws(LMDBError) in try tx.buckets(in: path) }
    }

    func bucket(_ path: BucketPath) throws(BackendError) -> any BackendBucket {
        guard !path.isEmpty else { throw BackendError.bucketNotFound("/") }
        let handle = try mapLMDB { () throws(LMDBError) in try tx.openBucket(path) }
        return LMDBBucket(tx: tx, handle: handle)
    }

    func end() { tx.rollback() }
}

final class LMDBWriteTx: LMDBReadTx, BackendWriteTx {
    func createBucket(_ path: BucketPath) throws(BackendError) {
        try mapLMDB { () throws(LMDBError) in try tx.createBucket(path) }
    }

    func deleteBucket(_ path: BucketPath) throws(BackendError) {
        try mapLMDB { () throws(LMDBError) in try tx.deleteBucket(path) }
    }

    func commit() throws(BackendError) { try mapLMDB { () throws(LMDBError) in try tx.commit() } }
    func rollback() { tx.rollback() }
}

final class LMDBBucket: BackendBucket {
    let tx: LMDBTransaction
    let handle: LMDBBucketHandle

    init(tx: LMDBTransaction, handle: LMDBBucketHandle) {
        self.tx = tx
        self.handle = handle
    }

    func get<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws(BackendError) -> T) throws(BackendError) -> T {
        let value = try mapLMDB { () throws(LMDBError) in try tx.get(handle, key) }
        return try body(value)
    }

    func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BackendError) {
        try mapLMDB { () throws(LMDBError) in try tx.put(handle, key, value) }
    }

    func delete(_ key: UnsafeRawBufferPointer) throws(BackendError) {
        _ = try mapLMDB { () throws(LMDBError) in try tx.delete(handle, key) }
    }

    func range(from start: UnsafeRawBufferPointer, to end: UnsafeRawBufferPointer?, limit: Int, reverse: Bool,
               _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(BackendError) -> Bool) throws(BackendError) {
        let cursor = try mapLMDB { () throws(LMDBError) in try tx.cursor(handle.dbi) }
        func move(_ step: () throws(LMDBError) -> LMDBCursor.Entry?) throws(BackendError) -> RangeEntry? {
            try mapLMDB(step).map { ($0.key, $0.value) }
        }
        try walkRange(from: start, to: end, limit: limit, reverse: reverse,
                      seek: { key throws(BackendError) in try move { () throws(LMDBError) in try cursor.seek(key) } },
                      first: { () throws(BackendError) in try move { () throws(LMDBError) in try cursor.first() } },
                      last: { () throws(BackendError) in try move { () throws(LMDBError) in try cursor.last() } },
                      next: { () throws(BackendError) in try move { () throws(LMDBError) in try cursor.next() } },
                      prev: { () throws(BackendError) in try move { () throws(LMDBError) in try cursor.prev() } },
                      body)
    }
}

@inline(__always)
func mapLMDB<T>(_ body: () throws(LMDBError) -> T) throws(BackendError) -> T {
    do throws(LMDBError) { return try body() } catch { throw mapLMDBError(error) }
}

func mapLMDBError(_ error: LMDBError) -> BackendError {
    switch error {
    case let .bucketNotFound(path): return .bucketNotFound(path)
    case let .bucketExists(path): return .bucketExists(path)
    case let .incompatibleValue(path): return .incompatibleValue(path)
    case .keyRequired: return .keyRequired
    case let .keyTooLarge(size, _): return .keyTooLarge(size)
    case .readOnly: return .readOnly
    case .txClosed: return .txClosed
    default: return .engine(kind: "lmdb", message: error.description)
    }
}
