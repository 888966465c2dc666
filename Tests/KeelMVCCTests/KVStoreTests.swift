import Foundation
import KeelBackend
import KeelBolt
import KeelIO
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

/// Focused behaviour of the store: etcd's schema bytes, restore, validation errors.
final class KVStoreTests: XCTestCase {
    func store(_ dir: String) throws -> (KVStore, BoltBackend) {
        let backend = try BoltBackend(path: dir + "/db")
        return (try KVStore(backend: backend), backend)
    }

    func put(_ s: KVStore, _ k: String, _ v: String, index: UInt64 = 0) throws -> Int64 {
        var p = Etcdserverpb_PutRequest()
        p.key = Data(k.utf8)
        p.value = Data(v.utf8)
        return try s.put(p, index: index).header.revision
    }

    /// etcd's example record: `foo`=`bar2` at revision 3, created at 2, version 2, stored under
    /// the 17-byte key 3_0 as `0a03666f6f 1002 1803 2002 2a0462617232`; a delete stores `{key}`
    /// under the 18-byte tombstone key; consistent_index is 8 bytes big-endian.
    func testSchemaBytesAreEtcds() throws {
        let dir = try temporaryDirectory(self)
        let (s, backend) = try store(dir)
        XCTAssertEqual(try put(s, "foo", "bar1"), 2)
        XCTAssertEqual(try put(s, "foo", "bar2", index: 41), 3)
        var d = Etcdserverpb_DeleteRangeRequest()
        d.key = Data("foo".utf8)
        XCTAssertEqual(try s.deleteRange(d, index: 42).deleted, 1)
        try s.forceCommit()
        let read = try backend.beginRead()
        defer { read.end() }
        let keys = try read.bucket([Array("key".utf8)]).entries()
        XCTAssertEqual(keys.map(\.key), [Revision(main: 2).bytes(), Revision(main: 3).bytes(), Revision(main: 4).bytes(tombstone: true)])
        XCTAssertEqual(keys[1].value, [0x0a, 0x03, 0x66, 0x6f, 0x6f, 0x10, 0x02, 0x18, 0x03, 0x20, 0x02, 0x2a, 0x04, 0x62, 0x61, 0x72, 0x32])
        XCTAssertEqual(keys[2].value, [0x0a, 0x03, 0x66, 0x6f, 0x6f])
        XCTAssertEqual(Revision(main: 3).bytes(), [0, 0, 0, 0, 0, 0, 0, 3, 0x5f, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try read.bucket([Array("meta".utf8)]).get(Array("consistent_index".utf8)), [0, 0, 0, 0, 0, 0, 0, 42])
        XCTAssertEqual(try read.buckets(in: []).map { String(decoding: $0, as: UTF8.self) }, ["auth", "authRoles", "authUsers", "key", "lease", "meta"])
    }

    /// Reads see writes of the open batch; a reopen rebuilds the same answers from the backend.
    func testReadYourWritesAndRestore() throws {
        let dir = try temporaryDirectory(self)
        var (s, backend) = try store(dir)
        for i in 0..<50 { _ = try put(s, "k\(i % 7)", "v\(i)", index: UInt64(i + 1)) }
        var r = Etcdserverpb_RangeRequest()
        r.key = Data("k".utf8)
        r.rangeEnd = Data("l".utf8)
        let before = try s.range(r)
        XCTAssertEqual(before.count, 7)
        XCTAssertEqual(before.header.revision, 51)
        _ = try s.compact(30)
        try s.close()
        try backend.close()
        (s, backend) = try store(dir)
        XCTAssertEqual(s.currentRevision, 51)
        XCTAssertEqual(s.compactRevision, 30)
        XCTAssertEqual(s.consistentIndex, 50)
        XCTAssertEqual(try s.range(r), before)
        r.revision = 29
        XCTAssertThrowsError(try s.range(r)) { XCTAssertEqual($0 as? MVCCError, .compacted) }
        r.revision = 52
        XCTAssertThrowsError(try s.range(r)) { XCTAssertEqual($0 as? MVCCError, .futureRevision) }
        XCTAssertThrowsError(try s.compact(30)) { XCTAssertEqual($0 as? MVCCError, .compacted) }
        XCTAssertThrowsError(try s.compact(52)) { XCTAssertEqual($0 as? MVCCError, .futureRevision) }
        try s.close()
        try backend.close()
    }

    /// etcd's request checks, with etcd's messages.
    func testValidationErrorsCarryEtcdsMessages() throws {
        var p = Etcdserverpb_PutRequest()
        XCTAssertThrowsError(try KVStore.validate(p)) { XCTAssertEqual("\($0)", "key is not provided") }
        p.key = Data("a".utf8)
        p.ignoreValue = true
        p.value = Data("x".utf8)
        XCTAssertThrowsError(try KVStore.validate(p)) { XCTAssertEqual("\($0)", "value is provided") }
        p = Etcdserverpb_PutRequest()
        p.key = Data("a".utf8)
        p.ignoreLease = true
        p.lease = 5
        XCTAssertThrowsError(try KVStore.validate(p)) { XCTAssertEqual("\($0)", "lease is provided") }
        // Duplicate keys: a put twice, a put inside a deleted range, nested txns; then/else may share.
        func putOp(_ k: String) -> Etcdserverpb_RequestOp { var op = Etcdserverpb_RequestOp(); var p = Etcdserverpb_PutRequest(); p.key = Data(k.utf8); op.request = .requestPut(p); return op }
        func delOp(_ k: String, _ e: String) -> Etcdserverpb_RequestOp { var op = Etcdserverpb_RequestOp(); var d = Etcdserverpb_DeleteRangeRequest(); d.key = Data(k.utf8); d.rangeEnd = Data(e.utf8); op.request = .requestDeleteRange(d); return op }
        func txnOp(_ s: [Etcdserverpb_RequestOp], _ f: [Etcdserverpb_RequestOp]) -> Etcdserverpb_RequestOp { var op = Etcdserverpb_RequestOp(); var t = Etcdserverpb_TxnRequest(); t.success = s; t.failure = f; op.request = .requestTxn(t); return op }
        var t = Etcdserverpb_TxnRequest()
        t.success = [putOp("a"), putOp("a")]
        XCTAssertThrowsError(try KVStore.validate(t, maxOps: 128)) { XCTAssertEqual("\($0)", "duplicate key given in txn request") }
        t.success = [delOp("a", "c"), putOp("b")]
        XCTAssertThrowsError(try KVStore.validate(t, maxOps: 128)) { XCTAssertEqual($0 as? MVCCError, .duplicateKey) }
        t.success = [txnOp([putOp("x")], [putOp("x")])]
        XCTAssertNoThrow(try KVStore.validate(t, maxOps: 128), "then and else of one nested txn may put the same key")
        t.success = [txnOp([putOp("x")], []), putOp("x")]
        XCTAssertThrowsError(try KVStore.validate(t, maxOps: 128)) { XCTAssertEqual($0 as? MVCCError, .duplicateKey) }
        t.success = (0..<129).map { putOp("k\($0)") }
        XCTAssertThrowsError(try KVStore.validate(t, maxOps: 128)) { XCTAssertEqual("\($0)", "too many operations in txn request") }
        XCTAssertEqual("\(MVCCError.compacted)", "mvcc: required revision has been compacted")
        XCTAssertEqual("\(MVCCError.futureRevision)", "mvcc: required revision is a future revision")
    }

    /// A delete then an ignore_value put of the same key in one txn can pass etcd's checks (a
    /// range end of "\0" escapes the duplicate-key rule) and fail halfway (etcd panics): the
    /// store drops the batch and refuses to go on; a reopen shows the last committed state.
    func testIgnoreValueAfterDeleteInOneTxnStopsTheStore() throws {
        let dir = try temporaryDirectory(self)
        let (s, backend) = try store(dir)
        _ = try put(s, "a", "1")
        _ = try put(s, "b", "2")
        try s.forceCommit()
        var t = Etcdserverpb_TxnRequest()
        var del = Etcdserverpb_RequestOp()
        var d = Etcdserverpb_DeleteRangeRequest()
        d.key = Data("a".utf8)
        d.rangeEnd = Data([0])
        del.request = .requestDeleteRange(d)
        var put = Etcdserverpb_RequestOp()
        var p = Etcdserverpb_PutRequest()
        p.key = Data("b".utf8)
        p.ignoreValue = true
        put.request = .requestPut(p)
        t.success = [del, put]
        XCTAssertThrowsError(try s.txn(t)) { XCTAssertEqual($0 as? MVCCError, .keyNotFound) }
        XCTAssertThrowsError(try s.range(Etcdserverpb_RangeRequest())) { error in
            guard case .backend? = error as? MVCCError else { return XCTFail("\(error)") }
        }
        let reopened = try KVStore(backend: backend)
        XCTAssertEqual(reopened.currentRevision, 3)
        var all = Etcdserverpb_RangeRequest()
        all.key = Data([0])
        all.rangeEnd = Data([0])
        XCTAssertEqual(try reopened.range(all).kvs.map { String(decoding: $0.value, as: UTF8.self) }, ["1", "2"])
        try reopened.close()
        try backend.close()
    }

    /// The README's example, as written there.
    func testReadmeExample() throws {
        let dir = try temporaryDirectory(self)
        let backend = try BoltBackend(path: dir + "/member.db")
        let store = try KVStore(backend: backend)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("/config/a".utf8)
        put.value = Data("1".utf8)
        let revision = try store.put(put, index: 1).header.revision
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("/config/".utf8)
        get.rangeEnd = Data("/config0".utf8)
        let kvs = try store.range(get).kvs
        try store.close()
        try backend.close()
        XCTAssertEqual(revision, 2)
        XCTAssertEqual(kvs.map(\.value), [Data("1".utf8)])
    }

    /// etcd's Hash RPC: the backend hash without meta/consistent_index, so members that applied
    /// the same changes at different raft indexes agree.
    func testHashSkipsTheConsistentIndex() throws {
        let dirA = try temporaryDirectory(self)
        let dirB = try temporaryDirectory(self)
        let (a, ba) = try store(dirA)
        let (b, bb) = try store(dirB)
        for i in 0..<20 {
            _ = try put(a, "k\(i)", "v", index: UInt64(i + 1))
            _ = try put(b, "k\(i)", "v", index: UInt64(i + 100))
        }
        XCTAssertEqual(try a.hash(), try b.hash())
        let read = try ba.beginRead()
        XCTAssertNotEqual(try backendHash(read), try a.hash(), "the full hash covers consistent_index")
        read.end()
        try a.close()
        try b.close()
        try ba.close()
        try bb.close()
    }

    /// Revisions near Int64.max in a hostile file are a typed error at open, not an overflow later.
    func testOutOfRangeRevisionsAreRefused() throws {
        let dir = try temporaryDirectory(self)
        let backend = try BoltBackend(path: dir + "/db")
        let tx = try backend.beginWrite()
        try tx.createBucket([Array("key".utf8)])
        try tx.createBucket([Array("meta".utf8)])
        var kv = Mvccpb_KeyValue()
        kv.key = Data("k".utf8)
        try tx.bucket([Array("key".utf8)]).put(Revision(main: Int64.max).bytes(), [UInt8](try kv.serializedBytes() as [UInt8]))
        try tx.commit()
        XCTAssertThrowsError(try KVStore(backend: backend)) { error in
            guard case .corrupt? = error as? MVCCError else { return XCTFail("\(error)") }
        }
        try backend.close()
    }
}
