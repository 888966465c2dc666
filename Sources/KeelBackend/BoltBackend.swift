import KeelBolt
import KeelIO

/// `Backend` over a KeelBolt (bbolt-format) file.
public final class BoltBackend: Backend, @unchecked Sendable {
    public let kind = "bolt"
    public let maxKeySize = PageLayout.maxKeySize
    public let path: String
    public let options: Options
    /// The fill percent given to every bucket opened (bbolt's per-bucket FillPercent).
    public let fillPercent: Double
    private let database: Locked<DB>

    /// Opens (or creates) the file at `path`.
    public init(path: String, options: Options = Options(), fillPercent: Double = 0.5) throws(BackendError) {
        self.path = path
        self.options = options
        self.fillPercent = fillPercent
        database = Locked(try mapBolt { () throws(BoltError) in try DB.open(path: path, options: options) })
    }

    /// The KeelBolt database underneath.
    public var db: DB { database.withLock { $0 } }

    public func beginRead() throws(BackendError) -> any BackendReadTx {
        BoltReadTx(try mapBolt { () throws(BoltError) in try db.beginRead() }, fillPercent: fillPercent)
    }

    public func beginWrite() throws(BackendError) -> any BackendWriteTx {
        BoltWriteTx(try mapBolt { () throws(BoltError) in try db.beginWrite() }, fillPercent: fillPercent)
    }

    /// The file's size (kept by the database; no system call).
    public func size() throws(BackendError) -> Int64 { db.fileSize }

    /// etcd's definition: high-water mark × page size − free pages × page size (pending pages
    /// still count as in use), as of the last commit.
    public func sizeInUse() throws(BackendError) -> Int64 { db.sizeInUse }

    @discardableResult
    public func backup(to sink: (UnsafeRawBufferPointer) throws(BackendError) -> Void) throws(BackendError) -> Int64 {
        let tx = try mapBolt { () throws(BoltError) in try db.beginRead() }
        defer { tx.rollback() }
        return try tx.stream(to: sink)
    }

    /// Compacts into `PATH.defrag`, then renames it over the file and reopens (etcd's defrag).
    public func defragment() throws(BackendError) {
        let temporary = path + ".defrag"
        let fs = options.fileSystem
        try database.withLock { db throws(BackendError) in
            if fs.exists(temporary) { try? fs.remove(temporary) }
            var tmpOptions = options
            tmpOptions.noSync = true
            let destination = try mapBolt { () throws(BoltError) in try DB.open(path: temporary, options: tmpOptions) }
            do throws(BoltError) {
                try DB.compact(from: db, into: destination, txMaxSize: 10 << 20)
                // Make the copy durable before it replaces the original.
                try destination.update { _ throws(BoltError) in }
            } catch {
                try? destination.close()
                try? fs.remove(temporary)
                throw mapBoltError(error)
            }
            try mapBolt { () throws(BoltError) in try destination.close() }
            let syncTmp = try mapIO { () throws(IOError) in try fs.open(temporary, options: .readWrite) }
            try mapIO { () throws(IOError) in try syncTmp.sync() }
            syncTmp.close()
            try mapBolt { () throws(BoltError) in try db.close() }
            try mapIO { () throws(IOError) in
                try fs.rename(temporary, to: path)
                try fs.syncDirectory(parentDirectory(path))
            }
            db = try mapBolt { () throws(BoltError) in try DB.open(path: path, options: options) }
        }
    }

    public func close() throws(BackendError) { try mapBolt { () throws(BoltError) in try db.close() } }
}

class BoltReadTx: BackendReadTx {
    let tx: Tx
    let fillPercent: Double
    init(_ tx: Tx, fillPercent: Double) {
        self.tx = tx
        self.fillPercent = fillPercent
    }
    deinit { tx.rollback() }

    func resolve(_ path: BucketPath) throws(BackendError) -> Bucket {
        guard !path.isEmpty else { return tx.rootBucket }
        var bucket = tx.rootBucket
        for name in path {
            guard let next = try mapBolt({ () throws(BoltError) in try bucket.bucket(name) }) else {
                throw BackendError.bucketNotFound(display(path))
            }
            bucket = next
        }
        bucket.fillPercent = fillPercent
        return bucket
    }

    func buckets(in path: BucketPath) throws(BackendError) -> [[UInt8]] {
        let bucket = try resolve(path)
        var names: [[UInt8]] = []
        try mapBolt { () throws(BoltError) in
            try bucket.forEach { k, v throws(BoltError) in if v == nil { names.append(k.bytes) } }
        }
        return names
    }

    func bucket(_ path: BucketPath) throws(BackendError) -> any BackendBucket {
        guard !path.isEmpty else { throw BackendError.bucketNotFound("/") }
        return BoltBucket(try resolve(path), path: path)
    }

