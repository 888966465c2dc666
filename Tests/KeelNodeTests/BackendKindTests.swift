import Foundation
import KeelMVCC
@testable import KeelNode
import KeelProto
import KeelTestSupport
import XCTest

/// The node on each storage engine: the same requests, the same answers, and a restart that
/// keeps everything.
final class BackendKindTests: XCTestCase {
    func testEveryEngineServesAndRestarts() async throws {
        for kind in BackendKind.allCases {
            let dir = try temporaryDirectory(self) + "/\(kind.rawValue)"
            var config = RaftNode.Config(dataDirectory: dir)
            config.backendKind = kind
            var node = try RaftNode.start(config: config)
            for i in 0..<30 {
                var r = Etcdserverpb_InternalRaftRequest()
                r.put.key = Data("k\(i % 4)".utf8)
                r.put.value = Data("v\(i)".utf8)
                _ = try await node.propose(r)
            }
            node.stop()
            node = try RaftNode.start(config: config)
            try await node.linearizableBarrier()
            var q = Etcdserverpb_RangeRequest()
            q.key = Data("k".utf8)
            q.rangeEnd = Data("l".utf8)
            let r = try node.kv.range(q)
            XCTAssertEqual(r.kvs.map { String(decoding: $0.value, as: UTF8.self) }, ["v28", "v29", "v26", "v27"], "\(kind)")
            XCTAssertEqual(r.header.revision, 31, "\(kind)")
            let engineFiles = try FileManager.default.contentsOfDirectory(atPath: dir + "/member/snap").sorted()
            switch kind {
            case .bolt: XCTAssertEqual(engineFiles, ["db"])
            case .lmdb: XCTAssertEqual(engineFiles, ["db.lmdb"])
            case .crosscheck: XCTAssertEqual(engineFiles, ["db", "db.lmdb"])
            }
            node.stop()
        }
    }
}
