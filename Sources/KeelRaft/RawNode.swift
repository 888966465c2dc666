/// The work a node asks for, to be done in this order: persist `hardState`, `snapshot` and
/// `entries` (fdatasync when `mustSync`), then send `messages`, then apply `committedEntries`,
/// then call `advance`.
public struct Ready: Sendable {
    /// Set when the leader or the role changed since the last `Ready` (not persisted).
    public var softState: SoftState?
    /// Set when term, vote or commit changed since the last `Ready`.
    public var hardState: RaftHardState?
    /// Entries to append to stable storage before sending anything.
    public var entries: [RaftEntry]
    /// A snapshot from the leader to install in stable storage (and the state machine).
    public var snapshot: RaftSnapshot?
    /// Messages to send once `entries`, `snapshot` and `hardState` are durable.
    public var messages: [RaftMessage]
    /// Entries committed and not yet applied, in order.
    public var committedEntries: RaftEntries
    /// Answers to `readIndex` calls.
    public var readStates: [ReadState] = []
    /// Whether the entries and hard state must reach the disk (fdatasync) before the messages
    /// are sent: true when there are entries, or term or vote changed. A commit-index change
    /// alone may be written lazily.
    public var mustSync: Bool
}

/// What the node's status shows (for metrics and tests).
public struct RaftStatus: Sendable, Equatable {
    public struct PeerProgress: Sendable, Equatable {
        public var match: UInt64
        public var next: UInt64
        /// `StateProbe`, `StateReplicate` or `StateSnapshot`.
        public var state: String
        public var isLearner: Bool
        public var recentActive: Bool
        public var pendingSnapshot: UInt64
        public var inflight: Int
        /// etcd's one-line rendering (`StateReplicate match=11 next=12 inactive`).
        public var description: String
    }

    public var id: UInt64
    public var term: UInt64
    public var vote: UInt64
    public var commit: UInt64
    public var applied: UInt64
    public var lead: UInt64
    public var role: RaftRole
    /// The leader a transfer is handing over to (0: none).
    public var leadTransferee: UInt64
    /// The configuration in force.
    public var confState: ConfState
    /// Per member (leader only).
    public var progress: [UInt64: PeerProgress]
}

/// A Raft node driven by its owner: `tick`, `step`, `propose`, then `ready`/`advance`.
/// Not thread-safe; one owner drives it.
public final class RawNode {
    let raft: Raft
    @exclusivity(unchecked) private var previousSoftState: SoftState
    @exclusivity(unchecked) private var previousHardState: RaftHardState
    /// An empty message buffer with capacity, taken back from the last advanced Ready.
    @exclusivity(unchecked) private var recycledMessages: [RaftMessage] = []

    /// - Throws: `.corrupt` when the storage's hard state or configuration is inconsistent
    ///   (a commit index beyond the log, a configuration that cannot be rebuilt).
    public init(config: RaftConfig, storage: any RaftStorage) throws(RaftError) {
        raft = try Raft(config: config, storage: storage)
        previousSoftState = raft.softState
        previousHardState = raft.hardState
    }

    /// Starts a new cluster on empty storage the way etcd does: the log begins with one
    /// committed `ConfChangeAddNode` entry per initial member (term 1, indexes 1…n, `context`
    /// as given — etcd puts the member's JSON there), and the configuration is applied at once.
    /// The entries come out in the next Ready to be persisted (and as committed entries, which
    /// the application applies like any conf change).
    /// - Throws: `.corrupt` when the storage is not empty or `peers` is.
    public func bootstrap(peers: [(id: UInt64, context: [UInt8])]) throws(RaftError) {
        guard raft.log.lastIndex == 0 else { throw RaftError.corrupt("can't bootstrap a nonempty storage (last index \(raft.log.lastIndex))") }
        guard !peers.isEmpty else { throw RaftError.corrupt("bootstrap needs at least one peer") }
        previousHardState = RaftHardState()
        raft.becomeFollower(term: 1, lead: 0)
        var entries: [RaftEntry] = []
        for (i, p) in peers.enumerated() {
            let cc = ConfChange(v1: .addNode, nodeID: p.id, context: p.context)
            entries.append(RaftEntry(term: 1, index: UInt64(i + 1), type: .confChange, data: cc.encoded))
        }
        try raft.log.append(RaftEntries(entries))
        raft.log.committed = UInt64(entries.count)
        for p in peers { _ = try raft.applyConfChange(ConfChange(changes: [ConfChangeSingle(.addNode, p.id)])) }
    }