    func end() { tx.rollback() }
}

final class BoltWriteTx: BoltReadTx, BackendWriteTx {
    func createBucket(_ path: BucketPath) throws(BackendError) {
        guard let last = path.last else { throw BackendError.keyRequired }
        let parent = try resolve(Array(path.dropLast()))
        do throws(BoltError) {
            try parent.createBucket(last)
        } catch {
            throw mapBoltError(error, path: path)
        }
    }

    func deleteBucket(_ path: BucketPath) throws(BackendError) {
        guard let last = path.last else { throw BackendError.bucketNotFound("/") }
        let parent = try resolve(Array(path.dropLast()))
        do throws(BoltError) {
            try parent.deleteBucket(last)
        } catch {
            throw mapBoltError(error, path: path)
        }
    }

    func commit() throws(BackendError) { try mapBolt { () throws(BoltError) in try tx.commit() } }
    func rollback() { tx.rollback() }
}

final class BoltBucket: BackendBucket {
    let bucket: Bucket
    let path: BucketPath
    init(_ bucket: Bucket, path: BucketPath) {
        self.bucket = bucket
        self.path = path
    }

    func get<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws(BackendError) -> T) throws(BackendError) -> T {
        let value = try mapBolt { () throws(BoltError) in try bucket.get(key) }
        guard let value else { return try body(nil) }
        return try body(UnsafeRawBufferPointer(start: value.withUnsafeBytes { $0.baseAddress }, count: value.count))
    }

    func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BackendError) {
        do throws(BoltError) { try bucket.put(key, value) } catch { throw mapBoltError(error, path: path + [Array(key)]) }
    }

    func putSequential(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BackendError) {
        let fill = bucket.fillPercent
        bucket.fillPercent = 0.9
        defer { bucket.fillPercent = fill }
        try put(key, value)
    }

    func delete(_ key: UnsafeRawBufferPointer) throws(BackendError) {
        if key.count == 0 { return }
        do throws(BoltError) { try bucket.delete(key) } catch { throw mapBoltError(error, path: path + [Array(key)]) }
    }

    func range(from start: UnsafeRawBufferPointer, to end: UnsafeRawBufferPointer?, limit: Int, reverse: Bool,
               _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(BackendError) -> Bool) throws(BackendError) {
        let c = bucket.cursor()
        let path = self.path
        func raw(_ v: ByteView) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: v.withUnsafeBytes { $0.baseAddress }, count: v.count) }
        // Nested buckets come back with a nil value, which walkRange skips.
        func move(_ step: () throws(BoltError) -> Cursor.Entry?) throws(BackendError) -> RangeEntry? {
            do throws(BoltError) { return try step().map { (raw($0.key), $0.value.map(raw)) } } catch { throw mapBoltError(error, path: path) }
        }
        try walkRange(from: start, to: end, limit: limit, reverse: reverse,
                      seek: { key throws(BackendError) in try move { () throws(BoltError) in try c.seek(ByteView(unsafeBytes: key)) } },
                      first: { () throws(BackendError) in try move { () throws(BoltError) in try c.first() } },
                      last: { () throws(BackendError) in try move { () throws(BoltError) in try c.last() } },
                      next: { () throws(BackendError) in try move { () throws(BoltError) in try c.next() } },
                      prev: { () throws(BackendError) in try move { () throws(BoltError) in try c.prev() } },
                      body)
    }
}

func display(_ path: BucketPath) -> String {
    "/" + path.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
}

/// Runs a KeelBolt call, turning its error into a BackendError.
@inline(__always)
func mapBolt<T>(_ body: () throws(BoltError) -> T) throws(BackendError) -> T {
    do throws(BoltError) { return try body() } catch { throw mapBoltError(error) }
}

@inline(__always)
func mapIO<T>(_ body: () throws(IOError) -> T) throws(BackendError) -> T {
    do throws(IOError) { return try body() } catch { throw BackendError.engine(kind: "bolt", message: error.description) }
}

func mapBoltError(_ error: BoltError, path: BucketPath = []) -> BackendError {
    switch error {
    case .bucketNotFound: return .bucketNotFound(display(path))
    case .bucketExists: return .bucketExists(display(path))
    case .incompatibleValue, .cursorOnBucket: return .incompatibleValue(display(path))
    case .keyRequired, .bucketNameRequired: return .keyRequired
    case let .keyTooLarge(size): return .keyTooLarge(size)
    case let .valueTooLarge(size): return .valueTooLarge(size)
    case .readOnly: return .readOnly
    case .txClosed: return .txClosed
    default: return .engine(kind: "bolt", message: error.description)
    }
}
