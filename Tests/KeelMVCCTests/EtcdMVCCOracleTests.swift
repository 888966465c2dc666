import Foundation
import KeelBackend
import KeelBolt
import KeelIO
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

let etcdMVCC = GoProgram(name: "etcdmvcc", requiredPath: "/usr/share/gocode/src/go.etcd.io/etcd/mvcc/kvstore.go",
                         installHint: "golang-etcd-server-dev")

/// The same seeded operations applied to etcd 3.4's own Go `mvcc` store and to `KVStore`:
/// every revision, count, key-value, error and HashKV equal, and the two database files hold
/// the same buckets, keys and values (equal `snapshot status` hashes).
final class EtcdMVCCOracleTests: XCTestCase {
    struct Gen {
        var rng: SplitMix64
        mutating func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        static let keys = ["a", "b", "c", "foo", "foo/x", "foo/y", "zz", "\u{1}"]
        mutating func key() -> [UInt8] { Array(Gen.keys[int(Gen.keys.count)].utf8) }
        mutating func value() -> [UInt8] { (0..<int(20)).map { _ in UInt8(int(256)) } }
        mutating func end(for key: [UInt8]) -> [UInt8] {
            switch int(4) {
            case 0, 1: return []
            case 2: return [0]
            default: return key + [0xFF]
            }
        }
    }

