import KeelMVCC
import KeelProto
import KeelRaft
import KeelWAL

/// Errors of the node driver. `fatal` ones stop the node: the WAL or the backend can no longer
/// be trusted (an fdatasync failed, a record does not decode), and nothing is acknowledged after.
public enum NodeError: Error, Sendable, CustomStringConvertible {
    /// The node is stopped (or stopping); the request was not applied.
    case stopped
    /// No leader to take the proposal (etcd: "etcdserver: no leader").
    case noLeader
    /// A request that raft refused (uncommitted-size limit, leadership transfer).
    case proposalDropped
    /// The encoded request is larger than `Config.maxRequestBytes` (etcd's `--max-request-bytes`).
    case requestTooLarge
    /// A leader-only operation reached a member that does not lead.
    case notLeader
    /// A leader transfer named a member that is not a voter.
    case badLeaderTransferee
    /// The operation did not finish in time (etcd's "request timed out" family); says which.
    case timedOut(String)
    /// The data directory cannot be used (locked, half made, inconsistent); says what and where.
    case dataDirectory(String)
    /// The node stopped because durable state failed; see the message.
    case fatal(String)

    public var description: String {
        switch self {
        case .stopped: return "etcdserver: server stopped"
        case .noLeader: return "etcdserver: no leader"
        case .proposalDropped: return "etcdserver: request cancelled (raft proposal dropped)"
        case .requestTooLarge: return "etcdserver: request is too large"
        case .notLeader: return "etcdserver: not leader"
        case .badLeaderTransferee: return "etcdserver: bad leader transferee"
        case let .timedOut(m): return "etcdserver: \(m)"
        case let .dataDirectory(m): return "data directory: \(m)"
        case let .fatal(m): return "fatal: \(m)"
        }
    }
}

/// What applying one request produced: etcd's response, or the request's own error (a
/// compacted revision, an unknown lease, …), which goes back to the client as etcd's.
public enum AppliedResult: Sendable {
    case put(Etcdserverpb_PutResponse)
    case range(Etcdserverpb_RangeResponse)
    case deleteRange(Etcdserverpb_DeleteRangeResponse)
    case txn(Etcdserverpb_TxnResponse)
    case compaction(Etcdserverpb_CompactionResponse)
    case leaseGrant(id: Int64, ttl: Int64)
    case leaseRevoke(revision: Int64)
    /// Remaining TTLs recorded (etcd's lease checkpoints).
    case leaseCheckpointed
    /// An auth change applied (user/role add, delete, grant, revoke, password, enable, disable).
    case authChanged
    /// A successful authentication: the token to hand the client.
    case authenticated(token: String)
    /// The alarms in force after an alarm request.
    case alarms([Etcdserverpb_AlarmMember])
    /// A request of a kind this node does not apply yet (the message names it).
    /// An etcd v2 request (member attributes, the cluster version) applied to the v2 state.
    case v2
    case unsupported(String)
    case failed(MVCCError)
}
