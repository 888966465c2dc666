import Foundation
import KeelIO
import KeelMVCC
@testable import KeelNode
import KeelProto
import KeelTestSupport
import KeelWAL
import XCTest

/// Snapshots every `snapshotCount` entries: a `.snap` with etcd's v2 store, its WAL record,
/// the in-memory log compacted, old files purged; a restart starts from the newest snapshot.
final class SnapshotTests: XCTestCase {
    func put(_ key: String, _ value: String) -> Etcdserverpb_InternalRaftRequest {
        var r = Etcdserverpb_InternalRaftRequest()
        r.put.key = Data(key.utf8)
        r.put.value = Data(value.utf8)
        return r
    }

    func config(_ dir: String) -> RaftNode.Config {
        var c = RaftNode.Config(dataDirectory: dir)
        c.snapshotCount = 10
        c.snapshotCatchUpEntries = 3
        c.maxSnapshots = 2
        return c
    }

    func testSnapshotsArePurgedAndRestartUsesTheNewest() async throws {
        let dir = try temporaryDirectory(self)
        var node = try RaftNode.start(config: config(dir))
        for i in 0..<55 { _ = try await node.propose(put("k\(i % 7)", "v\(i)")) }
        let snapDir = dir + "/member/snap"
        let snaps = try FileManager.default.contentsOfDirectory(atPath: snapDir).filter { $0.hasSuffix(".snap") }.sorted()
        XCTAssertEqual(snaps.count, 2, "max-snapshots 2 keeps two: \(snaps)")
        let newest = try Snapshotter(fileSystem: POSIXFileSystem(), directory: snapDir).loadNewest()
        XCTAssertGreaterThan(newest.metadata.index, 45)
        XCTAssertEqual(newest.metadata.confState.voters, [node.config.memberID])
        let json = String(decoding: newest.data, as: UTF8.self)
        XCTAssertTrue(json.hasPrefix("{\"Root\":{\"Path\":\"/\""), json)
        XCTAssertTrue(json.contains("\"/0/members/8e9e05c52164694d/raftAttributes\""), json)
        node.stop()

        // Restart: from the newest snapshot, the WAL entries after it.
        node = try RaftNode.start(config: config(dir))
        defer { node.stop() }
        try await node.linearizableBarrier()
        var q = Etcdserverpb_RangeRequest()
        q.key = Data("k".utf8)
        q.rangeEnd = Data("l".utf8)
        let r = try node.kv.range(q)
        XCTAssertEqual(r.kvs.count, 7)
        XCTAssertEqual(r.header.revision, 56)
        for i in 55..<70 { _ = try await node.propose(put("k\(i % 7)", "v\(i)")) }
        XCTAssertEqual(node.kv.currentRevision, 71)
    }

    /// etcd 3.4 writes the same v2 store JSON for the same member: compared with a `.snap`
    /// made by Debian's etcd.
    func testV2StoreJSONMatchesEtcds() throws {
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdServer(dataDir: dir + "/etcd", extraArguments: ["--snapshot-count", "5"])
        for i in 0..<12 { try etcd.ctl(["put", "k\(i)", "v"]) }
        let list = try etcd.ctl(["member", "list", "-w", "json"])
        etcd.stop()
        guard let idRange = list.stdout.range(of: "\"ID\":"), let id = UInt64(list.stdout[idRange.upperBound...].prefix { $0.isNumber }) else {
            return XCTFail("no member ID in \(list.stdout)")
        }
        let peer = list.stdout.range(of: #"peerURLs":\["([^"]+)"#, options: .regularExpression).map { String(list.stdout[$0].dropFirst(12)) } ?? ""
        let client = list.stdout.range(of: #"clientURLs":\["([^"]+)"#, options: .regularExpression).map { String(list.stdout[$0].dropFirst(14)) } ?? ""
        let snap = try Snapshotter(fileSystem: POSIXFileSystem(), directory: dir + "/etcd/member/snap").loadNewest()
        let theirs = String(decoding: snap.data, as: UTF8.self)
        let ours = String(decoding: V2Store.json(members: [V2Member(id: id, name: "keeltest", peerURLs: [peer], clientURLs: [client])]), as: UTF8.self)
        XCTAssertEqual(ours, theirs)
    }
}
