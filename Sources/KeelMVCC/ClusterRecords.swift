import KeelBackend

/// The cluster records etcd 3.4 keeps in the backend beside the key space: `members/<hex id>`
/// (the member as JSON), `members_removed/<hex id>` ("removed"), `cluster/clusterVersion`.
/// Written in the batch with the entry that changed them, as etcd writes them.
extension KVStore {
    static let membersBucket: BucketPath = [Array("members".utf8)]
    static let membersRemovedBucket: BucketPath = [Array("members_removed".utf8)]
    static let clusterBucket: BucketPath = [Array("cluster".utf8)]

    /// Saves a member's record (`json` as etcd marshals `membership.Member`).
    public func saveMember(id: UInt64, json: [UInt8]) throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try batch(changes: 1) { tx throws(BackendError) in
                try Self.ensureClusterBuckets(tx)
                try tx.bucket(Self.membersBucket).put(Array(String(id, radix: 16).utf8), json)
            }
        }
    }

    /// Removes a member's record and marks its ID removed.
    public func removeMember(id: UInt64) throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try batch(changes: 1) { tx throws(BackendError) in
                try Self.ensureClusterBuckets(tx)
                let key = Array(String(id, radix: 16).utf8)
                try tx.bucket(Self.membersBucket).delete(key)
                try tx.bucket(Self.membersRemovedBucket).put(key, Array("removed".utf8))
            }
        }
    }

    /// Saves the cluster version (`cluster/clusterVersion`).
    public func saveClusterVersion(_ version: String) throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try batch(changes: 1) { tx throws(BackendError) in
                try Self.ensureClusterBuckets(tx)
                try tx.bucket(Self.clusterBucket).put(Array("clusterVersion".utf8), Array(version.utf8))
            }
        }
    }

    private static func ensureClusterBuckets(_ tx: any BackendWriteTx) throws(BackendError) {
        for b in [membersBucket, membersRemovedBucket, clusterBucket] where (try? tx.bucket(b)) == nil {
            try tx.createBucket(b)
        }
    }

    /// The buckets etcd's server (not its mvcc package) creates at every start: `alarm`.
    public func prepareServerBuckets() throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try batch(changes: 0) { tx throws(BackendError) in
                if (try? tx.bucket(Self.alarmBucket)) == nil { try tx.createBucket(Self.alarmBucket) }
            }
        }
    }
}
