/// The log as Raft sees it: a snapshot and entries persisted in `storage`, followed by an
/// unstable snapshot and entries not yet persisted (handed out in `Ready`), with the commit
/// and apply points.
final class RaftLog {
    let storage: any RaftStorage
    /// A snapshot received from the leader and not yet persisted.
    @exclusivity(unchecked) private(set) var unstableSnapshot: RaftSnapshot?
    /// Entries not yet persisted; `unstable[0]` has index `unstableOffset`.
    @exclusivity(unchecked) private(set) var unstable: [RaftEntry] = []
    @exclusivity(unchecked) private(set) var unstableOffset: UInt64
    @exclusivity(unchecked) var committed: UInt64 = 0
    @exclusivity(unchecked) var applied: UInt64 = 0
    /// The most bytes of committed entries handed out in one `Ready`.
    let maxCommittedBytesPerReady: UInt64

    init(storage: any RaftStorage, maxCommittedBytesPerReady: UInt64) {
        self.storage = storage
        self.maxCommittedBytesPerReady = maxCommittedBytesPerReady
        unstableOffset = storage.lastIndex() + 1
        committed = storage.firstIndex() - 1
        applied = storage.firstIndex() - 1
    }

    var firstIndex: UInt64 {
        if let s = unstableSnapshot { return s.index + 1 }
        return storage.firstIndex()
    }

    var lastIndex: UInt64 {
        if !unstable.isEmpty { return unstableOffset + UInt64(unstable.count) - 1 }
        if let s = unstableSnapshot { return s.index }
        return storage.lastIndex()
    }

    var lastTerm: UInt64 { (try? term(lastIndex)) ?? 0 }

    private func unstableTerm(_ i: UInt64) -> UInt64? {
        if i < unstableOffset {
            if let s = unstableSnapshot, s.index == i { return s.term }
            return nil
        }
        let k = i - unstableOffset
        return k < UInt64(unstable.count) ? unstable[Int(k)].term : nil
    }

    /// The term of entry `i`: 0 outside `[firstIndex - 1, lastIndex]` (as etcd answers);
    /// throws `.compacted` / `.unavailable` when the storage lost it.
    func term(_ i: UInt64) throws(RaftError) -> UInt64 {
        if i < firstIndex - 1 || i > lastIndex { return 0 }
        if let t = unstableTerm(i) { return t }
        do {
            return try storage.term(i)
        } catch {
            switch error {
            case .compacted, .unavailable: throw error
            default: throw RaftError.corrupt("storage term(\(i)): \(error)")
            }
        }
    }

    /// The term, or 0 when compacted away.
    func termOrZero(_ i: UInt64) -> UInt64 { (try? term(i)) ?? 0 }

    func matchTerm(_ i: UInt64, _ t: UInt64) -> Bool {
        guard let got = try? term(i) else { return false }
        return got == t
    }

    /// Raft's §5.4.1 check: is a log ending at (index, term) at least as up to date as ours?
    func isUpToDate(index: UInt64, term: UInt64) -> Bool {
        let lt = lastTerm
        return term > lt || (term == lt && index >= lastIndex)
    }

    /// Appends after truncating anything from the first entry's index on; returns the last index.
    @discardableResult
    func append(_ entries: RaftEntries) throws(RaftError) -> UInt64 {
        guard let first = entries.first else { return lastIndex }
        if first.index - 1 < committed { throw RaftError.corrupt("append after \(first.index - 1) is below the commit index \(committed)") }
        let after = first.index
        if after == unstableOffset + UInt64(unstable.count) {
            if entries.count == 1 { unstable.append(first) } else { unstable.append(contentsOf: entries) }
        } else if after <= unstableOffset {
            // Replaces the unstable entries (and overwrites persisted ones from `after` on).
            unstableOffset = after
            unstable.removeAll(keepingCapacity: true)
            unstable.append(contentsOf: entries)
        } else {
            unstable.removeSubrange(Int(after - unstableOffset)...)
            unstable.append(contentsOf: entries)
        }
        return lastIndex
    }

    /// Appends one entry right after the last (the leader's proposal path).
    func appendOne(_ e: RaftEntry) throws(RaftError) -> UInt64 {
        if e.index - 1 < committed { throw RaftError.corrupt("append after \(e.index - 1) is below the commit index \(committed)") }
        if e.index == unstableOffset + UInt64(unstable.count) {
            unstable.append(e)
            return e.index
        }
        return try append(RaftEntries(e))
    }

    /// The index of the first entry whose term conflicts with ours (or that we lack); 0 if none.
    func findConflict(_ entries: RaftEntries) -> UInt64 {
        for e in entries where !matchTerm(e.index, e.term) { return e.index }
        return 0
    }

