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

    /// The entry's size as etcd's protobuf encoding counts it (for `MaxSizePerMsg` and the
    /// committed-entries limit, so Keel cuts messages where etcd does).
    public var encodedSize: Int {
        var n = 3 + varintSize(term) + varintSize(index) + varintSize(UInt64(type.rawValue))
        if !data.isEmpty { n += 1 + varintSize(UInt64(data.count)) + data.count }
        return n
    }
}

@inline(__always)
func varintSize(_ v: UInt64) -> Int {
    v == 0 ? 1 : (64 - v.leadingZeroBitCount + 6) / 7
}

/// etcd's message types, with `raftpb.MessageType`'s numbers.
public enum MessageType: Int, Sendable {
    case hup = 0, beat = 1, prop = 2, app = 3, appResp = 4, vote = 5, voteResp = 6, snap = 7
    case heartbeat = 8, heartbeatResp = 9, unreachable = 10, snapStatus = 11, checkQuorum = 12
    case transferLeader = 13, timeoutNow = 14, readIndex = 15, readIndexResp = 16
    case preVote = 17, preVoteResp = 18

    /// Messages a node handles locally, never sent over the network.
    var isLocal: Bool { self == .hup || self == .beat || self == .unreachable || self == .snapStatus || self == .checkQuorum }

    /// Answers to a node's own requests (a node not in the configuration may not step them).
    var isResponse: Bool { self == .appResp || self == .voteResp || self == .heartbeatResp || self == .unreachable || self == .preVoteResp }

    /// etcd's name for the type (`MsgApp`, ...), as its logs and test scripts print it.
    public var name: String {
        switch self {
        case .hup: return "MsgHup"
        case .beat: return "MsgBeat"
        case .prop: return "MsgProp"
        case .app: return "MsgApp"
        case .appResp: return "MsgAppResp"
        case .vote: return "MsgVote"
        case .voteResp: return "MsgVoteResp"
        case .snap: return "MsgSnap"
        case .heartbeat: return "MsgHeartbeat"
        case .heartbeatResp: return "MsgHeartbeatResp"
        case .unreachable: return "MsgUnreachable"
        case .snapStatus: return "MsgSnapStatus"
        case .checkQuorum: return "MsgCheckQuorum"
        case .transferLeader: return "MsgTransferLeader"
        case .timeoutNow: return "MsgTimeoutNow"
        case .readIndex: return "MsgReadIndex"
        case .readIndexResp: return "MsgReadIndexResp"
        case .preVote: return "MsgPreVote"
        case .preVoteResp: return "MsgPreVoteResp"
        }
    }
}

/// An immutable box for a message's snapshot.
final class SnapshotBox: Sendable {
    let value: RaftSnapshot
    init(_ value: RaftSnapshot) { self.value = value }
}

/// The membership a snapshot (or the log up to an index) implies: etcd's `ConfState`. In a
/// joint configuration `votersOutgoing` is the old voter set and `voters` the new one.
public struct ConfState: Sendable, Equatable {
    public var voters: [UInt64] = []
    public var learners: [UInt64] = []
    public var votersOutgoing: [UInt64] = []
    public var learnersNext: [UInt64] = []
    public var autoLeave = false

    public init(voters: [UInt64] = [], learners: [UInt64] = [], votersOutgoing: [UInt64] = [], learnersNext: [UInt64] = [], autoLeave: Bool = false) {
        self.voters = voters
        self.learners = learners
        self.votersOutgoing = votersOutgoing
        self.learnersNext = learnersNext
        self.autoLeave = autoLeave
    }

    /// Equal as sets (neither the order nor repetitions of IDs matter).
    public func isEquivalent(to other: ConfState) -> Bool {
        Set(voters) == Set(other.voters) && Set(learners) == Set(other.learners) &&
            Set(votersOutgoing) == Set(other.votersOutgoing) && Set(learnersNext) == Set(other.learnersNext) &&
            autoLeave == other.autoLeave
    }
}

/// A snapshot of the state machine at `index`/`term`, with the membership at that point.
public struct RaftSnapshot: Sendable, Equatable {
    public var data: [UInt8]
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState

    public init(data: [UInt8] = [], index: UInt64 = 0, term: UInt64 = 0, confState: ConfState = ConfState()) {
        self.data = data
        self.index = index
        self.term = term
        self.confState = confState
    }

    public var isEmpty: Bool { index == 0 }
}

/// etcd's `ConfChangeType`, with its numbers.
public enum ConfChangeType: Int, Sendable {
    case addNode = 0, removeNode = 1, updateNode = 2, addLearnerNode = 3
}

/// One membership operation.
public struct ConfChangeSingle: Sendable, Equatable {
    public var type: ConfChangeType
    public var nodeID: UInt64
    public init(_ type: ConfChangeType, _ nodeID: UInt64) {
        self.type = type
        self.nodeID = nodeID
    }
}

