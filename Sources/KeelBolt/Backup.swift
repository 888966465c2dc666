import KeelIO

extension Tx {
    /// Streams a consistent copy of this transaction's snapshot to `sink` (a hot backup: writers
    /// keep going meanwhile), in order, in pieces of at most 1 MiB: both metas rebuilt from this
    /// snapshot (txid and txid−1), then every other page as it is. The image is
    /// `pgid × pageSize` bytes, a file bbolt and KeelBolt open as they are.
    /// - Returns: the bytes streamed.
    @discardableResult
    public func stream<E: Error>(to sink: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) -> Int64 {
        let pageSize = db.pageSize
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: pageSize * 2, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize * 2)
        var meta0 = meta
        meta0.write(into: buffer, pageID: 0)
        meta0.txid = meta.txid &- 1
        meta0.write(into: buffer + pageSize, pageID: 1)
        try sink(UnsafeRawBufferPointer(start: buffer, count: pageSize * 2))
        // The rest straight from the map: pages of this snapshot are not overwritten while the
        // transaction is open.
        let total = Int(meta.pgid) * pageSize
        var offset = pageSize * 2
        while offset < total {
            let n = min(1 << 20, total - offset)
            try sink(UnsafeRawBufferPointer(start: region.base + offset, count: n))
            offset += n
        }
        return Int64(total)
    }

    /// Writes a consistent copy of this transaction's snapshot to `file` (see `stream(to:)`) and
    /// syncs it.
    /// - Returns: the bytes written.
    @discardableResult
    public func write(to file: any FileHandle) throws(BoltError) -> Int64 {
        try checkOpen()
        var offset: Int64 = 0
        let total = try stream { (piece: UnsafeRawBufferPointer) throws(BoltError) in
            try wrap { () throws(IOError) in try file.write(piece, at: offset) }
            offset += Int64(piece.count)
        }
        try wrap { () throws(IOError) in try file.sync() }
        return total
    }

    /// Writes a hot backup to a new file at `path` (replaced if it exists) through `fileSystem`,
    /// via a temporary file, a rename and a directory fsync.
    @discardableResult
    public func copyFile(to path: String, fileSystem: (any FileSystem)? = nil, mode: UInt32 = 0o600) throws(BoltError) -> Int64 {
        let fs = fileSystem ?? db.options.fileSystem
        let temporary = path + ".tmp"
        let written: Int64 = try wrap { () throws(IOError) in
            if fs.exists(temporary) { try fs.remove(temporary) }
            let file = try fs.open(temporary, options: OpenOptions(writable: true, create: true, exclusive: true, mode: mode))
            defer { file.close() }
            do throws(BoltError) {
                return try write(to: file)
            } catch {
                throw IOError.system(operation: "backup: \(error)", path: temporary, errno: EIO)
            }
        }
        try wrap { () throws(IOError) in
            try fs.rename(temporary, to: path)
            try fs.syncDirectory(parentDirectory(path))
        }
        return written
    }
}

extension DB {
    /// Copies every bucket, key and sequence of `source` into `destination`, packing pages full
    /// (fill percent 1.0), committing every `txMaxSize` bytes of keys and values (0: one
    /// transaction). This is bbolt's `compact`: the destination is as small as the data allows.
    public static func compact(from source: DB, into destination: DB, txMaxSize: Int = 65536,
                               progress: ((Int) -> Void)? = nil) throws(BoltError) {
        let readTx = try source.beginRead()
        defer { readTx.rollback() }
        var writer = CompactWriter(db: destination, txMaxSize: txMaxSize, progress: progress)
        try writer.begin()
        do throws(BoltError) {
            try writer.copy(readTx.rootBucket, path: [])
            try writer.finish()
        } catch {
            // A damaged source: leave the destination's write transaction closed, not held.
            writer.tx?.rollback()
            throw error
        }
    }
}

/// The destination side of `DB.compact`: reopens the bucket path after each intermediate commit.
private struct CompactWriter {
    let db: DB
    let txMaxSize: Int
    let progress: ((Int) -> Void)?
    var tx: Tx?
    var size = 0
    var copied = 0

    init(db: DB, txMaxSize: Int, progress: ((Int) -> Void)?) {
        self.db = db
        self.txMaxSize = txMaxSize
        self.progress = progress
    }

    mutating func begin() throws(BoltError) { tx = try db.beginWrite() }

    mutating func finish() throws(BoltError) {
        try tx?.commit()
        tx = nil
    }

    /// The destination bucket at `path` in the current transaction (the root for []).
    func bucket(_ path: [[UInt8]]) throws(BoltError) -> Bucket {
        var b = tx!.rootBucket
        for name in path {
            guard let next = try b.bucket(name) else { throw BoltError.bucketNotFound }
            b = next
        }
        b.fillPercent = 1.0
        return b
    }

    mutating func copy(_ source: Bucket, path: [[UInt8]]) throws(BoltError) {
        let c = source.cursor()
        var entry = try c.first()
        while let e = entry {
            let key = e.key.bytes
            if txMaxSize > 0 && size + e.key.count + (e.value?.count ?? 0) > txMaxSize && size > 0 {
                try tx!.commit()
                tx = try db.beginWrite()
                size = 0
            }
            size += e.key.count + (e.value?.count ?? 0)
            if let value = e.value {
                try bucket(path).put(UnsafeRawBufferPointer(start: e.key.base, count: e.key.count),
                                     UnsafeRawBufferPointer(start: value.base, count: value.count))
                copied += 1
                if copied % 10_000 == 0 { progress?(copied) }
            } else {
                guard let child = try source.bucket(key) else { throw BoltError.bucketNotFound }
                let created = try bucket(path).createBucket(key)
                try created.setSequence(child.sequence)
                try copy(child, path: path + [key])
            }
            entry = try c.next()
        }
        if path.isEmpty == false, source.sequence != 0 { try bucket(path).setSequence(source.sequence) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
