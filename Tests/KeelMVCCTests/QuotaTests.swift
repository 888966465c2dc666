import Foundation
import KeelBackend
import KeelBolt
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

final class QuotaTests: XCTestCase {
    func testQuotaRaisesNoSpaceWhichCapsPutsUntilDisarmed() throws {
        let dir = try temporaryDirectory(self)
        let backend = try BoltBackend(path: dir + "/db")
        var options = KVStore.Options()
        options.quotaBytes = 256 * 1024
        options.memberID = 0xABC
        var s = try KVStore(backend: backend, options: options)
        var p = Etcdserverpb_PutRequest()
        p.value = Data(repeating: 7, count: 2000)
        var stored = 0
        var refused: MVCCError?
        for i in 0..<1000 {
            p.key = Data("k\(i)".utf8)
            do { _ = try s.put(p); stored += 1; try s.forceCommit() } catch { refused = error as? MVCCError; break }
        }
        XCTAssertEqual(refused, .noSpace)
        XCTAssertEqual("\(MVCCError.noSpace)", "mvcc: database space exceeded")
        XCTAssertGreaterThan(stored, 10)
        XCTAssertEqual(s.alarmList().map { "\($0.memberID):\($0.alarm)" }, ["2748:nospace"])
        // Capped: puts, txns with puts and grants fail; deletes, reads and put-free txns work.
        p.key = Data("tiny".utf8)
        p.value = Data()
        XCTAssertThrowsError(try s.put(p)) { XCTAssertEqual($0 as? MVCCError, .noSpace) }
        XCTAssertThrowsError(try s.grantLease(id: 1, ttl: 10)) { XCTAssertEqual($0 as? MVCCError, .noSpace) }
        var d = Etcdserverpb_DeleteRangeRequest()
        d.key = Data("k".utf8)
        d.rangeEnd = Data("l".utf8)
        XCTAssertEqual(try s.deleteRange(d).deleted, Int64(stored))
        var t = Etcdserverpb_TxnRequest()
        var op = Etcdserverpb_RequestOp()
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("k".utf8)
        op.request = .requestRange(range)
        t.success = [op]
        XCTAssertNoThrow(try s.txn(t))
        // The alarm survives a reopen (persisted), and disarm lifts it.
        try s.close()
        s = try KVStore(backend: backend, options: options)
        XCTAssertEqual(s.alarmList().count, 1)
        XCTAssertTrue(try s.deactivateAlarm(memberID: 0xABC, alarm: .nospace))
        XCTAssertEqual(s.alarmList().count, 0)
        _ = try s.compact(s.currentRevision)
        try s.close()
        try backend.defragment()
        s = try KVStore(backend: backend, options: options)
        XCTAssertNoThrow(try s.put(p))
        try s.close()
        try backend.close()
    }

    func testCostsAreEtcds() {
        var p = Etcdserverpb_PutRequest()
        p.key = Data("abc".utf8)
        p.value = Data(count: 10)
        XCTAssertEqual(KVStore.cost(p), 269)
        var t = Etcdserverpb_TxnRequest()
        var op = Etcdserverpb_RequestOp()
        op.request = .requestPut(p)
        t.success = [op, op]
        t.failure = [op]
        XCTAssertEqual(KVStore.cost(t), 538)
        XCTAssertEqual(KVStore.defaultQuotaBytes, 2_147_483_648)
    }
}
