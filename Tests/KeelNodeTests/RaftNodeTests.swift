import Foundation
import KeelIO
import KeelMVCC
@testable import KeelNode
import KeelProto
import KeelTestSupport
import KeelWAL
import XCTest

/// The node driver on a real data directory: requests go through raft, the WAL (fdatasync'd
/// before anything is applied or answered) and KeelMVCC; a restart replays the WAL without
/// applying anything twice.
final class RaftNodeTests: XCTestCase {
    func put(_ key: String, _ value: String) -> Etcdserverpb_InternalRaftRequest {
        var r = Etcdserverpb_InternalRaftRequest()
        r.put.key = Data(key.utf8)
        r.put.value = Data(value.utf8)
        return r
    }

    func get(_ node: RaftNode, _ key: String) async throws -> Etcdserverpb_RangeResponse {
        try await node.linearizableBarrier()
        var q = Etcdserverpb_RangeRequest()
        q.key = Data(key.utf8)
        return try node.kv.range(q)
    }

    func testPutsGoThroughRaftAndTheWAL() async throws {
        let dir = try temporaryDirectory(self)
        let node = try RaftNode.start(config: RaftNode.Config(dataDirectory: dir))
        defer { node.stop() }
        var last: Int64 = 0
        for i in 0..<20 {
            guard case let .put(resp) = try await node.propose(put("k\(i % 5)", "v\(i)")) else { return XCTFail("not a put response") }
            XCTAssertGreaterThan(resp.header.revision, last)
            last = resp.header.revision
        }
        let r = try await get(node, "k4")
        XCTAssertEqual(r.kvs.first.map { String(decoding: $0.value, as: UTF8.self) }, "v19")
        XCTAssertEqual(r.kvs.first?.version, 4)
        let st = node.status
        XCTAssertEqual(st.role, .leader)
        XCTAssertEqual(st.lead, node.config.memberID)
        // The WAL holds the bootstrap conf change, the leader's empty entry and the 20 puts.
        let walDir = dir + "/member/wal"
        XCTAssertTrue(FileManager.default.fileExists(atPath: walDir))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/member/snap/db"))
    }

    func testRestartReplaysWithoutApplyingTwice() async throws {
        let dir = try temporaryDirectory(self)
        var node = try RaftNode.start(config: RaftNode.Config(dataDirectory: dir))
        var revision: Int64 = 0
        for i in 0..<10 {
            if case let .put(resp) = try await node.propose(put("a", "\(i)")) { revision = resp.header.revision }
        }
        node.stop()
        let before = revision
        node = try RaftNode.start(config: RaftNode.Config(dataDirectory: dir))
        defer { node.stop() }
        let r = try await get(node, "a")
        XCTAssertEqual(r.kvs.first.map { String(decoding: $0.value, as: UTF8.self) }, "9")
        XCTAssertEqual(r.header.revision, before, "nothing applied twice on replay")
        guard case let .put(resp) = try await node.propose(put("a", "after")) else { return XCTFail() }
        XCTAssertEqual(resp.header.revision, before + 1)
        XCTAssertEqual(node.status.role, .leader)
    }

    func testWALIsEtcdsAndOnlyHoldsCommittedRequests() async throws {
        let dir = try temporaryDirectory(self)
        let node = try RaftNode.start(config: RaftNode.Config(dataDirectory: dir))
        _ = try await node.propose(put("x", "1"))
        node.stop()
        let wal = try WAL.open(fileSystem: POSIXFileSystem(), directory: dir + "/member/wal")
        let contents = try wal.readAll()
        try wal.close()
        XCTAssertEqual(contents.entries.first?.type, 1, "the log starts with etcd's bootstrap ConfChangeAddNode")
        let requests = contents.entries.filter { $0.type == 0 && !$0.data.isEmpty }
        XCTAssertEqual(requests.count, 1)
        let decoded = try Etcdserverpb_InternalRaftRequest(serializedBytes: requests[0].data)
        XCTAssertEqual(decoded.put.key, Data("x".utf8))
        XCTAssertNotEqual(decoded.header.id, 0, "etcd's request ID in the header")
        XCTAssertEqual(contents.hardState.commit, contents.entries.last?.index)
    }

