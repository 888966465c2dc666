import Dispatch
import KeelIO

/// Many writers sharing one WAL and its fdatasyncs: each `append` returns once its entry is
/// durable. The writer that finds no flush running leads: it writes everything queued so far
/// with one sync, wakes those writers, and hands the lead to the first writer still queued
/// (group commit). Entry indexes are assigned in queue order.
public final class GroupCommitLog: @unchecked Sendable {
    private let wal: WAL

    final class Waiter: @unchecked Sendable {
        let semaphore = DispatchSemaphore(value: 0)
        var done = false
        var lead = false
    }

    private struct State {
        var nextIndex: UInt64
        var queued: [Entry] = []
        var waiters: [Waiter] = []
        var flushing = false
        var failure: WALError?
        var syncs = 0
    }
    private let state: Locked<State>

    /// - Parameter wal: a WAL open for appending (after `readAll` or `create`). The log owns it.
    public init(wal: WAL) {
        self.wal = wal
        state = Locked(State(nextIndex: wal.lastIndex + 1))
    }

    /// Batches written (one fdatasync each).
    public var syncCount: Int { state.withLock { $0.syncs } }

    /// Appends one entry with `data` at the next index and term `term`; returns its index once
    /// it is durable.
    @discardableResult
    public func append(term: UInt64, data: [UInt8]) throws(WALError) -> UInt64 {
        let me = Waiter()
        let index: UInt64 = try state.withLock { s throws(WALError) in
            if let failure = s.failure { throw failure }
            let index = s.nextIndex
            s.nextIndex += 1
            s.queued.append(Entry(term: term, index: index, data: data))
            s.waiters.append(me)
            if !s.flushing {
                s.flushing = true
                me.lead = true
            }
            return index
        }
        var batchesLed = 0
        while true {
            let (done, lead) = state.withLock { _ in (me.done, me.lead) }
            if lead {
                // Keep leading while writers are queued (no hand-off wake-up), up to a bound so
                // the leader's own append is not held back for long.
                batchesLed += 1
                flushOneBatch(leader: me, mayKeepLead: batchesLed < GroupCommitLog.batchesPerLeaderMax)
                continue
            }
            if done { break }
            me.semaphore.wait()
        }
        if let failure = state.withLock({ $0.failure }) { throw failure }
        return index
    }

    /// Batches one leader may write before handing the lead to a queued writer.
    static let batchesPerLeaderMax = 4

    /// Writes and syncs everything queued and wakes those writers. Then `leader` keeps the lead
    /// when allowed and writers are still queued; otherwise it passes the lead to the first
    /// queued writer, or releases it when none is queued.
    private func flushOneBatch(leader: Waiter, mayKeepLead: Bool) {
        let (entries, waiters) = state.withLock { s -> ([Entry], [Waiter]) in
            let batch = (s.queued, s.waiters)
            s.queued = []
            s.waiters = []
            if batch.0.isEmpty {
                s.flushing = false
                leader.lead = false
            }
            return batch
        }
        if entries.isEmpty { return }
        var failure: WALError?
        do throws(WALError) { try wal.save(hardState: HardState(), entries: entries) } catch { failure = error }
        let next: Waiter? = state.withLock { s in
            s.syncs += 1
            if let failure { s.failure = failure }
            for w in waiters { w.done = true }
            if mayKeepLead && !s.waiters.isEmpty && failure == nil { return nil }
            leader.lead = false
            if let first = s.waiters.first {
                first.lead = true
                return first
            }
            s.flushing = false
            return nil
        }
        for w in waiters where w !== leader { w.semaphore.signal() }
        next?.semaphore.signal()
    }

    /// Closes the WAL.
    public func close() throws(WALError) { try wal.close() }
}
