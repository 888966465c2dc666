import Foundation
import KeelBackend
import KeelBolt
import KeelIO
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

final class AuthTests: XCTestCase {
    func open(_ dir: String, cost: Int = 4) throws -> (BoltBackend, KVStore) {
        let backend = try BoltBackend(path: dir + "/db")
        var options = KVStore.Options()
        options.bcryptCost = cost
        return (backend, try KVStore(backend: backend, options: options))
    }

    func perm(_ type: Authpb_Permission.TypeEnum, _ key: String, _ end: String = "") -> Authpb_Permission {
        var p = Authpb_Permission()
        p.permType = type
        p.key = Data(key.utf8)
        p.rangeEnd = end == "\\0" ? Data([0]) : Data(end.utf8)
        return p
    }

    func testUsersRolesAndTheRootRules() throws {
        let dir = try temporaryDirectory(self)
        var (backend, s) = try open(dir)
        let start = s.authRevision
        XCTAssertEqual(start, 1, "a new store's auth revision")
        XCTAssertThrowsError(try s.authEnable()) { XCTAssertEqual("\($0)", "root user does not exist") }
        try s.userAdd("root", password: "pw")
        XCTAssertThrowsError(try s.authEnable()) { XCTAssertEqual("\($0)", "root user does not have root role") }
        XCTAssertThrowsError(try s.userAdd("root", password: "x")) { XCTAssertEqual("\($0)", "user name already exists") }
        XCTAssertThrowsError(try s.userAdd("", password: "x")) { XCTAssertEqual("\($0)", "user name is empty") }
        XCTAssertThrowsError(try s.userGrantRole("root", role: "nope")) { XCTAssertEqual("\($0)", "role name not found") }
        try s.userGrantRole("root", role: "root")
        try s.userGrantRole("root", role: "root")   // a no-op
        try s.roleAdd("r")
        XCTAssertThrowsError(try s.roleAdd("r")) { XCTAssertEqual("\($0)", "role name already exists") }
        try s.roleGrantPermission("r", perm(.read, "b"))
        try s.roleGrantPermission("r", perm(.write, "a", "c"))
        try s.roleGrantPermission("r", perm(.readwrite, "a", "c"))   // replaces the type
        XCTAssertEqual(try s.roleGet("r").map(\.permType), [.readwrite, .read])
        XCTAssertThrowsError(try s.roleRevokePermission("r", key: Array("zz".utf8), rangeEnd: [])) { XCTAssertEqual("\($0)", "permission is not granted to the role") }
        try s.userAdd("bob", password: "bobpw")
        try s.userGrantRole("bob", role: "r")
        XCTAssertThrowsError(try s.userRevokeRole("bob", role: "root")) { XCTAssertEqual("\($0)", "role is not granted to the user") }
        try s.authEnable()
        XCTAssertThrowsError(try s.userDelete("root")) { XCTAssertEqual("\($0)", "invalid auth management") }
        XCTAssertThrowsError(try s.userRevokeRole("root", role: "root")) { XCTAssertEqual($0 as? MVCCError, .invalidAuthManagement) }
        let revision = s.authRevision
        XCTAssertGreaterThan(revision, start)
        // Persisted: a reopen sees the same.
        try s.close()
        try backend.close()
        (backend, s) = try open(dir)
        XCTAssertTrue(s.isAuthEnabled)
        XCTAssertEqual(s.authRevision, revision)
        XCTAssertEqual(try s.userList(), ["bob", "root"])
        XCTAssertEqual(try s.userGet("bob"), ["r"])
        // Deleting a role takes it from its users.
        try s.roleDelete("r")
        XCTAssertEqual(try s.userGet("bob"), [])
        XCTAssertThrowsError(try s.roleGet("r")) { XCTAssertEqual($0 as? MVCCError, .roleNotFound) }
        try s.authDisable()
        XCTAssertFalse(s.isAuthEnabled)
        try s.close()
        try backend.close()
    }

