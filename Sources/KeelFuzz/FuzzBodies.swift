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
            if !readOnly {
                _ = try? db.update { tx throws(BoltError) in try tx.createBucketIfNotExists([0x66]).put([1], [2]) }
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
    }
}
