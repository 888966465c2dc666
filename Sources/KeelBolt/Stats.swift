/// Page and key counts of a bucket tree, summed over its nested buckets (bbolt's BucketStats).
public struct BucketStats: Sendable, Equatable {
    /// Logical branch pages, and the overflow pages they use.
    public var branchPageN = 0
    public var branchOverflowN = 0
    /// Logical leaf pages, and the overflow pages they use.
    public var leafPageN = 0
    public var leafOverflowN = 0
    /// Keys (values and nested buckets).
    public var keyN = 0
    /// Levels in the deepest tree.
    public var depth = 0
    /// Bytes allocated to and used by branch pages.
    public var branchAlloc = 0
    public var branchInuse = 0
    /// Bytes allocated to and used by leaf pages.
    public var leafAlloc = 0
    public var leafInuse = 0
    /// Buckets including this one, and how many of them are inline.
    public var bucketN = 0
    public var inlineBucketN = 0
    /// Bytes used by inline buckets.
    public var inlineBucketInuse = 0

    public init() {}

    /// Adds another bucket's statistics (depth: the deeper).
    public mutating func add(_ other: BucketStats) {
        branchPageN += other.branchPageN
        branchOverflowN += other.branchOverflowN
        leafPageN += other.leafPageN
        leafOverflowN += other.leafOverflowN
        keyN += other.keyN
        depth = max(depth, other.depth)
        branchAlloc += other.branchAlloc
        branchInuse += other.branchInuse
        leafAlloc += other.leafAlloc
        leafInuse += other.leafInuse
        bucketN += other.bucketN
        inlineBucketN += other.inlineBucketN
        inlineBucketInuse += other.inlineBucketInuse
    }
}

extension Bucket {
    /// Statistics of this bucket and everything nested in it, as committed (materialised but
    /// uncommitted nodes are counted from their pages).
    public func stats() throws(BoltError) -> BucketStats {
        var visited = Set<UInt64>()
        return try stats(visited: &visited)
    }

    /// `stats()` with the pages seen so far, across nested buckets too.
    private func stats(visited: inout Set<UInt64>) throws(BoltError) -> BucketStats {
        var s = BucketStats()
        s.bucketN = 1
        let pageSize = tx.db.pageSize
        var subBuckets: [[UInt8]] = []
        if root == 0 {
            s.inlineBucketN = 1
            if let page = inlinePage {
                s.keyN = page.count
                s.inlineBucketInuse = page.usedBytes(pageID: root)
            }
            s.depth = 1
        } else {
            try visit(root, depth: 1, pageSize: pageSize, into: &s, subBuckets: &subBuckets, visited: &visited)
        }
        if root == 0, let page = inlinePage {
            for i in 0..<page.count where page.leafFlags(i) & bucketLeafFlag != 0 {
                subBuckets.append(try page.leafKey(i, pageID: 0).bytes)
            }
        }
        for name in subBuckets {
            if let child = try bucket(name) { s.add(try child.stats(visited: &visited)) }
        }
        return s
    }

    /// Adds one page (and its subtree) to `s`. `visited` keeps a damaged file whose branches
    /// share pages from being counted (and walked) more than once.
    private func visit(_ pgid: UInt64, depth: Int, pageSize: Int, into s: inout BucketStats, subBuckets: inout [[UInt8]],
                       visited: inout Set<UInt64>) throws(BoltError) {
        if depth > 64 { throw BoltError.corruptPage(id: pgid, reason: "tree deeper than 64 levels") }
        guard visited.insert(pgid).inserted else {
            throw BoltError.corruptPage(id: pgid, reason: "the page is referenced more than once in the tree")
        }
        let page = try tx.page(pgid)
        s.depth = max(s.depth, depth)
        let overflow = Int(page.overflow)
        if page.isLeaf {
            s.leafPageN += 1
            s.leafOverflowN += overflow
            s.leafAlloc += (overflow + 1) * pageSize
            s.keyN += page.count
            for i in 0..<page.count where page.leafFlags(i) & bucketLeafFlag != 0 {
                subBuckets.append(try page.leafKey(i, pageID: pgid).bytes)
            }
            s.leafInuse += page.usedBytes(pageID: pgid)
        } else {
            s.branchPageN += 1
            s.branchOverflowN += overflow
            s.branchAlloc += (overflow + 1) * pageSize
            s.branchInuse += page.usedBytes(pageID: pgid)
            for i in 0..<page.count {
                try visit(page.branchChild(i), depth: depth + 1, pageSize: pageSize, into: &s, subBuckets: &subBuckets, visited: &visited)
            }
        }
    }
}
