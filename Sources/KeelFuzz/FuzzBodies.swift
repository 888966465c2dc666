import KeelBolt
import KeelIO
import KeelWAL

/// The bodies of Keel's fuzz targets, shared by the libFuzzer executables and the corpus replay
/// test. Each must return normally for every input: a typed error is fine, a trap is a bug.
public enum FuzzBodies {
    /// Opens `bytes` as a bbolt file (read-only and read-write) and walks everything it can.
    public static func boltFile(_ bytes: [UInt8]) {
        for readOnly in [true, false] {
            let fs = SimulatedFileSystem(seed: 1, fileCapacity: 16 << 20)
            guard bytes.count < 8 << 20 else { return }
            fs.setContents(of: "/f.db", bytes)
            var options = Options()
            options.fileSystem = fs
            options.readOnly = readOnly
            options.pageSize = 512
            options.mapReserveBytes = 16 << 20
            guard let db = try? DB.open(path: "/f.db", options: options) else { continue }
            _ = try? db.view { tx throws(BoltError) in
                _ = tx.check()
                try walk(tx.rootBucket, depth: 0)
            }
            _ = try? db.view { tx throws(BoltError) in _ = try tx.rootBucket.stats() }
            if !readOnly { mutate(db) }
            // Compacting the damaged file into a fresh one.
            let copyFS = SimulatedFileSystem(seed: 3, fileCapacity: 16 << 20)
            var copyOptions = Options()
            copyOptions.fileSystem = copyFS
            copyOptions.pageSize = 512
            copyOptions.mapReserveBytes = 16 << 20
            if let copy = try? DB.open(path: "/copy.db", options: copyOptions) {
                _ = try? DB.compact(from: db, into: copy, txMaxSize: 4096)
                try? copy.close()
            }
            try? db.close()
        }
        if let inspector = try? PageInspector(path: "/f.db", fileSystem: {
            let fs = SimulatedFileSystem(seed: 2, fileCapacity: 16 << 20)
            fs.setContents(of: "/f.db", bytes)
            return fs
        }(), fallbackPageSize: 512) {
            _ = inspector.allPages()
        }
    }

    /// Writes into a damaged file: puts, deletes of existing keys (enough to rebalance),
    /// sequences, nested bucket creation and deletion, each in its own transaction, then a
    /// check and a walk of what was committed.
    private static func mutate(_ db: DB) {
        var firstBucket: [UInt8]?
        var keys: [[UInt8]] = []
        _ = try? db.view { tx throws(BoltError) in
            let c = tx.cursor()
            var e = try c.first()
            while let entry = e {
                if entry.value == nil { firstBucket = entry.key.bytes; break }
                e = try c.next()
            }
            if let name = firstBucket, let bucket = try tx.bucket(name) {
                let bc = bucket.cursor()
                var k = try bc.first()
                while let entry = k, keys.count < 2_000 {
                    keys.append(entry.key.bytes)
                    k = try bc.next()
                }
            }
        }
        _ = try? db.update { tx throws(BoltError) in try tx.createBucketIfNotExists([0x66]).put([1], [2]) }
        if let name = firstBucket {
            _ = try? db.update { tx throws(BoltError) in
                guard let bucket = try tx.bucket(name) else { return }
                _ = try bucket.nextSequence()
                try bucket.setSequence(42)
                for (i, key) in keys.enumerated() where i % 4 != 0 { try? bucket.delete(key) }
                for key in keys.prefix(20) { try bucket.put(key, [UInt8](repeating: 7, count: 300)) }
            }
            _ = try? db.update { tx throws(BoltError) in
                guard let bucket = try tx.bucket(name) else { return }
                _ = try bucket.createBucketIfNotExists([0x6e])
                let c = bucket.cursor()
                var e = try c.first()
                var n = 0
                while e != nil, n < 50 { try c.delete(); e = try c.seek([0]); n += 1 }
            }
            _ = try? db.update { tx throws(BoltError) in try tx.deleteBucket(name) }
        }
        _ = try? db.view { tx throws(BoltError) in
            _ = tx.check()
            try walk(tx.rootBucket, depth: 0)
        }
    }

    private static func walk(_ bucket: Bucket, depth: Int) throws(BoltError) {
        guard depth < 8 else { return }
        let c = bucket.cursor()
        var e = try c.first()
        var names: [[UInt8]] = []
        var n = 0
        while let entry = e, n < 10_000 {
            if entry.value == nil { names.append(entry.key.bytes) }
            e = try c.next()
            n += 1
        }
        e = try c.last()
        n = 0
        while e != nil, n < 10_000 { e = try c.prev(); n += 1 }
        for name in names { if let child = try bucket.bucket(name) { try walk(child, depth: depth + 1) } }
    }

    /// Reads `bytes` as the only WAL segment.
    public static func walSegment(_ bytes: [UInt8]) {
        let fs = SimulatedFileSystem(seed: 1, fileCapacity: 16 << 20)
        guard bytes.count < 8 << 20 else { return }
        try? fs.makeDirectory("/wal", intermediate: true)
        fs.setContents(of: "/wal/0000000000000000-0000000000000000.wal", bytes)
        if let wal = try? WAL.open(fileSystem: fs, directory: "/wal", forWriting: false) {
            _ = try? wal.readAll()
        }
        _ = try? WAL.dumpRecords(fileSystem: fs, directory: "/wal") { _ throws(WALError) in }
        _ = try? WAL.repair(fileSystem: fs, directory: "/wal")
        // Open for appending (after a repair, if one happened) and append.
        if let wal = try? WAL.open(fileSystem: fs, directory: "/wal") {
            wal.segmentSize = 1 << 16
            if let contents = try? wal.readAll() {
                let next = (contents.entries.last?.index ?? wal.start.index) + 1
                _ = try? wal.save(hardState: HardState(term: contents.hardState.term + 1, vote: 1, commit: next),
                                  entries: [Entry(term: contents.hardState.term + 1, index: next, data: [1, 2, 3])])
                _ = try? WAL.open(fileSystem: fs, directory: "/wal", forWriting: false).readAll()
            }
            try? wal.close()
        }
    }
}
