import Foundation
import GRPCCore
import KeelBackend
import KeelGRPC
import KeelIO
import KeelMVCC
import KeelProto

/// etcd's Maintenance service: alarms through raft, status, online defragmentation, hashes,
/// backend snapshots (32 KiB chunks then the sha256 of everything sent, as `etcdctl snapshot
/// save` checks) and leader transfer.
struct MaintenanceService: Etcdserverpb_Maintenance.ServiceProtocol {
    let core: ServerCore

    func alarm(request: ServerRequest<Etcdserverpb_AlarmRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_AlarmResponse> {
        try await core.unary("Maintenance", "Alarm", request) { a, _ in
            var response = Etcdserverpb_AlarmResponse()
            switch a.action {
            case .get:
                response.alarms = core.kv.alarmList().filter { m in
                    (a.memberID == 0 || m.memberID == a.memberID) && (a.alarm == .none || m.alarm == a.alarm)
                }
            case .activate, .deactivate:
                let existed = core.kv.alarmList().contains { $0.memberID == a.memberID && $0.alarm == a.alarm }
                var proposal = Etcdserverpb_InternalRaftRequest()
                proposal.alarm = a
                guard case .alarms = try await core.propose(proposal) else { throw RPCError(code: .internalError, message: "keel: unexpected apply result") }
                // As etcd: the alarm raised, or the one cleared if it was raised.
                if a.action == .activate || existed { response.alarms = [Self.member(a)] }
            case .UNRECOGNIZED:
                throw RPCError(code: .invalidArgument, message: "etcdserver: unknown alarm action")
            }
            response.header = core.header()
            return response
        }
    }

    static func member(_ a: Etcdserverpb_AlarmRequest) -> Etcdserverpb_AlarmMember {
        var m = Etcdserverpb_AlarmMember()
        m.memberID = a.memberID
        m.alarm = a.alarm
        return m
    }

    func status(request: ServerRequest<Etcdserverpb_StatusRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_StatusResponse> {
        try await core.unary("Maintenance", "Status", request) { _, _ in
            let s = core.node.memberStatus()
            var response = Etcdserverpb_StatusResponse()
            response.version = ServerCore.etcdVersion
            response.dbSize = s.dbSize
            response.dbSizeInUse = s.dbSizeInUse
            response.leader = s.leader
            response.raftIndex = s.raftIndex
            response.raftTerm = s.raftTerm
            response.raftAppliedIndex = s.raftAppliedIndex
            response.isLearner = s.isLearner
            if s.leader == 0 { response.errors.append("etcdserver: no leader") }
            for a in core.kv.alarmList() { response.errors.append("memberID:\(a.memberID) alarm:\(Self.alarmName(a.alarm)) ") }
            response.header = core.header()
            return response
        }
    }

    static func alarmName(_ a: Etcdserverpb_AlarmType) -> String {
        switch a {
        case .none: return "NONE"
        case .nospace: return "NOSPACE"
        case .corrupt: return "CORRUPT"
        case let .UNRECOGNIZED(n): return "\(n)"
        }
    }

    func defragment(request: ServerRequest<Etcdserverpb_DefragmentRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_DefragmentResponse> {
        try await core.unary("Maintenance", "Defragment", request) { _, info in
            try core.requireAdmin(info)
            let kv = core.kv
            try await core.node.perform { try kv.defragment() }
            var response = Etcdserverpb_DefragmentResponse()
            response.header = core.header()
            return response
        }
    }

    func hash(request: ServerRequest<Etcdserverpb_HashRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_HashResponse> {
        try await core.unary("Maintenance", "Hash", request) { _, info in
            try core.requireAdmin(info)
            var response = Etcdserverpb_HashResponse()
            let kv = core.kv
            response.hash = try await core.node.perform { try kv.hash() }
            response.header = core.header()
            return response
        }
    }

    func hashKV(request: ServerRequest<Etcdserverpb_HashKVRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_HashKVResponse> {
        try await core.unary("Maintenance", "HashKV", request) { r, info in
            try core.requireAdmin(info)
            let kv = core.kv, revision = r.revision
            let h = try await core.node.perform { try kv.hashKV(revision) }
            
            var response = Etcdserverpb_HashKVResponse()
            response.hash = h.hash
            response.compactRevision = h.compactRevision
            var header = Etcdserverpb_ResponseHeader()
            header.revision = h.currentRevision
            response.header = core.header(header)
            return response
        }
    }

    func snapshot(request: ServerRequest<Etcdserverpb_SnapshotRequest>, context: ServerContext) async throws -> StreamingServerResponse<Etcdserverpb_SnapshotResponse> {
        core.metrics.started("Maintenance", "Snapshot", type: "server_stream")
        let info = try core.authInfo(request.metadata)
        try core.requireAdmin(info)
        let core = self.core
        // A consistent copy goes to a temporary file first (writers continue meanwhile), then
        // streams from it.
        let path = core.node.config.dataDirectory + "/member/snap/keel-snapshot-\(UInt64.random(in: 1...UInt64.max)).tmp"
        FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        guard let out = FileHandle(forWritingAtPath: path) else {
            throw RPCError(code: .unknown, message: "keel: cannot create the snapshot file \(path)")
        }
        var digest = SHA256()
        let total: Int64
        do {
            // The batch commits on the driver thread; the copy is read from here.
            let kv = core.kv
            try await core.node.perform { try kv.forceCommit() }
            total = try core.kv.backup(boltScratchPath: path + ".bolt", commitFirst: false) { (bytes: UnsafeRawBufferPointer) throws(BackendError) in
                digest.update(bytes)
                out.write(Data(bytes))
            }
            try out.close()
        } catch {
            try? out.close()
            try? FileManager.default.removeItem(atPath: path)
            throw ServerCore.rpcError(error)
        }
        let sha = digest.finalize()
        return StreamingServerResponse { writer in
            defer { try? FileManager.default.removeItem(atPath: path) }
            guard let input = FileHandle(forReadingAtPath: path) else {
                throw RPCError(code: .unknown, message: "keel: cannot read the snapshot file \(path)")
            }
            defer { try? input.close() }
            var sent: Int64 = 0
            while sent < total {
                let chunk = input.readData(ofLength: 32 * 1024)
                if chunk.isEmpty { throw RPCError(code: .dataLoss, message: "keel: snapshot file \(path) ended at \(sent) of \(total) bytes") }
                sent += Int64(chunk.count)
                var response = Etcdserverpb_SnapshotResponse()
                response.remainingBytes = UInt64(total - sent)
                response.blob = chunk
                response.header = core.header()
                try await writer.write(response)
            }
            var last = Etcdserverpb_SnapshotResponse()
            last.remainingBytes = 0
            last.blob = Data(sha)
            last.header = core.header()
            try await writer.write(last)
            core.metrics.handled("Maintenance", "Snapshot", type: "server_stream", code: "OK")
            return [:]
        }
    }

    func moveLeader(request: ServerRequest<Etcdserverpb_MoveLeaderRequest>, context: ServerContext) async throws -> ServerResponse<Etcdserverpb_MoveLeaderResponse> {
        try await core.unary("Maintenance", "MoveLeader", request) { r, info in
            try core.requireAdmin(info)
            let timeout = Double(core.config.electionMilliseconds) / 1000 * 2
            try await core.node.moveLeader(to: r.targetID, timeout: timeout)
            var response = Etcdserverpb_MoveLeaderResponse()
            response.header = core.header()
            return response
        }
    }
}
