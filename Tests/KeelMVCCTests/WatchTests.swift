import Foundation
import KeelBackend
import KeelBolt
import KeelIO
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

final class WatchTests: XCTestCase {
    func open(_ dir: String) throws -> (BoltBackend, KVStore) {
        let backend = try BoltBackend(path: dir + "/db")
        return (backend, try KVStore(backend: backend))
    }

    @discardableResult
    func put(_ s: KVStore, _ k: String, _ v: String = "v") throws -> Int64 {
        var p = Etcdserverpb_PutRequest()
        p.key = Data(k.utf8)
        p.value = Data(v.utf8)
        return try s.put(p).header.revision
    }

    @discardableResult
    func delete(_ s: KVStore, _ k: String, _ end: String = "") throws -> Int64 {
        var d = Etcdserverpb_DeleteRangeRequest()
        d.key = Data(k.utf8)
        d.rangeEnd = Data(end.utf8)
        return try s.deleteRange(d).header.revision
    }

    /// (type, key, mod revision) of every event, in order.
    func summary(_ responses: [Etcdserverpb_WatchResponse]) -> [String] {
        responses.flatMap { r in r.events.map { "\($0.type == .put ? "PUT" : "DELETE") \(String(decoding: $0.kv.key, as: UTF8.self)) @\($0.kv.modRevision)" } }
    }

    func testLiveEventsFiltersAndPrevKV() throws {
        let dir = try temporaryDirectory(self)
        let (backend, s) = try open(dir)
        let stream = s.openWatchStream()
        let one = try stream.watch(WatchRequest(key: Array("a".utf8)))
        var prefix = WatchRequest(key: Array("f".utf8), rangeEnd: Array("g".utf8))
        prefix.prevKV = true
        let two = try stream.watch(prefix)
        var noDelete = WatchRequest(key: Array("a".utf8), rangeEnd: [0])
        noDelete.noDelete = true
        let three = try stream.watch(noDelete)
        XCTAssertEqual([one, two, three], [0, 1, 2])
        XCTAssertThrowsError(try stream.watch({ var r = WatchRequest(key: [1]); r.id = 1; return r }())) {
            XCTAssertEqual($0 as? MVCCError, .duplicateWatchID)
        }
        try put(s, "a", "1")
        try put(s, "foo", "x")
        try put(s, "foo", "y")
        try delete(s, "a")
        try put(s, "zz")
        let responses = stream.poll()
        XCTAssertEqual(summary(responses.filter { $0.watchID == one }), ["PUT a @2", "DELETE a @5"])
        XCTAssertEqual(summary(responses.filter { $0.watchID == three }), ["PUT a @2", "PUT foo @3", "PUT foo @4", "PUT zz @6"])
        let foo = responses.filter { $0.watchID == two }
        XCTAssertEqual(summary(foo), ["PUT foo @3", "PUT foo @4"])
        XCTAssertFalse(foo[0].events[0].hasPrevKv)
        XCTAssertEqual(foo[1].events[0].prevKv.value, Data("x".utf8))
        XCTAssertEqual(foo.map(\.header.revision), [3, 4])
        // A delete event carries {key, mod_revision} only.
        let deleted = responses.first { $0.watchID == one && $0.events.first?.type == .delete }!.events[0].kv
        XCTAssertEqual(deleted.key, Data("a".utf8))
        XCTAssertEqual(deleted.modRevision, 5)
        XCTAssertEqual(deleted.createRevision, 0)
        XCTAssertEqual(deleted.version, 0)
        XCTAssertTrue(stream.cancel(one))
        try put(s, "a")
        XCTAssertTrue(stream.poll().allSatisfy { $0.watchID != one })
        XCTAssertEqual(stream.requestProgress()?.header.revision, s.currentRevision)
        XCTAssertEqual(stream.requestProgress()?.watchID, -1)
        stream.close()
        try s.close()
        try backend.close()
    }

