import Dispatch
import KeelIO

/// etcd's batch transaction: one long-lived write transaction that commits when `batchLimit`
/// changes are pending, or when `commitIfDue` finds the oldest pending change older than
/// `interval` (etcd: 10,000 changes or 100 ms). Readers see committed data only.
///
/// A `write` that returns has *staged* its changes in the current batch; they are durable
/// only once that batch commits (`isCommitted(batch)` for the batch `currentBatch` named). A write whose body throws, or a commit that fails, cannot be undone on its
/// own, so the whole batch is rolled back — and because earlier writes of that batch had
/// returned, the writer then fails every call with `.batchAborted` (naming the batch and what
/// it lost) until the owner calls `reset()`. A lost batch is never silent.
///
/// Thread-safe: writes from any thread are serialised.
public final class BatchedWriter: @unchecked Sendable {
    public let backend: any Backend
    public let batchLimit: Int
    public let intervalNanoseconds: UInt64
    private struct State {
        var tx: (any BackendWriteTx)?
        var pending = 0
        var writes = 0
        var firstPendingAt: UInt64 = 0
        var commits = 0
        /// The number of the batch being filled (1-based).
        var batch: UInt64 = 1
        var failure: String?
        /// The highest batch number committed, and the batches lost (one per `reset()`).
        var lastCommitted: UInt64 = 0
        var aborted: Set<UInt64> = []
        var beforeCommit: ((any BackendWriteTx) throws(BackendError) -> Void)?
    }
    private let state = Locked(State())

    public init(backend: any Backend, batchLimit: Int = 10_000, intervalSeconds: Double = 0.1) {
        self.backend = backend
        self.batchLimit = batchLimit
        intervalNanoseconds = UInt64(intervalSeconds * 1e9)
    }

    /// Runs `body` in the batch's write transaction; `changes` is how many puts/deletes it made.
    /// Commits when the batch is full.
    /// - Throws: `.batchAborted` when `body` throws (its error is in the message) or when the
    ///   batch was lost earlier; the error a full batch's commit raised, wrapped the same way.
    public func write<T>(changes: Int = 1, _ body: (any BackendWriteTx) throws(BackendError) -> T) throws(BackendError) -> T {
        try state.withLock { s throws(BackendError) in
            if let failure = s.failure { throw BackendError.batchAborted(failure) }
            if s.tx == nil {
                do throws(BackendError) { s.tx = try backend.beginWrite() } catch {
                    throw BackendError.batchAborted(abort(&s, because: "beginning batch \(s.batch): \(error)", writeFailed: false))
                }
            }
            let result: T
            do throws(BackendError) {
                result = try body(s.tx!)
            } catch {
                throw BackendError.batchAborted(abort(&s, because: "a write in batch \(s.batch) failed: \(error)", writeFailed: true))
            }
            if s.pending == 0 { s.firstPendingAt = monotonicNanoseconds() }
            s.pending += changes
            s.writes += 1
            if s.pending >= batchLimit { try commitLocked(&s) }
            return result
        }
    }

    /// Commits when something is pending and the interval has passed. Call it from a timer.
    public func commitIfDue() throws(BackendError) {
        try state.withLock { s throws(BackendError) in
            if let failure = s.failure { throw BackendError.batchAborted(failure) }
            if s.pending > 0, monotonicNanoseconds() - s.firstPendingAt >= intervalNanoseconds { try commitLocked(&s) }
        }
    }

    /// Commits whatever is pending now.
    public func forceCommit() throws(BackendError) {
        try state.withLock { s throws(BackendError) in
            if let failure = s.failure { throw BackendError.batchAborted(failure) }
            try commitLocked(&s)
        }
    }

    /// Pending changes and commits so far.
    public var counters: (pending: Int, commits: Int) { state.withLock { ($0.pending, $0.commits) } }

    /// The batch that a `write` made now would join.
    public var currentBatch: UInt64 { state.withLock { $0.batch } }

    /// Whether batch `n` committed (its writes are durable); false while it is open and for
    /// ever when it was aborted.
    public func isCommitted(_ n: UInt64) -> Bool {
        state.withLock { n <= $0.lastCommitted && !$0.aborted.contains(n) }
    }

    /// Why the writer refuses calls, when a batch was lost.
    public var failure: String? { state.withLock { $0.failure } }

    /// Accepts the loss of the aborted batch (after the owner rebuilt its state from the
    /// backend) and lets writes start a new batch.
    public func reset() {
        state.withLock { s in
            s.failure = nil
        }
    }

    /// Runs `hook` inside the batch transaction right before each commit (etcd 3.5's pre-commit
    /// hook: the owner writes what must land in the same transaction, such as the applied index).
    public func setBeforeCommit(_ hook: @escaping (any BackendWriteTx) throws(BackendError) -> Void) {
        state.withLock { $0.beforeCommit = hook }
    }

    /// Rolls back the open batch on purpose (its owner found it cannot be committed) and
    /// refuses calls until `reset()`, as after a failed write.
    public func abort(because cause: String) {
        state.withLock { s in _ = abort(&s, because: cause, writeFailed: false) }
    }

    private func commitLocked(_ s: inout State) throws(BackendError) {
        guard let tx = s.tx else { return }
        do throws(BackendError) {
            try s.beforeCommit?(tx)
            try tx.commit()
        } catch {
            s.tx = nil
            throw BackendError.batchAborted(abort(&s, because: "committing batch \(s.batch) failed: \(error)", writeFailed: false))
        }
        s.tx = nil
        s.pending = 0
        s.writes = 0
        s.commits += 1
        s.lastCommitted = s.batch
        s.batch += 1
    }

    /// Rolls the batch back and makes the writer refuse calls; returns the failure message.
    private func abort(_ s: inout State, because cause: String, writeFailed: Bool) -> String {
        s.tx?.rollback()
        s.tx = nil
        let message = "\(cause); batch \(s.batch) was rolled back with \(s.pending) staged changes from \(s.writes) earlier writes that had returned; call reset() after rebuilding from the backend"
        s.failure = message
        s.aborted.insert(s.batch)
        s.pending = 0
        s.writes = 0
        s.batch += 1
        return message
    }
}