    func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    func testSameAnswersAsEtcdsMVCC() throws {
        let seed = testSeed()
        var g = Gen(rng: SplitMix64(seed: seed))
        var ops: [[String: Any]] = []
        var current: Int64 = 1
        var index: UInt64 = 0
        for _ in 0..<1500 {
            index += 1
            switch g.int(100) {
            case 0..<30:
                ops.append(["op": "put", "key": b64(g.key()), "value": b64(g.value()), "index": index])
                current += 1
            case 30..<40:
                let k = g.key()
                ops.append(["op": "del", "key": b64(k), "end": b64(g.end(for: k)), "index": index])
            case 40..<52:
                // Distinct keys, puts only plus single-key deletes of other keys (etcd's
                // duplicate-key rule holds, so KVStore.txn accepts the same ops).
                var used = Set<[UInt8]>()
                var subs: [[String: Any]] = []
                for _ in 0..<(1 + g.int(4)) {
                    let k = g.key()
                    guard used.insert(k).inserted else { continue }
                    if g.int(3) == 0 { subs.append(["kind": "del", "key": b64(k), "end": ""]) } else { subs.append(["kind": "put", "key": b64(k), "value": b64(g.value())]) }
                }
                ops.append(["op": "txn", "ops": subs, "index": index])
            case 52..<80:
                let k = g.key()
                ops.append(["op": "range", "key": b64(k), "end": b64(g.end(for: k)), "rev": Int64(g.int(Int(current) + 40)) - 20, "limit": g.int(4)])
            case 80..<86:
                ops.append(["op": "compact", "rev": Int64(g.int(Int(current) + 40))])
            case 86..<93:
                ops.append(["op": "hashkv", "rev": Int64(g.int(Int(current) + 40)) - 10])
            case 93..<96:
                ops.append(["op": "commit"])
            default:
                ops.append(["op": "reopen"])
            }
        }
        ops.append(["op": "close"])

        let dir = try temporaryDirectory(self)
        let script = dir + "/ops.jsonl"
        let lines = try ops.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: script, atomically: true, encoding: .utf8)
        if let keep = ProcessInfo.processInfo.environment["KEEL_KEEP_OPS"] { try? FileManager.default.copyItem(atPath: script, toPath: keep) }
        let binary = try etcdMVCC.binary()
        let run = try Shell.run(["sh", "-c", "'\(binary)' '\(dir)/etcd.db' < '\(script)'"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let results = run.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(results.count, ops.count, "one result per operation")

        var backend = try BoltBackend(path: dir + "/keel.db")
        // etcd's bare mvcc store with a fake lessor: no `lease` bucket.
        var storeOptions = KVStore.Options()
        storeOptions.leases = false
        storeOptions.auth = false
        var store = try KVStore(backend: backend, options: storeOptions)
        var compared = 0
        for (n, (op, expected)) in zip(ops, results).enumerated() {
            guard let expected else { XCTFail("line \(n): no result"); continue }
            let context = "seed \(seed) op \(n) \(lines[n])"
            let err = expected["err"] as? String
            func bytes(_ v: Any?) -> Data { Data(base64Encoded: (v as? String) ?? "") ?? Data() }
            func int(_ v: Any?) -> Int64 { (v as? NSNumber)?.int64Value ?? 0 }
            do {
                switch op["op"] as! String {
                case "put":
                    var p = Etcdserverpb_PutRequest()
                    p.key = bytes(op["key"])
                    p.value = bytes(op["value"])
                    XCTAssertEqual(try store.put(p, index: op["index"] as! UInt64).header.revision, int(expected["rev"]), context)
                case "del":
                    var d = Etcdserverpb_DeleteRangeRequest()
                    d.key = bytes(op["key"])
                    d.rangeEnd = bytes(op["end"])
                    let r = try store.deleteRange(d, index: op["index"] as! UInt64)
                    XCTAssertEqual(r.deleted, int(expected["deleted"]), context)
                    XCTAssertEqual(r.header.revision, int(expected["rev"]), context)
                case "txn":
                    var t = Etcdserverpb_TxnRequest()
                    for sub in op["ops"] as! [[String: Any]] {
                        var requestOp = Etcdserverpb_RequestOp()
                        if sub["kind"] as! String == "put" {
                            var p = Etcdserverpb_PutRequest()
                            p.key = bytes(sub["key"])
                            p.value = bytes(sub["value"])
                            requestOp.request = .requestPut(p)
                        } else {
                            var d = Etcdserverpb_DeleteRangeRequest()
                            d.key = bytes(sub["key"])
                            requestOp.request = .requestDeleteRange(d)
                        }
                        t.success.append(requestOp)
                    }
                    XCTAssertEqual(try store.txn(t, index: op["index"] as! UInt64).header.revision, int(expected["rev"]), context)
                case "range":
                    var r = Etcdserverpb_RangeRequest()
                    r.key = bytes(op["key"])
                    r.rangeEnd = bytes(op["end"])
                    r.revision = op["rev"] as! Int64
                    r.limit = Int64(op["limit"] as! Int)
                    do {
                        let response = try store.range(r)
                        XCTAssertNil(err, context)
                        XCTAssertEqual(response.header.revision, int(expected["rev"]), context)
                        XCTAssertEqual(response.count, int(expected["count"]), context)
                        let kvs = (expected["kvs"] as? [[String: Any]]) ?? []
                        XCTAssertEqual(response.kvs.count, kvs.count, context)
                        for (a, e) in zip(response.kvs, kvs) {
                            XCTAssertEqual(a.key, bytes(e["key"]), context)
                            XCTAssertEqual(a.value, bytes(e["value"]), context)
                            XCTAssertEqual(a.createRevision, int(e["create"]), context)
                            XCTAssertEqual(a.modRevision, int(e["mod"]), context)
                            XCTAssertEqual(a.version, int(e["version"]), context)
                        }
                        compared += 1
                    } catch {
                        XCTAssertEqual("\(error)", err, context)
                        compared += 1
                    }
                case "compact":
                    do {
                        _ = try store.compact(op["rev"] as! Int64)
                        XCTAssertNil(err, context)
                    } catch {
                        XCTAssertEqual("\(error)", err, context)
                        compared += 1
                    }
                case "hashkv":
                    do {
                        let h = try store.hashKV(op["rev"] as! Int64)
                        XCTAssertNil(err, context)
                        XCTAssertEqual(Int64(h.hash), int(expected["hash"]), context)
                        XCTAssertEqual(h.currentRevision, int(expected["rev"]), context)
                        XCTAssertEqual(h.compactRevision, int(expected["compact"]), context)
                        compared += 1
                    } catch {
                        XCTAssertEqual("\(error)", err, context)
                        compared += 1
                    }
                case "commit":
                    try store.forceCommit()
                case "reopen":
                    try store.close()
                    try backend.close()
                    backend = try BoltBackend(path: dir + "/keel.db")
                    store = try KVStore(backend: backend, options: storeOptions)
                    XCTAssertEqual(store.currentRevision, int(expected["rev"]), context)
                default:
                    try store.close()
                    try backend.close()
                }
            } catch {
                XCTFail("\(context): \(error)")
            }
        }
        XCTAssertGreaterThan(compared, 400, "ranges, compactions and hashes compared")
        // The two files hold the same data, byte for byte (etcdctl snapshot status's hash).
        var readOnly = KeelBolt.Options()
        readOnly.readOnly = true
        let etcdFile = try BoltBackend(path: dir + "/etcd.db", options: readOnly)
        let keelFile = try BoltBackend(path: dir + "/keel.db", options: readOnly)
        let (etcdRead, keelRead) = (try etcdFile.beginRead(), try keelFile.beginRead())
        XCTAssertEqual(try etcdRead.buckets(in: []), try keelRead.buckets(in: []))
        for bucket in try etcdRead.buckets(in: []) {
            let a = try etcdRead.bucket([bucket]).entries()
            let b = try keelRead.bucket([bucket]).entries()
            XCTAssertEqual(a.count, b.count, "bucket \(String(decoding: bucket, as: UTF8.self))")
            for (x, y) in zip(a, b) where x.key != y.key || x.value != y.value {
                XCTFail("bucket \(String(decoding: bucket, as: UTF8.self)): etcd \(x) keel \(y)")
                break
            }
        }
        XCTAssertEqual(try backendHash(etcdRead), try backendHash(keelRead), "snapshot status hash")
        etcdRead.end()
        keelRead.end()
        try etcdFile.close()
        try keelFile.close()
    }
}
