import Foundation
import GRPCCore
import KeelGRPC
import KeelMVCC
import KeelProto

/// etcd's Lease service. Grants and revokes go through raft; keep-alives renew on the leader
/// (leases only expire there) and answer TTL 0 for a lease that no longer exists.
struct LeaseService: Etcdserverpb_Lease.ServiceProtocol {
    let core: ServerCore

    func leaseGrant(request: ServerRequest<Etcdserverpb_LeaseGrantRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_LeaseGrantResponse> {
        try await core.unary("Lease", "LeaseGrant", request) { g, _ in
            if g.ttl > KVStore.maxLeaseTTL { throw EtcdErrors.rpc(MVCCError.leaseTTLTooLarge) }
            var proposal = Etcdserverpb_InternalRaftRequest()
            proposal.leaseGrant = g
            guard case let .leaseGrant(id, ttl) = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
            var response = Etcdserverpb_LeaseGrantResponse()
            response.id = id
            response.ttl = ttl
            response.header = core.header()
            return response
        }
    }

    func leaseRevoke(request: ServerRequest<Etcdserverpb_LeaseRevokeRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_LeaseRevokeResponse> {
        try await core.unary("Lease", "LeaseRevoke", request) { r, info in
            // As etcd: revoking deletes the attached keys, so the caller needs write permission
            // on each of them.
            if core.kv.isAuthEnabled, let status = core.kv.leaseTimeToLive(id: r.id, keys: true) {
                try core.check { () throws(MVCCError) in
                    for k in status.keys { try core.kv.checkPermission(info, key: k, rangeEnd: [], write: true) }
                }
            }
            var proposal = Etcdserverpb_InternalRaftRequest()
            proposal.leaseRevoke = r
            guard case let .leaseRevoke(revision) = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
            var response = Etcdserverpb_LeaseRevokeResponse()
            var h = Etcdserverpb_ResponseHeader()
            h.revision = revision
            response.header = core.header(h)
            return response
        }
    }

    func leaseKeepAlive(request: StreamingServerRequest<Etcdserverpb_LeaseKeepAliveRequest>, context: ServerContext) async throws -> StreamingServerResponse<Etcdserverpb_LeaseKeepAliveResponse> {
        core.metrics.started("Lease", "LeaseKeepAlive", type: "bidi_stream")
        let core = self.core
        return StreamingServerResponse { writer in
            do {
                for try await k in request.messages {
                    var response = Etcdserverpb_LeaseKeepAliveResponse()
                    response.id = k.id
                    do {
                        response.ttl = try core.kv.renewLease(id: k.id)
                    } catch MVCCError.leaseNotFound {
                        response.ttl = 0
                    }
                    response.header = core.header()
                    try await writer.write(response)
                }
            } catch {
                let rpc = ServerCore.rpcError(error)
                core.metrics.handled("Lease", "LeaseKeepAlive", type: "bidi_stream", code: ServerCore.codeName(rpc.code))
                throw rpc
            }
            core.metrics.handled("Lease", "LeaseKeepAlive", type: "bidi_stream", code: "OK")
            return [:]
        }
    }

    func leaseTimeToLive(request: ServerRequest<Etcdserverpb_LeaseTimeToLiveRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_LeaseTimeToLiveResponse> {
        try await core.unary("Lease", "LeaseTimeToLive", request) { r, _ in
            try await core.linearize()
            var response = Etcdserverpb_LeaseTimeToLiveResponse()
            response.id = r.id
            if let s = core.kv.leaseTimeToLive(id: r.id, keys: r.keys) {
                response.ttl = s.remaining
                response.grantedTtl = s.grantedTTL
                response.keys = s.keys.map { Data($0) }
            } else {
                response.ttl = -1
            }
            response.header = core.header()
            return response
        }
    }

    func leaseLeases(request: ServerRequest<Etcdserverpb_LeaseLeasesRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_LeaseLeasesResponse> {
        try await core.unary("Lease", "LeaseLeases", request) { _, _ in
            try await core.linearize()
            var response = Etcdserverpb_LeaseLeasesResponse()
            response.leases = core.kv.leaseIDs().map { id in
                var s = Etcdserverpb_LeaseStatus()
                s.id = id
                return s
            }
            response.header = core.header()
            return response
        }
    }
}
