import Dispatch
import KeelIO

/// etcd's batch transaction: one long-lived write transaction that commits when `batchLimit`
/// changes are pending, or when `commitIfDue` finds the oldest pending change older than
/// `interval` (etcd: 10,000 changes or 100 ms). Readers see committed data only.
///
/// Thread-safe: writes from any thread are serialised.
public final class BatchedWriter: @unchecked Sendable {
    public let backend: any Backend
    public let batchLimit: Int
    public let intervalNanoseconds: UInt64
    private struct State {
        var tx: (any BackendWriteTx)?
        var pending = 0
        var firstPendingAt: UInt64 = 0
        var commits = 0
    }
    private let state = Locked(State())

    public init(backend: any Backend, batchLimit: Int = 10_000, intervalSeconds: Double = 0.1) {
        self.backend = backend
        self.batchLimit = batchLimit
        intervalNanoseconds = UInt64(intervalSeconds * 1e9)
    }

    /// Runs `body` in the batch's write transaction; `changes` is how many puts/deletes it made.
    /// Commits when the batch is full.
    public func write<T>(changes: Int = 1, _ body: (any BackendWriteTx) throws(BackendError) -> T) throws(BackendError) -> T {
        try state.withLock { s throws(BackendError) in
            if s.tx == nil { s.tx = try backend.beginWrite() }
            let result: T
            do throws(BackendError) {
                result = try body(s.tx!)
            } catch {
                // A failed write poisons the batch: drop it rather than commit half of it.
                s.tx?.rollback()
                s.tx = nil
                s.pending = 0
                throw error
            }
            if s.pending == 0 { s.firstPendingAt = monotonicNanoseconds() }
            s.pending += changes
            if s.pending >= batchLimit { try commitLocked(&s) }
            return result
        }
    }

    /// Commits when something is pending and the interval has passed. Call it from a timer.
    public func commitIfDue() throws(BackendError) {
        try state.withLock { s throws(BackendError) in
            if s.pending > 0, monotonicNanoseconds() - s.firstPendingAt >= intervalNanoseconds { try commitLocked(&s) }
        }
    }

    /// Commits whatever is pending now.
    public func forceCommit() throws(BackendError) {
        try state.withLock { s throws(BackendError) in try commitLocked(&s) }
    }

    /// Pending changes and commits so far.
    public var counters: (pending: Int, commits: Int) { state.withLock { ($0.pending, $0.commits) } }

    private func commitLocked(_ s: inout State) throws(BackendError) {
        guard let tx = s.tx else { return }
        s.tx = nil
        s.pending = 0
        try tx.commit()
        s.commits += 1
    }
}