    /// A follower's append: when our entry at `index` has `logTerm`, appends what is new and
    /// commits up to `commit`; returns the last new index, or nil when the terms do not match.
    func maybeAppend(index: UInt64, logTerm: UInt64, commit: UInt64, entries: RaftEntries) throws(RaftError) -> UInt64? {
        // Entries come from a peer: they must follow `index` one by one, or the arithmetic
        // below (and the log) would go wrong.
        if index > UInt64.max - UInt64(entries.count) { throw RaftError.corrupt("append after index \(index) overflows") }
        for (i, e) in entries.enumerated() where e.index != index + UInt64(i) + 1 {
            throw RaftError.corrupt("append after index \(index) carries entry \(e.index) at position \(i)")
        }
        guard matchTerm(index, logTerm) else { return nil }
        let lastNew = index + UInt64(entries.count)
        let conflict = findConflict(entries)
        if conflict != 0 {
            if conflict <= committed { throw RaftError.corrupt("entry \(conflict) conflicts with committed entry (committed \(committed))") }
            let from = Int(conflict - index - 1)
            try append(entries.tail(from: from))
        }
        try self.commit(to: min(commit, lastNew))
        return lastNew
    }

    func commit(to index: UInt64) throws(RaftError) {
        guard committed < index else { return }
        if lastIndex < index { throw RaftError.corrupt("commit index \(index) is beyond the last index \(lastIndex): was the log truncated or lost?") }
        committed = index
    }

    /// A leader's commit: only an entry of the current term is committed by counting (§5.4.2).
    func maybeCommit(index: UInt64, term: UInt64) -> Bool {
        guard index > committed, index <= lastIndex, termOrZero(index) == term else { return false }
        committed = index
        return true
    }

    /// Entries in `[low, high)`, up to `maxBytes` (at least one). A single entry comes back
    /// without a heap allocation.
    func slice(_ low: UInt64, _ high: UInt64, maxBytes: UInt64) throws(RaftError) -> RaftEntries {
        if low > high { throw RaftError.corrupt("invalid slice \(low) > \(high)") }
        if low < firstIndex { throw RaftError.compacted }
        if high > lastIndex + 1 { throw RaftError.corrupt("slice [\(low), \(high)) out of bound [\(firstIndex), \(lastIndex)]") }
        if low == high { return RaftEntries() }
        if low >= unstableOffset {
            return limitedRun(unstable[Int(low - unstableOffset)..<Int(high - unstableOffset)], maxBytes)
        }
        let upper = min(high, unstableOffset)
        var out: RaftEntries
        do {
            out = try storage.entries(low, upper, maxBytes: maxBytes)
        } catch {
            if error == .compacted { throw error }
            throw RaftError.corrupt("entries [\(low), \(upper)) are unavailable from storage: \(error)")
        }
        if UInt64(out.count) < upper - low || high <= unstableOffset { return limitSize(out, maxBytes) }
        out.append(contentsOf: unstable[0..<Int(high - unstableOffset)])
        return limitSize(out, maxBytes)
    }

    /// Entries from `index` on, for an append message.
    func entries(from index: UInt64, maxBytes: UInt64) throws(RaftError) -> RaftEntries {
        index > lastIndex ? RaftEntries() : try slice(index, lastIndex + 1, maxBytes: maxBytes)
    }

    var hasNextCommitted: Bool { committed + 1 > max(applied + 1, firstIndex) }

    /// Committed entries not yet applied.
    func nextCommitted() throws(RaftError) -> RaftEntries {
        let low = max(applied + 1, firstIndex)
        return committed + 1 > low ? try slice(low, committed + 1, maxBytes: maxCommittedBytesPerReady) : RaftEntries()
    }

    /// The snapshot to send a follower behind the compacted log.
    func snapshot() throws(RaftError) -> RaftSnapshot {
        if let s = unstableSnapshot { return s }
        return try storage.snapshot()
    }

    /// Installs a leader's snapshot: the log restarts after it.
    func restore(_ s: RaftSnapshot) {
        committed = s.index
        unstableOffset = s.index + 1
        unstable = []
        unstableSnapshot = s
    }

    /// The caller persisted entries up to (index, term): they are no longer unstable.
    func stable(to index: UInt64, term t: UInt64) {
        guard let gt = unstableTerm(index), gt == t, index >= unstableOffset else { return }
        let n = Int(index - unstableOffset + 1)
        if n == unstable.count {
            unstable.removeAll(keepingCapacity: true)
        } else {
            unstable.removeFirst(n)
        }
        unstableOffset = index + 1
    }

    func stableSnapshot(to index: UInt64) {
        if unstableSnapshot?.index == index { unstableSnapshot = nil }
    }

    func applied(to index: UInt64) throws(RaftError) {
        if index == 0 { return }
        if committed < index || index < applied { throw RaftError.corrupt("applied(\(index)) is out of range [prevApplied(\(applied)), committed(\(committed))]") }
        applied = index
    }
}
