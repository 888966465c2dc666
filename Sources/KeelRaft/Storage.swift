/// The log and state a node has persisted, as Raft reads them (etcd's `Storage`).
public protocol RaftStorage: AnyObject {
    /// The persisted hard state and the membership at start.
    func initialState() -> (hardState: RaftHardState, confState: ConfState)
    /// Entries in `[low, high)`, as many as fit `maxBytes` (at least one).
    /// - Throws: `.compacted` when `low` is at or below the snapshot, `.unavailable` when the
    ///   range is not stored.
    func entries(_ low: UInt64, _ high: UInt64, maxBytes: UInt64) throws(RaftError) -> RaftEntries
    /// The term of entry `index` (also for the snapshot's index).
    func term(_ index: UInt64) throws(RaftError) -> UInt64
    /// The index of the first entry available (after the snapshot).
    func firstIndex() -> UInt64
    func lastIndex() -> UInt64
    /// The most recent snapshot, for a follower that fell behind the compacted log.
    /// - Throws: `.snapshotTemporarilyUnavailable` when one is being made; the leader retries.
    func snapshot() throws(RaftError) -> RaftSnapshot
}

/// How many of the first entries fit `maxBytes` by etcd's encoded size (at least one, when
/// there is one).
func fittingCount<C: Collection<RaftEntry>>(_ entries: C, _ maxBytes: UInt64) -> Int {
    var n = 0
    var size: UInt64 = 0
    for e in entries {
        size += UInt64(e.encodedSize)
        if n > 0 && size > maxBytes { break }
        n += 1
    }
    return n
}

/// Keeps the first entries of `entries` whose etcd-encoded size fits `maxBytes` (at least one).
func limitSize(_ entries: RaftEntries, _ maxBytes: UInt64) -> RaftEntries {
    entries.count > 1 ? entries.head(fittingCount(entries, maxBytes)) : entries
}

/// The first entries of `run` that fit `maxBytes` (at least one), copied out of the log that
/// holds them: one entry inline, more in a new array.
func limitedRun(_ run: ArraySlice<RaftEntry>, _ maxBytes: UInt64) -> RaftEntries {
    switch run.count {
    case 0: return RaftEntries()
    case 1: return RaftEntries(run[run.startIndex])
    default: return RaftEntries(Array(run.prefix(fittingCount(run, maxBytes))))
    }
}

/// An in-memory `RaftStorage`: the caller appends what `Ready` asked it to persist.
/// Entry 0 of `log` is a dummy holding the snapshot's (or compaction point's) index and term.
public final class MemoryStorage: RaftStorage {
    public private(set) var hardState = RaftHardState()
    public private(set) var currentSnapshot = RaftSnapshot()
    @exclusivity(unchecked) private var log: [RaftEntry] = [RaftEntry(term: 0, index: 0)]

    public init() {}

    /// A storage for a new cluster whose initial members are `voters` (and `learners`).
    public convenience init(voters: [UInt64], learners: [UInt64] = []) {
        self.init()
        currentSnapshot.confState = ConfState(voters: voters, learners: learners)
    }

    public func initialState() -> (hardState: RaftHardState, confState: ConfState) { (hardState, currentSnapshot.confState) }

    public func setHardState(_ hs: RaftHardState) { hardState = hs }

    private var offset: UInt64 { log[0].index }

    public func firstIndex() -> UInt64 { offset + 1 }
    public func lastIndex() -> UInt64 { offset + UInt64(log.count) - 1 }

    public func term(_ index: UInt64) throws(RaftError) -> UInt64 {
        if index < offset { throw RaftError.compacted }
        if index - offset >= UInt64(log.count) { throw RaftError.unavailable }
        return log[Int(index - offset)].term
    }

    public func entries(_ low: UInt64, _ high: UInt64, maxBytes: UInt64) throws(RaftError) -> RaftEntries {
        if low <= offset { throw RaftError.compacted }
        if high > lastIndex() + 1 || low > high { throw RaftError.unavailable }
        if log.count == 1 { throw RaftError.unavailable }
        return limitedRun(log[Int(low - offset)..<Int(high - offset)], maxBytes)
    }

    public func snapshot() throws(RaftError) -> RaftSnapshot { currentSnapshot }

    /// Replaces the whole log with a snapshot received from the leader.
    public func applySnapshot(_ snap: RaftSnapshot) throws(RaftError) {
        if currentSnapshot.index >= snap.index { throw RaftError.snapshotOutOfDate }
        currentSnapshot = snap
        log = [RaftEntry(term: snap.term, index: snap.index)]
    }

    /// Records a snapshot of the state machine at `index` (which must be in the log); the log
    /// itself is trimmed separately by `compact(to:)`.
    @discardableResult
    public func createSnapshot(at index: UInt64, confState: ConfState?, data: [UInt8]) throws(RaftError) -> RaftSnapshot {
        if index <= currentSnapshot.index { throw RaftError.snapshotOutOfDate }
        if index > lastIndex() { throw RaftError.unavailable }
        currentSnapshot.index = index
        currentSnapshot.term = log[Int(index - offset)].term
        if let cs = confState { currentSnapshot.confState = cs }
        currentSnapshot.data = data
        return currentSnapshot
    }

    /// Appends entries, truncating any conflicting suffix (etcd's `Append`).
    public func append(_ entries: [RaftEntry]) throws(RaftError) { try appendRun(entries) }

    /// Appends entries, truncating any conflicting suffix (etcd's `Append`).
    public func append(_ entries: RaftEntries) throws(RaftError) { try appendRun(entries) }

    private func appendRun<C: Collection<RaftEntry>>(_ entries: C) throws(RaftError) {
        guard let first = entries.first else { return }
        if first.index + UInt64(entries.count) - 1 < firstIndex() { return }
        var es = entries[...]
        if firstIndex() > first.index { es = es.dropFirst(Int(firstIndex() - first.index)) }
        guard let start = es.first?.index else { return }
        if start > lastIndex() + 1 { throw RaftError.corrupt("missing log entries: last \(lastIndex()), appending at \(start)") }
        let at = Int(start - offset)
        if at < log.count { log.removeSubrange(at...) }
        log.append(contentsOf: es)
    }

    /// Drops entries up to `index` (kept as the dummy).
    public func compact(to index: UInt64) throws(RaftError) {
        if index <= offset { throw RaftError.compacted }
        if index > lastIndex() { throw RaftError.unavailable }
        let i = Int(index - offset)
        var kept = [RaftEntry(term: log[i].term, index: index)]
        kept.reserveCapacity(log.count - i)
        kept.append(contentsOf: log[(i + 1)...])
        log = kept
    }
}