    public func tick() { raft.tick() }

    /// Starts an election now (ignored by learners and non-members).
    public func campaign() throws(RaftError) { try raft.step(RaftMessage(type: .hup)) }

    /// Proposes `data` as a normal entry.
    /// - Throws: `.proposalDropped` when no leader is known, a transfer is in progress, or the
    ///   uncommitted-size limit is reached.
    public func propose(_ data: [UInt8]) throws(RaftError) {
        // The leader appends directly (no message, no entries array); others go through step.
        if raft.role == .leader { return try raft.proposeAsLeader(data) }
        var m = RaftMessage(type: .prop, from: raft.id)
        m.entries = RaftEntries(RaftEntry(term: 0, index: 0, data: data))
        try raft.step(m)
    }

    /// Proposes a membership change. It takes effect when the application applies the
    /// committed entry and calls `applyConfChange`. A second change proposed while one is
    /// pending is replaced by an empty entry.
    public func proposeConfChange(_ cc: ConfChange) throws(RaftError) {
        var m = RaftMessage(type: .prop, from: raft.id)
        m.entries = RaftEntries(RaftEntry(term: 0, index: 0, type: cc.isV1 ? .confChange : .confChangeV2, data: cc.encoded))
        try raft.step(m)
    }

    /// Applies a committed membership change; returns the configuration now in force.
    /// - Throws: `.invalidConfChange` when it cannot apply (all voters removed, ...).
    @discardableResult
    public func applyConfChange(_ cc: ConfChange) throws(RaftError) -> ConfState {
        try raft.applyConfChange(cc)
    }

    /// Delivers a message from a peer.
    /// - Throws: `.stepLocalMessage` for local types, `.stepPeerNotFound` for a response from
    ///   a node not in the configuration, `.proposalDropped`, or `.corrupt` for a malformed message.
    public func step(_ m: RaftMessage) throws(RaftError) {
        if m.type.isLocal { throw RaftError.stepLocalMessage }
        // A term at its maximum cannot be followed by another election: refuse it rather
        // than let a peer push this node into a term it can never leave.
        if m.term == .max { throw RaftError.corrupt("\(m.type.name) from \(m.from) carries term \(m.term), which leaves no room for another election") }
        // Term 0 marks local and forwarded requests; a vote or vote answer always has a term.
        if m.term == 0 && (m.type == .vote || m.type == .preVote || m.type == .voteResp || m.type == .preVoteResp) {
            throw RaftError.corrupt("\(m.type.name) from \(m.from) carries no term")
        }
        if raft.tracker.progress[m.from] == nil && m.type.isResponse { throw RaftError.stepPeerNotFound }
        try raft.step(m)
    }

    /// Asks for a linearizable read point: a `ReadState` with `context` arrives in a later
    /// `Ready` once a quorum confirmed this leader; followers forward to the leader. Dropped
    /// (no answer) without a leader.
    public func readIndex(context: [UInt8]) {
        var m = RaftMessage(type: .readIndex)
        m.entries = RaftEntries(RaftEntry(term: 0, index: 0, data: context))
        try? raft.step(m)
    }

    /// Asks the leader to hand leadership to `transferee` (etcd's `TransferLeader`).
    public func transferLeader(to transferee: UInt64) {
        try? raft.step(RaftMessage(type: .transferLeader, from: transferee))
    }