    /// A watcher started at every revision replays exactly the changes from there on, equal to
    /// what a watcher that saw them live received; one started below the compacted revision
    /// is canceled with `compact_revision`.
    func testReplayFromEveryRevisionEqualsLiveEvents() throws {
        let dir = try temporaryDirectory(self)
        let (backend, s) = try open(dir)
        let live = s.openWatchStream(capacity: 100_000)
        _ = try live.watch(WatchRequest(key: [0], rangeEnd: [0]))
        var rng = SplitMix64(seed: testSeed())
        for i in 0..<150 {
            let key = "k\(rng.next() % 9)"
            switch rng.next() % 5 {
            case 0: try delete(s, key)
            case 1: try delete(s, "k3", "k6")
            case 2:
                var t = Etcdserverpb_TxnRequest()
                for k in ["t\(i % 3)", "u\(i % 4)"] {
                    var op = Etcdserverpb_RequestOp()
                    var p = Etcdserverpb_PutRequest()
                    p.key = Data(k.utf8)
                    p.value = Data("\(i)".utf8)
                    op.request = .requestPut(p)
                    t.success.append(op)
                }
                _ = try s.txn(t)
            default: try put(s, key, "\(i)")
            }
        }
        let liveEvents = live.poll().flatMap(\.events)
        XCTAssertGreaterThan(liveEvents.count, 100)
        let compactAt: Int64 = 20
        _ = try s.compact(compactAt)
        for start in (compactAt)...(s.currentRevision + 1) {
            let stream = s.openWatchStream(capacity: 100_000)
            _ = try stream.watch(WatchRequest(key: [0], rangeEnd: [0], startRevision: start))
            try s.syncWatchers()
            try s.syncWatchers()
            let events = stream.poll().flatMap(\.events)
            // Compaction at a revision drops a tombstone written exactly there (etcd's rule), so
            // a replay from the compacted revision itself cannot see that delete; etcd's is the same.
            let expected = liveEvents.filter { $0.kv.modRevision >= start && !(start == compactAt && $0.kv.modRevision == compactAt && $0.type == .delete) }
            XCTAssertEqual(events, expected, "replay from \(start)")
            stream.close()
        }
        let old = s.openWatchStream()
        let id = try old.watch(WatchRequest(key: Array("k1".utf8), startRevision: compactAt - 5))
        try s.syncWatchers()
        let responses = old.poll()
        XCTAssertEqual(responses.count, 1)
        XCTAssertEqual(responses.first?.watchID, id)
        XCTAssertEqual(responses.first?.compactRevision, compactAt)
        XCTAssertEqual(responses.first?.canceled, true)
        XCTAssertFalse(old.cancel(id), "a compacted watcher is gone")
        try s.close()
        try backend.close()
    }

    /// A stalled watcher (a queue of 2 that nobody drains) does not slow writers; once drained,
    /// it catches up from the backend and loses nothing.
    func testStalledWatcherDoesNotBlockWritersAndCatchesUp() throws {
        let dir = try temporaryDirectory(self)
        let (backend, s) = try open(dir)
        let slow = s.openWatchStream(capacity: 2)
        _ = try slow.watch(WatchRequest(key: Array("k".utf8), rangeEnd: Array("l".utf8)))
        let start = monotonicNanoseconds()
        for i in 0..<2000 { try put(s, "k\(i % 50)", "\(i)") }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        print("2,000 puts with a stalled watcher: \(seconds) s")
        var events: [Mvccpb_Event] = []
        for _ in 0..<5000 {
            events += slow.poll().flatMap(\.events)
            if events.count >= 2000 { break }
            try s.syncWatchers()
        }
        XCTAssertEqual(events.count, 2000)
        XCTAssertEqual(events.map(\.kv.modRevision), Array(2...2001))
        XCTAssertEqual(slow.requestProgress()?.header.revision, 2001)
        try s.close()
        try backend.close()
    }
}
