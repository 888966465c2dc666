import Foundation

/// A counter readable from any thread.
public final class NodeCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value: UInt64 = 0
    func add(_ n: UInt64 = 1) { lock.withLock { value &+= n } }
    func store(_ n: UInt64) { lock.withLock { value = n } }
    public func load() -> UInt64 { lock.withLock { value } }
}

/// A latency histogram with Prometheus buckets (etcd's: 1 ms doubling 14 times).
public final class DurationHistogram: @unchecked Sendable {
    public struct Snapshot: Sendable {
        public var bounds: [Double]
        /// Observations per bucket (not cumulative); the last bucket is above every bound.
        public var counts: [UInt64]
        public var count: UInt64
        public var sum: Double
    }

    private let lock = NSLock()
    private var s: Snapshot

    public init(bounds: [Double] = (0..<14).map { 0.001 * Double(1 << $0) }) {
        s = Snapshot(bounds: bounds, counts: [UInt64](repeating: 0, count: bounds.count + 1), count: 0, sum: 0)
    }

    public func observe(seconds: Double) {
        lock.withLock {
            let i = s.bounds.firstIndex { seconds <= $0 } ?? s.bounds.count
            s.counts[i] += 1
            s.count += 1
            s.sum += seconds
        }
    }

    public func snapshot() -> Snapshot { lock.withLock { s } }
}

/// What the node driver measures for `/metrics` (etcd's names are given by the server).
public final class NodeMetrics: Sendable {
    /// `etcd_disk_wal_fsync_duration_seconds`: each WAL save that had to sync.
    public let walFsync = DurationHistogram()
    /// `etcd_disk_backend_commit_duration_seconds`: each backend batch commit.
    public let backendCommit = DurationHistogram()
    /// `etcd_server_leader_changes_seen_total`.
    public let leaderChanges = NodeCounter()
    /// The raft commit index (`etcd_server_proposals_committed_total`).
    public let committedIndex = NodeCounter()
    public init() {}
}
