import KeelBolt
import KeelIO

/// etcd's snapshot format is a bbolt file. A backend of another engine (LMDB) is exported by
/// copying every top-level bucket into a temporary bolt file, which is then streamed and
/// removed; a bolt backend streams itself.
public enum BoltExport {
    /// Streams a bbolt-format copy of `backend` to `sink`; returns the bytes streamed.
    /// `scratchPath` is where the temporary bolt file goes (removed afterwards).
    @discardableResult
    public static func stream(_ backend: any Backend, scratchPath: String,
                              to sink: (UnsafeRawBufferPointer) throws(BackendError) -> Void) throws(BackendError) -> Int64 {
        if backend.kind.hasPrefix("bolt") { return try backend.backup(to: sink) }
        let fs = POSIXFileSystem()
        if fs.exists(scratchPath) { try? fs.remove(scratchPath) }
        var options = Options()
        options.noSync = true
        let copy = try BoltBackend(path: scratchPath, options: options)
        defer {
            try? copy.close()
            try? fs.remove(scratchPath)
        }
        try BackendCopy.copyBuckets(from: backend, to: copy)
        return try copy.backup(to: sink)
    }
}

/// Copies between engines.
public enum BackendCopy {
    /// Copies every top-level bucket of `source` (and its keys) into `target`, in transactions
    /// of 10,000 puts; `target` must not have the buckets yet.
    public static func copyBuckets(from source: any Backend, to target: any Backend) throws(BackendError) {
        let read = try source.beginRead()
        defer { read.end() }
        for name in try read.buckets(in: []) {
            let path: BucketPath = [name]
            let entries = try read.bucket(path).entries()
            var i = 0
            repeat {
                let tx = try target.beginWrite()
                do throws(BackendError) {
                    if i == 0 { try tx.createBucket(path) }
                    let bucket = try tx.bucket(path)
                    for (k, v) in entries[i..<min(i + 10_000, entries.count)] { try bucket.put(k, v) }
                    try tx.commit()
                } catch {
                    tx.rollback()
                    throw error
                }
                i += 10_000
            } while i < entries.count
        }
    }
}
