import Foundation
import KeelBackend
import KeelBolt
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

/// A real etcd 3.4's `member/snap/db`: KVStore opens it and answers Range at every readable
/// revision as `etcdctl get --rev=N -w json` did, and HashKV as `etcdctl endpoint hashkv`.
final class EtcdDataFileTests: XCTestCase {
    func testRangeAtEveryRevisionAndHashKVEqualEtcds() throws {
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdServer(dataDir: dir + "/etcd")
        func ctl(_ args: [String]) throws -> Shell.Output { try etcd.ctl(args) }
        for i in 0..<30 { _ = try ctl(["put", "/k/\(i % 9)", "value-\(i)"]) }
        _ = try ctl(["del", "/k/3"])
        _ = try ctl(["del", "/k/", "--prefix=false"])
        _ = try ctl(["put", "/a", "x"])
        _ = try ctl(["del", "/k/5", "/k/7"])
        _ = try ctl(["compaction", "12"])
        let granted = try ctl(["lease", "grant", "600"]).stdout   // "lease 694d7a8c6b0b3a04 granted with TTL(600s)"
        let leaseHex = String(granted.split(separator: " ")[1])
        _ = try ctl(["put", "/leased", "x", "--lease=\(leaseHex)"])
        for i in 0..<5 { _ = try ctl(["put", "/z/\(i)", String(repeating: "v", count: i * 100)]) }
        func json(_ output: Shell.Output) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as! [String: Any]
        }
        let head = try json(try ctl(["get", "/", "--prefix", "-w", "json"]))
        let current = ((head["header"] as! [String: Any])["revision"] as! NSNumber).int64Value
        var expected: [Int64: [(key: Data, value: Data, create: Int64, mod: Int64, version: Int64)]] = [:]
        for rev in 12...current {
            let j = try json(try ctl(["get", "\u{0}", "--from-key", "--rev=\(rev)", "-w", "json"]))
            expected[rev] = ((j["kvs"] as? [[String: Any]]) ?? []).map { kv in
                (Data(base64Encoded: kv["key"] as! String)!, Data(base64Encoded: (kv["value"] as? String) ?? "")!,
                 (kv["create_revision"] as! NSNumber).int64Value, (kv["mod_revision"] as! NSNumber).int64Value,
                 (kv["version"] as! NSNumber).int64Value)
            }
        }
        let hashkv = try JSONSerialization.jsonObject(with: Data(try ctl(["endpoint", "hashkv", "-w", "json"]).stdout.utf8)) as! [[String: Any]]
        let hashResponse = hashkv[0]["HashKV"] as! [String: Any]
        let etcdHash = (hashResponse["hash"] as! NSNumber).uint32Value
        // Auth data written by etcd: users with Go-bcrypt passwords, roles with permissions.
        _ = try ctl(["user", "add", "root:rootpw"])
        _ = try ctl(["role", "add", "root"])
        _ = try ctl(["user", "grant-role", "root", "root"])
        _ = try ctl(["user", "add", "alice:alicepw"])
        _ = try ctl(["role", "add", "reader"])
        _ = try ctl(["role", "grant-permission", "reader", "read", "/k/", "--prefix=true"])
        _ = try ctl(["role", "grant-permission", "reader", "readwrite", "/a"])
        _ = try ctl(["user", "grant-role", "alice", "reader"])
        _ = try ctl(["auth", "enable"])
        etcd.stop()

        var options = KeelBolt.Options()
        options.readOnly = true
        let backend = try BoltBackend(path: dir + "/etcd/member/snap/db", options: options)
        let store = try KVStore(backend: backend)
        XCTAssertEqual(store.currentRevision, current)
        XCTAssertEqual(store.compactRevision, 12)
        for rev in 12...current {
            var r = Etcdserverpb_RangeRequest()
            r.key = Data([0])
            r.rangeEnd = Data([0])
            r.revision = rev
            let kvs = try store.range(r).kvs
            let want = expected[rev]!
            XCTAssertEqual(kvs.count, want.count, "revision \(rev)")
            for (a, e) in zip(kvs, want) {
                XCTAssertEqual(a.key, e.key, "revision \(rev)")
                XCTAssertEqual(a.value, e.value, "revision \(rev)")
                XCTAssertEqual(a.createRevision, e.create, "revision \(rev)")
                XCTAssertEqual(a.modRevision, e.mod, "revision \(rev)")
                XCTAssertEqual(a.version, e.version, "revision \(rev)")
            }
        }
        var below = Etcdserverpb_RangeRequest()
        below.key = Data("/".utf8)
        below.revision = 11
        XCTAssertThrowsError(try store.range(below)) { XCTAssertEqual($0 as? MVCCError, .compacted) }
        XCTAssertEqual(try store.hashKV(0).hash, etcdHash, "etcdctl endpoint hashkv")
        XCTAssertGreaterThan(store.consistentIndex, 0)
        // The lease etcd granted, with its key.
        let leaseID = Int64(bitPattern: UInt64(leaseHex, radix: 16)!)
        XCTAssertEqual(store.leaseIDs(), [leaseID])
        XCTAssertEqual(store.leaseTimeToLive(id: leaseID, keys: true)?.keys, [Array("/leased".utf8)])
        XCTAssertEqual(store.leaseTimeToLive(id: leaseID)?.grantedTTL, 600)
        // The auth store etcd wrote: same users, roles and permissions; Go's bcrypt hashes check.
        XCTAssertTrue(store.isAuthEnabled)
        XCTAssertEqual(try store.userList(), ["alice", "root"])
        XCTAssertEqual(try store.roleList(), ["reader", "root"])
        XCTAssertEqual(try store.userGet("alice"), ["reader"])
        XCTAssertEqual(try store.roleGet("reader").map { "\($0.permType) \(String(decoding: $0.key, as: UTF8.self)) \(String(decoding: $0.rangeEnd, as: UTF8.self))" },
                       ["readwrite /a ", "read /k/ /k0"])
        let token = try store.authenticate("alice", password: "alicepw", index: 1)
        XCTAssertThrowsError(try store.authenticate("alice", password: "wrong", index: 1)) { XCTAssertEqual($0 as? MVCCError, .authFailed) }
        let alice = try store.authInfo(token: token)
        XCTAssertNoThrow(try store.checkPermission(alice, key: Array("/k/1".utf8), rangeEnd: [], write: false))
        XCTAssertNoThrow(try store.checkPermission(alice, key: Array("/k/".utf8), rangeEnd: Array("/k0".utf8), write: false))
        XCTAssertThrowsError(try store.checkPermission(alice, key: Array("/k/1".utf8), rangeEnd: [], write: true)) {
            XCTAssertEqual($0 as? MVCCError, .permissionDenied)
        }
        XCTAssertNoThrow(try store.checkPermission(alice, key: Array("/a".utf8), rangeEnd: [], write: true))
        try backend.close()
    }
}
