import Foundation
import GRPCCore
import KeelMVCC
import KeelNode
import KeelProto

/// What every service shares: the node, response headers, auth, proposals with etcd's error
/// mapping, and the metrics they count.
final class ServerCore: Sendable {
    let node: RaftNode
    let config: ServerConfig
    let metrics: ServerMetrics
    /// The etcd API version Keel speaks (Status `version`, `/version`).
    static let etcdVersion = "3.4.0"
    static let clusterVersion = "3.4.0"

    init(node: RaftNode, config: ServerConfig, metrics: ServerMetrics) {
        self.node = node
        self.config = config
        self.metrics = metrics
    }

    var kv: KVStore { node.kv }

    /// `{cluster_id, member_id, revision, raft_term}`; keeps a revision already set.
    func header(_ h: Etcdserverpb_ResponseHeader = Etcdserverpb_ResponseHeader()) -> Etcdserverpb_ResponseHeader {
        var h = h
        h.clusterID = node.config.clusterID
        h.memberID = node.config.memberID
        if h.revision == 0 { h.revision = kv.currentRevision }
        h.raftTerm = node.leaderAndTerm.term
        return h
    }

    /// The caller's identity from the `token` metadata, when auth is on. nil when auth is off
    /// or no token was sent (the permission check then refuses with "user name is empty").
    func authInfo(_ metadata: Metadata) throws(RPCError) -> AuthInfo? {
        guard kv.isAuthEnabled else { return nil }
        var token: String?
        for t in metadata[stringValues: "token"] { token = t; break }
        if token == nil { for t in metadata[stringValues: "authorization"] { token = t; break } }
        guard let token else { return nil }
        do { return try kv.authInfo(token: token) } catch { throw EtcdErrors.rpc(error) }
    }

    /// etcd's admin check for auth and maintenance RPCs that need root when auth is on.
    func requireAdmin(_ info: AuthInfo?) throws(RPCError) {
        guard kv.isAuthEnabled else { return }
        guard let info, !info.user.isEmpty else { throw EtcdErrors.rpc(MVCCError.userEmpty) }
        let roles: [String]
        do { roles = try kv.userGet(info.user) } catch { throw EtcdErrors.rpc(MVCCError.permissionDenied) }
        guard roles.contains("root") else { throw EtcdErrors.rpc(MVCCError.permissionDenied) }
    }

    func check(_ body: () throws(MVCCError) -> Void) throws(RPCError) {
        do { try body() } catch { throw EtcdErrors.rpc(error) }
    }

    /// "hasleader" metadata: refuse at once when there is no leader (clientv3's
    /// `WithRequireLeader`).
    func checkRequireLeader(_ metadata: Metadata) throws(RPCError) {
        for v in metadata[stringValues: "hasleader"] where v == "true" {
            if node.leaderAndTerm.leader == 0 { throw EtcdErrors.noLeader }
        }
    }

    /// Proposes through raft and waits for the applied result; a request's own error comes
    /// back as etcd's.
    func propose(_ r: Etcdserverpb_InternalRaftRequest) async throws(RPCError) -> AppliedResult {
        metrics.proposalsPending.add(1)
        defer { metrics.proposalsPending.add(-1) }
        let result: AppliedResult
        do { result = try await node.propose(r) } catch {
            metrics.proposalsFailed.add(1)
            throw EtcdErrors.rpc(error)
        }
        if case let .failed(e) = result { throw EtcdErrors.rpc(e) }
        if case let .unsupported(m) = result { throw RPCError(code: .unimplemented, message: "keel: \(m)") }
        return result
    }

    /// Waits until this member has applied everything committed before the call (ReadIndex).
    func linearize() async throws(RPCError) {
        do { try await node.linearizableBarrier() } catch { throw EtcdErrors.rpc(error) }
    }

    /// This member as etcd's `Member` message.
    var selfMember: Etcdserverpb_Member {
        var m = Etcdserverpb_Member()
        m.id = node.config.memberID
        m.name = config.name
        m.peerUrls = config.initialAdvertisePeerURLs
        m.clientUrls = config.advertiseClientURLs
        m.isLearner = node.membership.learners.contains(node.config.memberID)
        return m
    }

    /// Runs one unary RPC: counts it (grpc_server_started/handled_total), maps Keel's typed
    /// errors to etcd's gRPC errors.
    func unary<In: Sendable, Out: Sendable>(_ service: String, _ method: String, _ request: ServerRequest<In>,
                                            _ body: (In, AuthInfo?) async throws -> Out) async throws -> ServerResponse<Out> {
        metrics.started(service, method, type: "unary")
        do {
            try checkRequireLeader(request.metadata)
            let info = try authInfo(request.metadata)
            let out = try await body(request.message, info)
            metrics.handled(service, method, type: "unary", code: "OK")
            return ServerResponse(message: out)
        } catch {
            let rpc = Self.rpcError(error)
            metrics.handled(service, method, type: "unary", code: Self.codeName(rpc.code))
            throw rpc
        }
    }

    static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let e as RPCError: return e
        case let e as MVCCError: return EtcdErrors.rpc(e)
        case let e as NodeError: return EtcdErrors.rpc(e)
        case is CancellationError: return RPCError(code: .cancelled, message: "context canceled")
        default: return RPCError(code: .unknown, message: "\(error)")
        }
    }

    static func codeName(_ code: RPCError.Code) -> String {
        switch code {
        case .cancelled: return "Canceled"
        case .unknown: return "Unknown"
        case .invalidArgument: return "InvalidArgument"
        case .deadlineExceeded: return "DeadlineExceeded"
        case .notFound: return "NotFound"
        case .alreadyExists: return "AlreadyExists"
        case .permissionDenied: return "PermissionDenied"
        case .resourceExhausted: return "ResourceExhausted"
        case .failedPrecondition: return "FailedPrecondition"
        case .aborted: return "Aborted"
        case .outOfRange: return "OutOfRange"
        case .unimplemented: return "Unimplemented"
        case .internalError: return "Internal"
        case .unavailable: return "Unavailable"
        case .dataLoss: return "DataLoss"
        case .unauthenticated: return "Unauthenticated"
        default: return "Unknown"
        }
    }
}
