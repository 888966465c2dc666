import GRPCCore
import KeelGRPC
import KeelProto

/// etcd's Cluster service for a single member: the list is real; changes answer as etcd does
/// where the answer does not need a second member (unknown IDs, a learner-only promote, the
/// last voter), and say plainly that adding members needs the peer transport otherwise.
struct ClusterService: Etcdserverpb_Cluster.ServiceProtocol {
    let core: ServerCore

    static let needsPeers = RPCError(code: .unimplemented,
                                     message: "keel: membership changes need the peer transport (--listen-peer-urls), which this build does not serve yet")

    func memberAdd(request: ServerRequest<Etcdserverpb_MemberAddRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_MemberAddResponse> {
        try await core.unary("Cluster", "MemberAdd", request) { r, info in
            try core.requireAdmin(info)
            let existing = Set(core.selfMember.peerUrls)
            if r.peerUrls.contains(where: existing.contains) { throw EtcdErrors.peerURLExists }
            throw Self.needsPeers
        }
    }

    func memberRemove(request: ServerRequest<Etcdserverpb_MemberRemoveRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_MemberRemoveResponse> {
        try await core.unary("Cluster", "MemberRemove", request) { r, info in
            try core.requireAdmin(info)
            let members = core.node.membership
            guard members.voters.contains(r.id) || members.learners.contains(r.id) else { throw EtcdErrors.memberNotFound }
            // Removing the only voter leaves no quorum: etcd's strict reconfiguration check.
            if members.voters == [r.id] { throw EtcdErrors.notEnoughMembers }
            throw Self.needsPeers
        }
    }

    func memberUpdate(request: ServerRequest<Etcdserverpb_MemberUpdateRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_MemberUpdateResponse> {
        try await core.unary("Cluster", "MemberUpdate", request) { r, info in
            try core.requireAdmin(info)
            let members = core.node.membership
            guard members.voters.contains(r.id) || members.learners.contains(r.id) else { throw EtcdErrors.memberNotFound }
            throw Self.needsPeers
        }
    }

    func memberList(request: ServerRequest<Etcdserverpb_MemberListRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_MemberListResponse> {
        try await core.unary("Cluster", "MemberList", request) { _, _ in
            var response = Etcdserverpb_MemberListResponse()
            response.members = [core.selfMember]
            // etcd's Cluster service header has no revision.
            var h = Etcdserverpb_ResponseHeader()
            h.clusterID = core.node.config.clusterID
            h.memberID = core.node.config.memberID
            h.raftTerm = core.node.leaderAndTerm.term
            response.header = h
            return response
        }
    }

    func memberPromote(request: ServerRequest<Etcdserverpb_MemberPromoteRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_MemberPromoteResponse> {
        try await core.unary("Cluster", "MemberPromote", request) { r, info in
            try core.requireAdmin(info)
            let members = core.node.membership
            if members.voters.contains(r.id) { throw EtcdErrors.memberNotLearner }
            guard members.learners.contains(r.id) else { throw EtcdErrors.memberNotFound }
            throw Self.needsPeers
        }
    }
}
