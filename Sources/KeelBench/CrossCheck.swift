import KeelBackend
import KeelIO

/// The seeded random workload behind `keelutl crosscheck`: puts, deletes, gets, range scans
/// (both directions, with limits), nested buckets created and dropped, large values, commits,
/// rollbacks and reopens, all through a `CrossCheckedBackend`.
public struct CrossCheck {
    /// Counts of what ran.
    public struct Report: Sendable, CustomStringConvertible {
        public var operations = 0
        public var puts = 0
        public var deletes = 0
        public var gets = 0
        public var ranges = 0
        public var bucketOps = 0
        public var commits = 0
        public var rollbacks = 0
        public var reopens = 0
        public var comparisons = 0

        public var description: String {
            "\(operations) operations: \(puts) puts, \(deletes) deletes, \(gets) gets, \(ranges) range scans, " +
                "\(bucketOps) bucket operations, \(commits) commits, \(rollbacks) rollbacks, \(reopens) reopens; \(comparisons) comparisons"
        }
    }

    public let operations: Int
    public let seed: UInt64
    public let valueSizeMax: Int
    /// Opens the pair of backends (again after each reopen).
    public let open: () throws(BackendError) -> CrossCheckedBackend

    public init(operations: Int, seed: UInt64, valueSizeMax: Int = 10_000, open: @escaping () throws(BackendError) -> CrossCheckedBackend) {
        self.operations = operations
        self.seed = seed
        self.valueSizeMax = valueSizeMax
        self.open = open
    }

    /// Runs the workload. Throws `BackendError.divergence` at the first difference.
    public func run() throws(BackendError) -> Report {
        var rng = SplitMix64(seed: seed)
        var report = Report()
        var backend = try open()
        var known: [BucketPath] = []
        // Start from what the store already holds.
        do {
            let tx = try backend.beginRead()
            known = try allBuckets(tx, [])
            tx.end()
        }
        var tx: (any BackendWriteTx)?
        var txBuckets = known
        let keySpace = 300
        func key(_ rng: inout SplitMix64) -> [UInt8] {
            // Mostly short keys; sometimes long ones near LMDB's 511-byte limit.
            let n = Int(rng.next() % UInt64(keySpace))
            var k = Array("k\(n)".utf8)
            if rng.next() % 40 == 0 { k += [UInt8](repeating: UInt8(n % 251), count: 400 + n % 100) }
            return k
        }
        while report.operations < operations {
            report.operations += 1
            if tx == nil {
                tx = try backend.beginWrite()
                txBuckets = known
            }
            let roll = rng.next() % 1000
            let wtx = tx!
            switch roll {
            case 0..<15:  // commit
                try wtx.commit()
                tx = nil
                known = txBuckets
                report.commits += 1
            case 15..<18:  // rollback
                wtx.rollback()
                tx = nil
                report.rollbacks += 1
            case 18..<20:  // reopen
                try wtx.commit()
                tx = nil
                known = txBuckets
                report.comparisons += backend.comparisons
                try backend.close()
                backend = try open()
                report.reopens += 1
                report.commits += 1
            case 20..<45:  // bucket create / delete
                report.bucketOps += 1
                if txBuckets.isEmpty || rng.next() % 3 != 0 {
                    let parent: BucketPath = txBuckets.isEmpty || rng.next() % 2 == 0 ? [] : txBuckets[Int(rng.next() % UInt64(txBuckets.count))]
                    guard parent.count < 3 else { continue }
                    let path = parent + [Array("b\(rng.next() % 6)".utf8)]
                    do {
                        try wtx.createBucket(path)
                        txBuckets.append(path)
                    } catch let error as BackendError where error.category != "divergence" {
                        // bucketExists or incompatibleValue: both engines agreed.
                    }
                } else {
                    let path = txBuckets[Int(rng.next() % UInt64(txBuckets.count))]
                    try wtx.deleteBucket(path)
                    txBuckets.removeAll { $0.starts(with: path) }
                }
            default:
                if txBuckets.isEmpty {
                    let path: BucketPath = [Array("top".utf8)]
                    try wtx.createBucket(path)
                    txBuckets.append(path)
                    continue
                }
                let path = txBuckets[Int(rng.next() % UInt64(txBuckets.count))]
                let bucket = try wtx.bucket(path)
                let k = key(&rng)
                switch roll {
                case 45..<600:
                    let size = rng.next() % 10 == 0 ? Int(rng.next() % UInt64(valueSizeMax + 1)) : Int(rng.next() % 200)
                    let value = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    do { try bucket.put(k, value); report.puts += 1 } catch let error as BackendError where error.category == "incompatibleValue" {}
                case 600..<750:
                    do { try bucket.delete(k); report.deletes += 1 } catch let error as BackendError where error.category == "incompatibleValue" {}
                case 750..<900:
                    _ = try bucket.get(k)
                    report.gets += 1
                default:
                    let end: [UInt8]? = rng.next() % 3 == 0 ? nil : key(&rng)
                    _ = try bucket.entries(from: k, to: end, limit: Int(rng.next() % 4) * 7, reverse: rng.next() % 2 == 0)
                    report.ranges += 1
                    // And a read transaction seeing the committed state.
                    if rng.next() % 4 == 0 {
                        let reader = try backend.beginRead()
                        _ = try reader.buckets(in: [])
                        if let p = known.first, let b = try? reader.bucket(p) { _ = try b.entries() }
                        reader.end()
                    }
                }
            }
        }
        try tx?.commit()
        report.commits += tx == nil ? 0 : 1
        report.comparisons += backend.comparisons
        try backend.close()
        return report
    }

    private func allBuckets(_ tx: any BackendReadTx, _ path: BucketPath) throws(BackendError) -> [BucketPath] {
        var result: [BucketPath] = []
        for name in try tx.buckets(in: path) {
            result.append(path + [name])
            result += try allBuckets(tx, path + [name])
        }
        return result
    }
}
