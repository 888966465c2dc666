/// The work a node asks for, to be done in this order: persist `hardState` and `entries`,
/// then send `messages`, then apply `committedEntries`, then call `advance`.
public struct Ready: Sendable {
    /// Set when term, vote or commit changed since the last `Ready`.
    public var hardState: RaftHardState?
    /// Entries to append to stable storage before sending anything.
    public var entries: [RaftEntry]
    /// Messages to send once `entries` and `hardState` are durable.
    public var messages: [RaftMessage]
    /// Entries committed and not yet applied, in order.
    public var committedEntries: [RaftEntry]
    /// Answers to `readIndex` calls.
    public var readStates: [ReadState] = []
}

/// What the node's status shows (for metrics and tests).
public struct RaftStatus: Sendable, Equatable {
    public var id: UInt64
    public var term: UInt64
    public var vote: UInt64
    public var commit: UInt64
    public var applied: UInt64
    public var lead: UInt64
    public var role: RaftRole
    /// Per peer (leader only): match and next index.
    public var progress: [UInt64: (match: UInt64, next: UInt64)]

    public static func == (a: RaftStatus, b: RaftStatus) -> Bool {
        a.id == b.id && a.term == b.term && a.vote == b.vote && a.commit == b.commit && a.applied == b.applied &&
            a.lead == b.lead && a.role == b.role && a.progress.mapValues { [$0.match, $0.next] } == b.progress.mapValues { [$0.match, $0.next] }
    }
}

/// A Raft node driven by its owner: `tick`, `step`, `propose`, then `ready`/`advance`.
/// Not thread-safe; one owner drives it.
public final class RawNode {
    let raft: Raft
    private var previousHardState: RaftHardState

    public init(config: RaftConfig, storage: any RaftStorage) {
        raft = Raft(config: config, storage: storage)
        previousHardState = raft.hardState
    }

    public func tick() { raft.tick() }

    /// Starts an election now.
    public func campaign() { try? raft.step(RaftMessage(type: .hup, from: raft.id)) }

    /// Proposes `data` as a normal entry.
    /// - Throws: `.proposalDropped` when no leader is known.
    public func propose(_ data: [UInt8]) throws(RaftError) {
        var m = RaftMessage(type: .prop, from: raft.id)
        m.entries = [RaftEntry(term: 0, index: 0, data: data)]
        try raft.step(m)
    }

    /// Asks for a linearizable read point (ReadOnlySafe): a `ReadState` with `context` arrives in
    /// a later `Ready` once a quorum confirmed this leader; followers forward to the leader.
    /// Dropped (no answer) without a leader, or before the leader committed in its term.
    public func readIndex(context: [UInt8]) {
        var m = RaftMessage(type: .readIndex, from: raft.id)
        m.entries = [RaftEntry(term: 0, index: 0, data: context)]
        try? raft.step(m)
    }

    /// Delivers a message from a peer. Local message types are ignored.
    public func step(_ m: RaftMessage) throws(RaftError) {
        if m.type.isLocal { return }
        try raft.step(m)
    }

    public var hasReady: Bool {
        raft.hardState != previousHardState || !raft.log.unstable.isEmpty || !raft.messages.isEmpty || raft.log.committed > raft.log.applied ||
            !raft.readStates.isEmpty
    }

    /// The pending work. Call `advance` with it once done.
    public func ready() throws(RaftError) -> Ready {
        let hs = raft.hardState
        let r = Ready(hardState: hs != previousHardState ? hs : nil, entries: raft.log.unstable,
                      messages: raft.messages, committedEntries: try raft.log.nextCommitted(), readStates: raft.readStates)
        raft.messages = []
        raft.readStates = []
        return r
    }

    /// The `Ready` was carried out: its entries are stable, its committed entries applied.
    public func advance(_ ready: Ready) {
        if let hs = ready.hardState { previousHardState = hs }
        if let last = ready.entries.last { raft.log.stable(to: last.index, term: last.term) }
        if let last = ready.committedEntries.last { raft.log.applied(to: last.index) }
    }

    public var status: RaftStatus {
        RaftStatus(id: raft.id, term: raft.term, vote: raft.vote, commit: raft.log.committed, applied: raft.log.applied,
                   lead: raft.lead, role: raft.role,
                   progress: raft.role == .leader ? raft.progress.mapValues { ($0.match, $0.next) } : [:])
    }
}
