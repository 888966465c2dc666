import KeelIO

/// The hash `etcdctl snapshot status` prints: CRC-32C over, for each top-level bucket in name
/// order, the bucket name and then each key and value in key order. Nested bucket names count as
/// keys with empty values (as bbolt's ForEach presents them). `skip` leaves out (bucket, key)
/// pairs, as etcd's Hash RPC leaves out `meta/consistent_index`.
public func backendHash(_ tx: any BackendReadTx, skip: Set<[[UInt8]]> = []) throws(BackendError) -> UInt32 {
    var crc: UInt32 = 0
    for name in try tx.buckets(in: []) {
        crc = CRC32C.update(crc, name)
        let bucket = try tx.bucket([name])
        let children = try tx.buckets(in: [name])
        var childIndex = 0
        try bucket.range(from: UnsafeRawBufferPointer(start: nil, count: 0), to: nil, limit: 0, reverse: false) { k, v throws(BackendError) in
            // Interleave nested bucket names in key order.
            while childIndex < children.count, children[childIndex].withUnsafeBytes({ compareRaw($0, k) }) < 0 {
                crc = CRC32C.update(crc, children[childIndex])
                childIndex += 1
            }
            if skip.contains([name, Array(k)]) { return true }
            crc = CRC32C.update(crc, k)
            crc = CRC32C.update(crc, v)
            return true
        }
        while childIndex < children.count {
            crc = CRC32C.update(crc, children[childIndex])
            childIndex += 1
        }
    }
    return crc
}