    func testPasswordsAreBcryptLikeEtcds() throws {
        let dir = try temporaryDirectory(self)
        let (backend, s) = try open(dir, cost: 10)
        try s.userAdd("root", password: "secret")
        try s.userGrantRole("root", role: "root")
        try s.forceCommit()
        let read = try backend.beginRead()
        let user = try Authpb_User(serializedBytes: try read.bucket([Array("authUsers".utf8)]).get(Array("root".utf8))!)
        read.end()
        let hash = String(decoding: user.password, as: UTF8.self)
        XCTAssertTrue(hash.hasPrefix("$2a$10$"), hash)
        XCTAssertEqual(hash.count, 60)
        XCTAssertTrue(BCrypt.check("secret", hash: hash))
        XCTAssertFalse(BCrypt.check("Secret", hash: hash))
        // Hashes etcd's Go bcrypt wrote are checked in EtcdDataFileTests (a real etcd's users).
        XCTAssertThrowsError(try s.authenticate("root", password: "secret", index: 5)) { XCTAssertEqual("\($0)", "authentication is not enabled") }
        try s.authEnable()
        let token = try s.authenticate("root", password: "secret", index: 5)
        XCTAssertTrue(token.hasSuffix(".5"))
        XCTAssertEqual(token.split(separator: ".")[0].count, 16)
        XCTAssertEqual(try s.authInfo(token: token).user, "root")
        XCTAssertThrowsError(try s.authInfo(token: "nope.1")) { XCTAssertEqual("\($0)", "invalid auth token") }
        XCTAssertThrowsError(try s.authenticate("root", password: "wrong", index: 6)) { XCTAssertEqual("\($0)", "authentication failed, invalid user ID or password") }
        try s.close()
        try backend.close()
    }

    func testPermissionChecksForRangesAndTxns() throws {
        let dir = try temporaryDirectory(self)
        let (backend, s) = try open(dir)
        try s.userAdd("root", password: "r")
        try s.userGrantRole("root", role: "root")
        try s.userAdd("u", password: "p")
        try s.roleAdd("role")
        try s.roleGrantPermission("role", perm(.read, "/a/", "/a0"))     // prefix /a/
        try s.roleGrantPermission("role", perm(.readwrite, "/b"))       // the key /b
        try s.roleGrantPermission("role", perm(.write, "/c/", "/c/m"))
        try s.roleGrantPermission("role", perm(.read, "/c/m", "/c/z"))  // with the one above: /c/ .. /c/z for reads? no: only m..z
        try s.roleGrantPermission("role", perm(.read, "/z", "\\0"))     // everything from /z on
        try s.userGrantRole("u", role: "role")
        try s.authEnable()
        let u = AuthInfo(user: "u", revision: s.authRevision)
        func ok(_ key: String, _ end: String = "", write: Bool = false) -> Bool {
            (try? s.checkPermission(u, key: Array(key.utf8), rangeEnd: end == "\\0" ? [0] : Array(end.utf8), write: write)) != nil
        }
        XCTAssertTrue(ok("/a/x"))
        XCTAssertFalse(ok("/a/x", write: true))
        XCTAssertTrue(ok("/a/", "/a0"))
        XCTAssertFalse(ok("/a/", "/a1"), "wider than the grant")
        XCTAssertTrue(ok("/b", write: true))
        XCTAssertFalse(ok("/bb"))
        XCTAssertTrue(ok("/c/a", write: true))
        XCTAssertTrue(ok("/c/m", "/c/y"))
        XCTAssertFalse(ok("/c/a", "/c/y"), "reads of /c/a../c/m are not granted")
        XCTAssertTrue(ok("/zzz"))
        XCTAssertTrue(ok("/z", "\\0"))
        XCTAssertFalse(ok("/y", "\\0"))
        XCTAssertThrowsError(try s.checkPermission(nil, key: [1], rangeEnd: [], write: false)) { XCTAssertEqual("\($0)", "user name is empty") }
        XCTAssertNoThrow(try s.checkPermission(AuthInfo(user: "root", revision: s.authRevision), key: [1], rangeEnd: [0], write: true))
        // An old credential after a change of the auth data.
        try s.roleAdd("another")
        XCTAssertThrowsError(try s.checkPermission(u, key: Array("/b".utf8), rangeEnd: [], write: false)) { XCTAssertEqual($0 as? MVCCError, .authOldRevision) }
        let fresh = AuthInfo(user: "u", revision: s.authRevision)
        var t = Etcdserverpb_TxnRequest()
        var c = Etcdserverpb_Compare()
        c.key = Data("/a/1".utf8)
        t.compare = [c]
        var op = Etcdserverpb_RequestOp()
        var p = Etcdserverpb_PutRequest()
        p.key = Data("/b".utf8)
        op.request = .requestPut(p)
        t.success = [op]
        XCTAssertNoThrow(try s.checkTxnPermission(fresh, t))
        p.key = Data("/a/1".utf8)
        op.request = .requestPut(p)
        var nested = Etcdserverpb_TxnRequest()
        nested.failure = [op]
        var nestedOp = Etcdserverpb_RequestOp()
        nestedOp.request = .requestTxn(nested)
        t.failure = [nestedOp]
        XCTAssertThrowsError(try s.checkTxnPermission(fresh, t)) { XCTAssertEqual($0 as? MVCCError, .permissionDenied) }
        try s.close()
        try backend.close()
    }
}
