import GRPCCore
import KeelGRPC
import KeelMVCC
import KeelNode
import KeelProto

/// etcd's KV service: reads are served locally after a ReadIndex round (or at once when
/// `serializable`); writes go through raft as `InternalRaftRequest`s. Permission checks cover
/// every key a request touches, nested txn ops included.
struct KVService: Etcdserverpb_KV.ServiceProtocol {
    let core: ServerCore

    func range(request: ServerRequest<Etcdserverpb_RangeRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_RangeResponse> {
        try await core.unary("KV", "Range", request) { r, info in
            try core.check { () throws(MVCCError) in
                try core.kv.checkPermission(info, key: [UInt8](r.key), rangeEnd: [UInt8](r.rangeEnd), write: false)
            }
            if !r.serializable { try await core.linearize() }
            var response = try core.kv.range(r)
            response.header = core.header(response.header)
            return response
        }
    }

    func put(request: ServerRequest<Etcdserverpb_PutRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_PutResponse> {
        try await core.unary("KV", "Put", request) { p, info in
            try core.check { () throws(MVCCError) in
                try KVStore.validate(p)
                try core.kv.checkPermission(info, key: [UInt8](p.key), rangeEnd: [], write: true)
                if p.prevKv { try core.kv.checkPermission(info, key: [UInt8](p.key), rangeEnd: [], write: false) }
            }
            var proposal = Etcdserverpb_InternalRaftRequest()
            proposal.put = p
            guard case var .put(response) = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
            response.header = core.header(response.header)
            return response
        }
    }

    func deleteRange(request: ServerRequest<Etcdserverpb_DeleteRangeRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_DeleteRangeResponse> {
        try await core.unary("KV", "DeleteRange", request) { d, info in
            try core.check { () throws(MVCCError) in
                if d.key.isEmpty { throw MVCCError.emptyKey }
                try core.kv.checkPermission(info, key: [UInt8](d.key), rangeEnd: [UInt8](d.rangeEnd), write: true)
                if d.prevKv { try core.kv.checkPermission(info, key: [UInt8](d.key), rangeEnd: [UInt8](d.rangeEnd), write: false) }
            }
            var proposal = Etcdserverpb_InternalRaftRequest()
            proposal.deleteRange = d
            guard case var .deleteRange(response) = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
            response.header = core.header(response.header)
            return response
        }
    }

    func txn(request: ServerRequest<Etcdserverpb_TxnRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_TxnResponse> {
        try await core.unary("KV", "Txn", request) { t, info in
            try core.check { () throws(MVCCError) in
                try KVStore.validate(t, maxOps: core.config.maxTxnOps)
                try core.kv.checkTxnPermission(info, t)
            }
            var response: Etcdserverpb_TxnResponse
            if Self.isReadOnly(t) {
                // As etcd: a txn without writes is a read, served locally after ReadIndex.
                try await core.linearize()
                response = try core.kv.txn(t)
            } else {
                var proposal = Etcdserverpb_InternalRaftRequest()
                proposal.txn = t
                guard case let .txn(r) = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
                response = r
            }
            response.header = core.header(response.header)
            return response
        }
    }

    func compact(request: ServerRequest<Etcdserverpb_CompactionRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_CompactionResponse> {
        try await core.unary("KV", "Compact", request) { c, _ in
            var proposal = Etcdserverpb_InternalRaftRequest()
            proposal.compaction = c
            guard case var .compaction(response) = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
            response.header = core.header(response.header)
            return response
        }
    }

    /// Whether no branch of `t` (nested txns included) writes.
    static func isReadOnly(_ t: Etcdserverpb_TxnRequest) -> Bool {
        for op in t.success + t.failure {
            switch op.request {
            case .requestPut?, .requestDeleteRange?: return false
            case let .requestTxn(inner)?: if !isReadOnly(inner) { return false }
            case .requestRange?, nil: break
            }
        }
        return true
    }
}
