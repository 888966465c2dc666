/// Raft's wire and state types, as plain values (converted to and from etcd's `raftpb` at the
/// edge, see RaftProto.swift), so the state machine allocates no protobuf storage per message.

/// etcd's entry types.
public enum EntryType: Int, Sendable {
    case normal = 0
    case confChange = 1
    case confChangeV2 = 2
}

/// One log entry.
public struct RaftEntry: Sendable, Equatable {
    public var term: UInt64
    public var index: UInt64
    public var type: EntryType
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, type: EntryType = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.type = type
        self.data = data
    }
}

/// etcd's message types, with `raftpb.MessageType`'s numbers.
public enum MessageType: Int, Sendable {
    case hup = 0, beat = 1, prop = 2, app = 3, appResp = 4, vote = 5, voteResp = 6, snap = 7
    case heartbeat = 8, heartbeatResp = 9, unreachable = 10, snapStatus = 11, checkQuorum = 12
    case transferLeader = 13, timeoutNow = 14, readIndex = 15, readIndexResp = 16
    case preVote = 17, preVoteResp = 18

    /// Messages a node handles locally, never sent over the network.
    var isLocal: Bool { self == .hup || self == .beat || self == .unreachable || self == .snapStatus || self == .checkQuorum }
}

/// One Raft message.
public struct RaftMessage: Sendable, Equatable {
    public var type: MessageType
    public var to: UInt64 = 0
    public var from: UInt64 = 0
    public var term: UInt64 = 0
    public var logTerm: UInt64 = 0
    public var index: UInt64 = 0
    public var entries: [RaftEntry] = []
    public var commit: UInt64 = 0
    public var reject = false
    public var rejectHint: UInt64 = 0
    public var context: [UInt8] = []

    public init(type: MessageType, to: UInt64 = 0, from: UInt64 = 0, term: UInt64 = 0) {
        self.type = type
        self.to = to
        self.from = from
        self.term = term
    }
}

/// What must be persisted before any message is sent: term, vote and commit.
public struct RaftHardState: Sendable, Equatable {
    public var term: UInt64 = 0
    public var vote: UInt64 = 0
    public var commit: UInt64 = 0
    public init(term: UInt64 = 0, vote: UInt64 = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
    public var isEmpty: Bool { term == 0 && vote == 0 && commit == 0 }
}

/// A node's role.
public enum RaftRole: String, Sendable {
    case follower, preCandidate, candidate, leader
}

/// Errors of the Raft layer.
public enum RaftError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A proposal with no leader known (etcd maps this to "no leader" / ErrProposalDropped).
    case proposalDropped
    /// Entries asked for were compacted away.
    case compacted
    /// Entries asked for are not in the log yet.
    case unavailable
    /// The storage returned something inconsistent (a bug or a damaged log).
    case corrupt(String)

    public var description: String {
        switch self {
        case .proposalDropped: return "raft proposal dropped"
        case .compacted: return "requested index is unavailable due to compaction"
        case .unavailable: return "requested entry at index is unavailable"
        case let .corrupt(m): return "raft: \(m)"
        }
    }
}

/// The answer to a read-index request: reads are linearizable once the applied index reaches
/// `index`. `context` is the caller's request ID.
public struct ReadState: Sendable, Equatable {
    public var index: UInt64
    public var context: [UInt8]
    public init(index: UInt64, context: [UInt8]) {
        self.index = index
        self.context = context
    }
}