    /// The transport could not reach `id`: stop streaming appends to it and probe instead.
    public func reportUnreachable(_ id: UInt64) {
        try? raft.step(RaftMessage(type: .unreachable, from: id))
    }

    /// The snapshot sent to `id` was delivered (or failed).
    public func reportSnapshot(_ id: UInt64, failed: Bool) {
        var m = RaftMessage(type: .snapStatus, from: id)
        m.reject = failed
        try? raft.step(m)
    }

    public var hasReady: Bool {
        if raft.softState != previousSoftState { return true }
        let hs = raft.hardState
        if !hs.isEmpty && hs != previousHardState { return true }
        if let s = raft.log.unstableSnapshot, !s.isEmpty { return true }
        return !raft.messages.isEmpty || !raft.log.unstable.isEmpty || raft.log.hasNextCommitted || !raft.readStates.isEmpty
    }

    /// The pending work. Call `advance` with it once done.
    public func ready() throws(RaftError) -> Ready {
        let hs = raft.hardState
        let ss = raft.softState
        let entries = raft.log.unstable
        let r = Ready(softState: ss != previousSoftState ? ss : nil,
                      hardState: hs != previousHardState ? hs : nil,
                      entries: entries, snapshot: raft.log.unstableSnapshot,
                      messages: raft.messages, committedEntries: try raft.log.nextCommitted(), readStates: raft.readStates,
                      mustSync: !entries.isEmpty || hs.vote != previousHardState.vote || hs.term != previousHardState.term)
        previousSoftState = ss
        // The messages buffer goes out with the Ready; the one `advance` recycled comes in.
        raft.messages = recycledMessages
        recycledMessages = []
        if !raft.readStates.isEmpty { raft.readStates = [] }
        return r
    }

    /// The `Ready` was carried out: its entries and snapshot are stable, its committed entries applied.
    ///
    /// The Ready is consumed: when the caller keeps no copy of it, its buffers are reused for
    /// the next one, so a steady stream of Readies allocates little.
    public func advance(_ ready: consuming Ready) throws(RaftError) {
        if let hs = ready.hardState, !hs.isEmpty { previousHardState = hs }
        let applied = ready.committedEntries.last?.index ?? ready.snapshot?.index ?? 0
        if applied > 0 {
            try raft.log.applied(to: applied)
            raft.appliedAdvanced(to: applied)
        }
        raft.reduceUncommittedSize(ready.committedEntries)
        let last = ready.entries.last
        // Drop this Ready's reference to the unstable buffer first, so the log can empty it in place.
        ready.entries = []
        if let last { raft.log.stable(to: last.index, term: last.term) }
        if let s = ready.snapshot { raft.log.stableSnapshot(to: s.index) }
        var messages = ready.messages
        ready.messages = []
        if messages.capacity > 0 && recycledMessages.capacity == 0 {
            messages.removeAll(keepingCapacity: true)
            recycledMessages = messages
        }
    }

    /// The leader this node knows (0: none) — cheap, unlike `status`, which builds the
    /// per-peer progress.
    public var lead: UInt64 { raft.lead }
    public var role: RaftRole { raft.role }
    public var term: UInt64 { raft.term }
    /// The configuration in force.
    public var confState: ConfState { raft.tracker.config.confState }

    public var status: RaftStatus {
        var progress: [UInt64: RaftStatus.PeerProgress] = [:]
        if raft.role == .leader {
            for (id, p) in raft.tracker.progress {
                progress[id] = RaftStatus.PeerProgress(match: p.match, next: p.next, state: p.state.name, isLearner: p.isLearner,
                                                       recentActive: p.recentActive, pendingSnapshot: p.pendingSnapshot,
                                                       inflight: p.inflights.count, description: p.description)
            }
        }
        return RaftStatus(id: raft.id, term: raft.term, vote: raft.vote, commit: raft.log.committed, applied: raft.log.applied,
                          lead: raft.lead, role: raft.role, leadTransferee: raft.leadTransferee,
                          confState: raft.tracker.config.confState, progress: progress)
    }
}