/// How a `ConfChangeV2` moves through a joint configuration (etcd's `ConfChangeTransition`).
public enum ConfChangeTransition: Int, Sendable {
    /// One simple change applies directly; several go through a joint configuration that
    /// Raft leaves on its own.
    case auto = 0
    /// Always joint, left automatically.
    case jointImplicit = 1
    /// Always joint, left only by an empty `ConfChangeV2` the application proposes.
    case jointExplicit = 2
}

/// A membership change: etcd's v1 `ConfChange` (one operation) or `ConfChangeV2` (several,
/// possibly through joint consensus). `context` is opaque to Raft.
public struct ConfChange: Sendable, Equatable {
    public var changes: [ConfChangeSingle]
    public var transition: ConfChangeTransition
    public var context: [UInt8]
    /// v1 only: etcd's request ID field.
    public var id: UInt64
    /// Encoded as a v1 `ConfChange` entry (exactly one change, automatic transition).
    public var isV1: Bool

    /// A v1 change: one operation.
    public init(v1 type: ConfChangeType, nodeID: UInt64, context: [UInt8] = [], id: UInt64 = 0) {
        changes = [ConfChangeSingle(type, nodeID)]
        transition = .auto
        self.context = context
        self.id = id
        isV1 = true
    }

    /// A v2 change.
    public init(changes: [ConfChangeSingle], transition: ConfChangeTransition = .auto, context: [UInt8] = []) {
        self.changes = changes
        self.transition = transition
        self.context = context
        id = 0
        isV1 = false
    }

    /// An empty v2 change: leave the joint configuration.
    public var leavesJoint: Bool { !isV1 && changes.isEmpty && transition == .auto }

    /// Whether applying it enters a joint configuration, and if so whether it is left automatically.
    public var entersJoint: (autoLeave: Bool, joint: Bool) {
        if transition != .auto || changes.count > 1 { return (transition != .jointExplicit, true) }
        return (false, false)
    }
}

/// What a node's volatile role is: `Ready.softState` is set when it changed.
public struct SoftState: Sendable, Equatable {
    public var lead: UInt64
    public var role: RaftRole
}

/// One Raft message.
public struct RaftMessage: Sendable, Equatable {
    public var type: MessageType
    public var to: UInt64 = 0
    public var from: UInt64 = 0
    public var term: UInt64 = 0
    public var logTerm: UInt64 = 0
    public var index: UInt64 = 0
    public var entries = RaftEntries()
    public var commit: UInt64 = 0
    public var reject = false
    public var rejectHint: UInt64 = 0
    public var context: [UInt8] = []
    /// The snapshot a `MsgSnap` carries (boxed: most messages have none, and a small
    /// message is cheap to copy).
    public var snapshot: RaftSnapshot? {
        get { snapshotBox?.value }
        set { snapshotBox = newValue.map(SnapshotBox.init) }
    }
    private var snapshotBox: SnapshotBox?

    public static func == (a: RaftMessage, b: RaftMessage) -> Bool {
        a.type == b.type && a.to == b.to && a.from == b.from && a.term == b.term && a.logTerm == b.logTerm && a.index == b.index &&
            a.entries == b.entries && a.commit == b.commit && a.reject == b.reject && a.rejectHint == b.rejectHint &&
            a.context == b.context && a.snapshot == b.snapshot
    }

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

    /// etcd's name (`StateLeader`, ...).
    public var name: String {
        switch self {
        case .follower: return "StateFollower"
        case .preCandidate: return "StatePreCandidate"
        case .candidate: return "StateCandidate"
        case .leader: return "StateLeader"
        }
    }
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
    /// A local message type (`MsgHup`, `MsgBeat`, ...) was stepped in from outside.
    case stepLocalMessage
    /// A response from a node that is not in the configuration.
    case stepPeerNotFound
    /// A snapshot older than the one the storage has.
    case snapshotOutOfDate
    /// The storage cannot make a snapshot right now; the leader tries again later.
    case snapshotTemporarilyUnavailable
    /// A membership change that cannot be applied (the message says why).
    case invalidConfChange(String)

    public var description: String {
        switch self {
        case .proposalDropped: return "raft proposal dropped"
        case .compacted: return "requested index is unavailable due to compaction"
        case .unavailable: return "requested entry at index is unavailable"
        case let .corrupt(m): return "raft: \(m)"
        case .stepLocalMessage: return "raft: cannot step raft local message"
        case .stepPeerNotFound: return "raft: cannot step as peer not found"
        case .snapshotOutOfDate: return "requested index is older than the existing snapshot"
        case .snapshotTemporarilyUnavailable: return "snapshot is temporarily unavailable"
        case let .invalidConfChange(m): return "raft: invalid configuration change: \(m)"
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
