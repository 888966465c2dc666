import GRPCCore
import KeelMVCC
import KeelNode

/// etcd's gRPC errors (`api/v3rpc/rpctypes`): the status code and the exact message text that
/// clientv3 matches on to give callers typed errors.
enum EtcdErrors {
    static func rpc(_ e: MVCCError) -> RPCError {
        let message = "etcdserver: " + e.description
        switch e {
        case .compacted, .futureRevision: return RPCError(code: .outOfRange, message: message)
        case .emptyKey, .keyNotFound, .valueProvided, .leaseProvided, .duplicateKey, .tooManyOperations:
            return RPCError(code: .invalidArgument, message: message)
        case .leaseNotFound: return RPCError(code: .notFound, message: message)
        case let .lease(m):
            switch m {
            case MVCCError.leaseTTLTooLarge.description: return RPCError(code: .outOfRange, message: message)
            case MVCCError.notPrimary.description: return RPCError(code: .unavailable, message: "etcdserver: not leader")
            default: return RPCError(code: .failedPrecondition, message: message)
            }
        case let .auth(m):
            switch m {
            case MVCCError.permissionDenied.description: return RPCError(code: .permissionDenied, message: message)
            case MVCCError.invalidAuthToken.description: return RPCError(code: .unauthenticated, message: message)
            case MVCCError.userEmpty.description, MVCCError.roleEmpty.description, MVCCError.authFailed.description,
                 MVCCError.authOldRevision.description, MVCCError.invalidAuthManagement.description:
                return RPCError(code: .invalidArgument, message: message)
            default: return RPCError(code: .failedPrecondition, message: message)
            }
        case .noSpace: return RPCError(code: .resourceExhausted, message: message)
        case .corrupt: return RPCError(code: .dataLoss, message: message)
        case .backend: return RPCError(code: .unknown, message: message)
        case .closed: return RPCError(code: .unavailable, message: "etcdserver: server stopped")
        }
    }

    static func rpc(_ e: NodeError) -> RPCError {
        switch e {
        case .stopped, .noLeader, .proposalDropped, .timedOut: return RPCError(code: .unavailable, message: e.description)
        case .requestTooLarge: return RPCError(code: .invalidArgument, message: e.description)
        case .notLeader, .badLeaderTransferee: return RPCError(code: .failedPrecondition, message: e.description)
        case .dataDirectory, .fatal: return RPCError(code: .unavailable, message: "etcdserver: server stopped (\(e.description))")
        }
    }

    static let memberNotFound = RPCError(code: .notFound, message: "etcdserver: member not found")
    static let notEnoughMembers = RPCError(code: .unknown, message: "etcdserver: re-configuration failed due to not enough started members")
    static let learnerNotReady = RPCError(code: .failedPrecondition, message: "etcdserver: can only promote a learner member which is in sync with leader")
    static let memberNotLearner = RPCError(code: .failedPrecondition, message: "etcdserver: can only promote a learner member")
    static let peerURLExists = RPCError(code: .failedPrecondition, message: "etcdserver: Peer URLs already exists")
    static let noLeader = RPCError(code: .unavailable, message: "etcdserver: no leader")
    static let watchCanceled = "etcdserver: mvcc: watcher is canceled"
}