    func testRequestErrorsComeBackAndStoppedNodeRefuses() async throws {
        let dir = try temporaryDirectory(self)
        let node = try RaftNode.start(config: RaftNode.Config(dataDirectory: dir))
        var revoke = Etcdserverpb_InternalRaftRequest()
        revoke.leaseRevoke.id = 12345
        guard case let .failed(err) = try await node.propose(revoke) else { return XCTFail("revoking an unknown lease must fail") }
        XCTAssertEqual(err, .leaseNotFound)
        node.stop()
        do {
            _ = try await node.propose(put("y", "1"))
            XCTFail("a stopped node applied a request")
        } catch {
            guard case .stopped = error else { return XCTFail("\(error)") }
        }
    }

    func testSecondNodeOnTheSameDataDirectoryRefuses() throws {
        let dir = try temporaryDirectory(self)
        let node = try RaftNode.start(config: RaftNode.Config(dataDirectory: dir))
        defer { node.stop() }
        XCTAssertThrowsError(try RaftNode.start(config: RaftNode.Config(dataDirectory: dir))) { error in
            guard case let .dataDirectory(message) = error as? NodeError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("another keel or etcd"), message)
        }
    }

    /// Nothing is acknowledged before it is fdatasync'd: after a power cut that drops every
    /// unsynced write of the WAL (seeded simulated file system), every acknowledged put is in
    /// the log that survived.
    func testAcknowledgedPutsSurviveAPowerCut() async throws {
        let seed = testSeed()
        let fs = SimulatedFileSystem(seed: seed)
        let backendDir = try temporaryDirectory(self)
        for mode in SimulatedFileSystem.CrashMode.allCases {
            let dir = "/data-\(mode)"
            var config = RaftNode.Config(dataDirectory: dir)
            config.backendPath = backendDir + "/db-\(mode)"
            let node = try RaftNode.start(config: config, fileSystem: fs)
            var acknowledged: [String] = []
            for i in 0..<30 {
                let key = "k\(i)"
                if case .put = try await node.propose(put(key, "v")) { acknowledged.append(key) }
            }
            fs.restart(mode: mode)  // the power cut: the node's later writes go nowhere that matters
            let wal = try WAL.open(fileSystem: fs, directory: dir + "/member/wal")
            let contents = try wal.readAll()
            try wal.close()
            let logged = Set(contents.entries.compactMap { e -> String? in
                guard e.type == 0, !e.data.isEmpty, let r = try? Etcdserverpb_InternalRaftRequest(serializedBytes: e.data) else { return nil }
                return String(decoding: r.put.key, as: UTF8.self)
            })
            XCTAssertEqual(acknowledged.count, 30)
            XCTAssertTrue(Set(acknowledged).isSubset(of: logged), "\(mode) (seed \(seed)): acknowledged puts missing from the WAL: \(Set(acknowledged).subtracting(logged))")
            node.stop()
        }
    }

    /// A failed fdatasync is fatal: the request waiting on it fails, the node stops, and no
    /// later request is taken (never retried).
    func testFailedFsyncStopsTheNode() async throws {
        let fs = SimulatedFileSystem(seed: testSeed())
        var config = RaftNode.Config(dataDirectory: "/data")
        config.backendPath = try temporaryDirectory(self) + "/db"
        let node = try RaftNode.start(config: config, fileSystem: fs)
        _ = try await node.propose(put("before", "1"))
        fs.failSync(after: 1)
        do {
            _ = try await node.propose(put("during", "1"))
            XCTFail("a put whose fdatasync failed was acknowledged")
        } catch {
            guard case .fatal = error else { return XCTFail("\(error)") }
        }
        do {
            _ = try await node.propose(put("after", "1"))
            XCTFail("the node kept taking requests after a failed fdatasync")
        } catch {
            guard case .fatal = error else { return XCTFail("\(error)") }
        }
        node.stop()
    }

    /// An expired lease is revoked through raft by the leader: its keys go, at one revision.
    func testExpiredLeaseIsRevokedThroughRaft() async throws {
        var config = RaftNode.Config(dataDirectory: try temporaryDirectory(self))
        config.tickMilliseconds = 10
        config.kvOptions.minLeaseTTL = 1
        let node = try RaftNode.start(config: config)
        defer { node.stop() }
        var grant = Etcdserverpb_InternalRaftRequest()
        grant.leaseGrant.ttl = 1
        guard case let .leaseGrant(id, ttl) = try await node.propose(grant) else { return XCTFail("not a grant") }
        XCTAssertNotEqual(id, 0, "the node picks the ID before proposing")
        XCTAssertEqual(ttl, 1)
        var p = put("ephemeral", "x")
        p.put.lease = id
        _ = try await node.propose(p)
        _ = try await node.propose(put("durable", "y"))
        let before = try await get(node, "ephemeral").kvs.count
        XCTAssertEqual(before, 1)
        let deadline = Date().addingTimeInterval(10)
        while try await get(node, "ephemeral").kvs.count == 1 && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        let ephemeral = try await get(node, "ephemeral").kvs.count
        let durable = try await get(node, "durable").kvs.count
        XCTAssertEqual(ephemeral, 0, "the lease expired and its key was revoked")
        XCTAssertEqual(durable, 1)
        XCTAssertNil(node.kv.leaseTimeToLive(id: id), "the lease itself is gone")
    }

    /// Auth and alarm requests go through raft like KV requests and land in the store.
    func testAuthAndAlarmRequestsApply() async throws {
        let node = try RaftNode.start(config: RaftNode.Config(dataDirectory: try temporaryDirectory(self)))
        defer { node.stop() }
        var add = Etcdserverpb_InternalRaftRequest()
        add.authUserAdd.name = "alice"
        add.authUserAdd.password = "secret"
        guard case .authChanged = try await node.propose(add) else { return XCTFail("user add") }
        var role = Etcdserverpb_InternalRaftRequest()
        role.authRoleAdd.name = "reader"
        guard case .authChanged = try await node.propose(role) else { return XCTFail("role add") }
        var grant = Etcdserverpb_InternalRaftRequest()
        grant.authUserGrantRole.user = "alice"
        grant.authUserGrantRole.role = "reader"
        guard case .authChanged = try await node.propose(grant) else { return XCTFail("grant") }
        XCTAssertEqual(try node.kv.userGet("alice"), ["reader"])
        var again = Etcdserverpb_InternalRaftRequest()
        again.authUserAdd.name = "alice"
        again.authUserAdd.password = "x"
        guard case .failed = try await node.propose(again) else { return XCTFail("a second alice must be refused") }
        var alarm = Etcdserverpb_InternalRaftRequest()
        alarm.alarm.action = .activate
        alarm.alarm.memberID = node.config.memberID
        alarm.alarm.alarm = .nospace
        guard case let .alarms(list) = try await node.propose(alarm) else { return XCTFail("alarm") }
        XCTAssertEqual(list.map(\.alarm), [.nospace])
    }

    func testMemberStatusReportsRaftAndBackend() async throws {
        let node = try RaftNode.start(config: RaftNode.Config(dataDirectory: try temporaryDirectory(self)))
        defer { node.stop() }
        _ = try await node.propose(put("s", "1"))
        let st = node.memberStatus()
        XCTAssertEqual(st.leader, node.config.memberID)
        XCTAssertEqual(st.raftTerm, 2, "bootstrap term 1, then the election")
        XCTAssertEqual(st.raftIndex, 3, "bootstrap entry, the leader's empty entry, the put")
        XCTAssertEqual(st.raftAppliedIndex, 3)
        XCTAssertGreaterThan(st.dbSize, 0)
        XCTAssertFalse(st.isLearner)
    }
}
