/// The log as Raft sees it: entries persisted in `storage`, followed by `unstable` ones not yet
/// persisted (handed out in `Ready.entries`), with the commit and apply points.
final class RaftLog {
    let storage: any RaftStorage
    /// Entries not yet persisted; `unstable[0]` has index `unstableOffset`.
    private(set) var unstable: [RaftEntry] = []
    private(set) var unstableOffset: UInt64
    var committed: UInt64 = 0
    var applied: UInt64 = 0
    /// The most bytes of entries one append message carries.
    let maxSizePerMessage: Int

    init(storage: any RaftStorage, maxSizePerMessage: Int) {
        self.storage = storage
        self.maxSizePerMessage = maxSizePerMessage
        unstableOffset = storage.lastIndex() + 1
        committed = storage.firstIndex() - 1
        applied = storage.firstIndex() - 1
    }

    var firstIndex: UInt64 { storage.firstIndex() }
    var lastIndex: UInt64 { unstable.last?.index ?? storage.lastIndex() }
    var lastTerm: UInt64 { (try? term(lastIndex)) ?? 0 }

    /// The term of entry `i`; throws `.compacted` / `.unavailable`.
    func term(_ i: UInt64) throws(RaftError) -> UInt64 {
        if i >= unstableOffset, i - unstableOffset < UInt64(unstable.count) { return unstable[Int(i - unstableOffset)].term }
        if i > lastIndex { throw RaftError.unavailable }
        return try storage.term(i)
    }

    func matchTerm(_ i: UInt64, _ t: UInt64) -> Bool { ((try? term(i)) ?? UInt64.max) == t }

    /// Raft's §5.4.1 check: is a log ending at (index, term) at least as up to date as ours?
    func isUpToDate(index: UInt64, term: UInt64) -> Bool {
        term > lastTerm || (term == lastTerm && index >= lastIndex)
    }

    /// Appends after truncating anything from the first entry's index on; returns the last index.
    @discardableResult
    func append(_ entries: [RaftEntry]) -> UInt64 {
        guard let first = entries.first else { return lastIndex }
        let after = first.index
        if after == unstableOffset + UInt64(unstable.count) {
            unstable.append(contentsOf: entries)
        } else if after <= unstableOffset {
            // Replaces the unstable entries, and some persisted ones are being overwritten.
            unstableOffset = after
            unstable = entries
        } else {
            unstable.removeSubrange(Int(after - unstableOffset)...)
            unstable.append(contentsOf: entries)
        }
        return lastIndex
    }

    /// The index of the first entry whose term conflicts with ours (or that we lack); 0 if none.
    func findConflict(_ entries: [RaftEntry]) -> UInt64 {
        for e in entries where !matchTerm(e.index, e.term) { return e.index }
        return 0
    }

    /// A follower's append: when our entry at `index` has `logTerm`, appends what is new and
    /// commits up to `commit`; returns the last new index, or nil when the terms do not match.
    func maybeAppend(index: UInt64, logTerm: UInt64, commit: UInt64, entries: [RaftEntry]) throws(RaftError) -> UInt64? {
        // Entries come from a peer: they must follow `index` one by one, or the arithmetic below
        // (and the log) would go wrong.
        for (i, e) in entries.enumerated() where e.index != index &+ UInt64(i) &+ 1 || index > UInt64.max - UInt64(entries.count) {
            throw RaftError.corrupt("append after index \(index) carries entry \(e.index) at position \(i)")
        }
        guard matchTerm(index, logTerm) else { return nil }
        let lastNew = index + UInt64(entries.count)
        let conflict = findConflict(entries)
        if conflict != 0 {
            if conflict <= committed { throw RaftError.corrupt("entry \(conflict) conflicts with committed entry (committed \(committed))") }
            append(Array(entries[Int(conflict - index - 1)...]))
        }
        self.commit(to: min(commit, lastNew))
        return lastNew
    }

    func commit(to index: UInt64) {
        if committed < index, index <= lastIndex { committed = index }
    }

    /// A leader's commit: only an entry of the current term is committed by counting (§5.4.2).
    func maybeCommit(index: UInt64, term: UInt64) -> Bool {
        guard index > committed, ((try? self.term(index)) ?? 0) == term else { return false }
        commit(to: index)
        return true
    }

    /// Entries in `[low, high)`, up to `maxBytes`.
    func slice(_ low: UInt64, _ high: UInt64, maxBytes: Int) throws(RaftError) -> [RaftEntry] {
        if low >= high { return [] }
        if low < firstIndex { throw RaftError.compacted }
        var out: [RaftEntry] = []
        if low < unstableOffset {
            out = try storage.entries(low, min(high, unstableOffset), maxBytes: maxBytes)
            if UInt64(out.count) < min(high, unstableOffset) - low { return out }
        }
        if high > unstableOffset {
            var size = out.reduce(0) { $0 + $1.data.count + 16 }
            for i in max(low, unstableOffset)..<high {
                let e = unstable[Int(i - unstableOffset)]
                size += e.data.count + 16
                if !out.isEmpty && size > maxBytes { break }
                out.append(e)
            }
        }
        return out
    }

    /// Entries from `index` on, for an append message.
    func entries(from index: UInt64) throws(RaftError) -> [RaftEntry] {
        index > lastIndex ? [] : try slice(index, lastIndex + 1, maxBytes: maxSizePerMessage)
    }

    /// Committed entries not yet applied.
    func nextCommitted() throws(RaftError) -> [RaftEntry] {
        let low = max(applied + 1, firstIndex)
        return committed + 1 > low ? try slice(low, committed + 1, maxBytes: Int.max) : []
    }

    /// The caller persisted entries up to (index, term): they are no longer unstable.
    func stable(to index: UInt64, term t: UInt64) {
        guard index >= unstableOffset, index - unstableOffset < UInt64(unstable.count), unstable[Int(index - unstableOffset)].term == t else { return }
        unstable.removeFirst(Int(index - unstableOffset + 1))
        unstableOffset = index + 1
    }

    func applied(to index: UInt64) {
        if index > applied && index <= committed { applied = index }
    }
}
