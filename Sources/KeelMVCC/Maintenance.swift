import KeelBackend

/// Maintenance on the whole store: online defragmentation and backend snapshots (etcd's
/// Maintenance/Defragment and Maintenance/Snapshot).
extension KVStore {
    /// Commits the open batch and rewrites the backend compactly while holding the store's lock
    /// (writers and readers of this store wait; etcd's defragment also blocks the backend).
    /// - Throws: `.backend` when the rewrite failed (the original file is left in place).
    public func defragment() throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try forceCommitLocked()
            cachedKeyBucket = nil
            do { try backend.defragment() } catch { throw MVCCError.backend("defragment: \(error)") }
        }
    }

    /// Commits the open batch, then streams a consistent copy of the backend file (as of that
    /// commit) to `sink` while writers continue. Returns the bytes written. With
    /// `boltScratchPath`, a backend of another engine is exported as a bbolt file (etcd's
    /// snapshot format) through a temporary file there. `commitFirst: false` is for an owner
    /// that committed on the thread owning the batch (an LMDB write transaction is tied to
    /// its thread).
    @discardableResult
    public func backup(boltScratchPath: String? = nil, commitFirst: Bool = true,
                       to sink: (UnsafeRawBufferPointer) throws(BackendError) -> Void) throws(MVCCError) -> Int64 {
        if commitFirst { try forceCommit() }
        do {
            if let boltScratchPath { return try BoltExport.stream(backend, scratchPath: boltScratchPath, to: sink) }
            return try backend.backup(to: sink)
        } catch { throw MVCCError.backend("snapshot: \(error)") }
    }
}
