/// The log and state a node has persisted, as Raft reads them (etcd's `Storage`).
public protocol RaftStorage: AnyObject {
    /// The persisted hard state and the voters at start.
    func initialState() -> (hardState: RaftHardState, voters: [UInt64])
    /// Entries in `[low, high)`, as many as fit `maxBytes` (at least one).
    func entries(_ low: UInt64, _ high: UInt64, maxBytes: Int) throws(RaftError) -> [RaftEntry]
    /// The term of entry `index` (also for the snapshot's index).
    func term(_ index: UInt64) throws(RaftError) -> UInt64
    /// The index of the first entry available (after the snapshot).
    func firstIndex() -> UInt64
    func lastIndex() -> UInt64
}

/// An in-memory `RaftStorage`: the caller appends what `Ready` asked it to persist.
/// Entry 0 of `log` is a dummy holding the snapshot's (or compaction point's) index and term.
public final class MemoryStorage: RaftStorage {
    public private(set) var hardState = RaftHardState()
    public var voters: [UInt64]
    private var log: [RaftEntry] = [RaftEntry(term: 0, index: 0)]

    public init(voters: [UInt64]) { self.voters = voters }

    public func initialState() -> (hardState: RaftHardState, voters: [UInt64]) { (hardState, voters) }

    public func setHardState(_ hs: RaftHardState) { hardState = hs }

    private var offset: UInt64 { log[0].index }

    public func firstIndex() -> UInt64 { offset + 1 }
    public func lastIndex() -> UInt64 { offset + UInt64(log.count) - 1 }

    public func term(_ index: UInt64) throws(RaftError) -> UInt64 {
        if index < offset { throw RaftError.compacted }
        if index > lastIndex() { throw RaftError.unavailable }
        return log[Int(index - offset)].term
    }

    public func entries(_ low: UInt64, _ high: UInt64, maxBytes: Int) throws(RaftError) -> [RaftEntry] {
        if low <= offset { throw RaftError.compacted }
        if high > lastIndex() + 1 { throw RaftError.unavailable }
        var out: [RaftEntry] = []
        var size = 0
        for i in low..<high {
            let e = log[Int(i - offset)]
            size += e.data.count + 16
            if !out.isEmpty && size > maxBytes { break }
            out.append(e)
        }
        return out
    }

    /// Appends entries, truncating any conflicting suffix (etcd's `Append`).
    public func append(_ entries: [RaftEntry]) throws(RaftError) {
        guard let first = entries.first else { return }
        if first.index + UInt64(entries.count) - 1 < firstIndex() { return }
        var es = entries
        if firstIndex() > first.index { es.removeFirst(Int(firstIndex() - first.index)) }
        guard let start = es.first?.index else { return }
        if start > lastIndex() + 1 { throw RaftError.corrupt("missing log entries: last \(lastIndex()), appending at \(start)") }
        log.removeSubrange(Int(start - offset)...)
        log.append(contentsOf: es)
    }

    /// Drops entries up to `index` (kept as the dummy).
    public func compact(to index: UInt64) throws(RaftError) {
        if index <= offset { throw RaftError.compacted }
        if index > lastIndex() { throw RaftError.unavailable }
        let i = Int(index - offset)
        log = [RaftEntry(term: log[i].term, index: index)] + log[(i + 1)...]
    }
}
