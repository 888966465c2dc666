import Foundation
import KeelServer
import KeelTestSupport
import XCTest

/// Debian's etcdctl 3.4 against a Keel server: the commands an etcd operator runs, with the
/// output etcd gives.
final class EtcdctlTests: XCTestCase {
    var h: ServerHarness!

    override func setUp() async throws {
        try ServerHarness.etcdctlAvailable()
        h = ServerHarness(dataDir: try temporaryDirectory(self) + "/default.etcd")
        try await h.start()
    }

    override func tearDown() async throws {
        await h?.stop()
    }

    func testPutGetDeleteAndTxn() throws {
        XCTAssertEqual(try h.ok(["put", "foo", "bar"]), "OK\n")
        XCTAssertEqual(try h.ok(["get", "foo"]), "foo\nbar\n")
        for i in 1...5 { _ = try h.ok(["put", "key\(i)", "v\(i)"]) }
        XCTAssertEqual(try h.ok(["get", "key", "--prefix", "--keys-only"]).split(separator: "\n"), ["key1", "key2", "key3", "key4", "key5"])
        XCTAssertEqual(try h.ok(["get", "key", "--prefix", "--limit", "2", "--print-value-only"]), "v1\nv2\n")
        XCTAssertEqual(try h.ok(["get", "key", "--prefix", "--sort-by", "KEY", "--order", "DESCEND", "--print-value-only", "--limit", "1"]), "v5\n")
        XCTAssertEqual(try h.ok(["get", "key3", "--from-key", "--keys-only"]).split(separator: "\n"), ["key3", "key4", "key5"])
        let count = try h.ok(["get", "key", "--prefix", "--keys-only", "-w", "json"])
        XCTAssertTrue(count.contains("\"count\":5"), count)
        // An older revision of a key.
        let rev = try revision()
        _ = try h.ok(["put", "foo", "baz"])
        XCTAssertEqual(try h.ok(["get", "foo", "--rev", "\(rev)", "--print-value-only"]), "bar\n")
        XCTAssertEqual(try h.ok(["put", "foo", "qux", "--prev-kv"]), "OK\nfoo\nbaz\n")
        XCTAssertEqual(try h.ok(["del", "key", "--prefix"]), "5\n")
        XCTAssertEqual(try h.ok(["del", "foo", "--prev-kv"]), "1\nfoo\nqux\n")
        XCTAssertEqual(try h.ok(["get", "foo"]), "")

        // Interactive txn: compares, then success ops, then failure ops.
        _ = try h.ok(["put", "user1", "bad"])
        let txn = try h.ok(["txn", "-i"], input: "value(\"user1\") = \"bad\"\n\ndel user1\nput done yes\n\nput user1 good\n\n")
        XCTAssertTrue(txn.hasSuffix("SUCCESS\n\n1\n\nOK\n"), txn)
        XCTAssertEqual(try h.ok(["get", "done", "--print-value-only"]), "yes\n")
        let failed = try h.ok(["txn", "-i"], input: "value(\"done\") = \"no\"\n\nput a 1\n\nput b 2\n\n")
        XCTAssertTrue(failed.hasSuffix("FAILURE\n\nOK\n"), failed)
        XCTAssertEqual(try h.ok(["get", "b", "--print-value-only"]), "2\n")

        // Compaction: old revisions are gone, with etcd's error.
        let current = try revision()
        XCTAssertEqual(try h.ok(["compaction", "\(current)", "--physical"]), "compacted revision \(current)\n")
        let old = try h.ctl(["get", "foo", "--rev", "\(rev)"])
        XCTAssertNotEqual(old.status, 0)
        XCTAssertTrue(old.stderr.contains("etcdserver: mvcc: required revision has been compacted"), old.stderr)
        let future = try h.ctl(["get", "foo", "--rev", "\(current + 100)"])
        XCTAssertTrue(future.stderr.contains("etcdserver: mvcc: required revision is a future revision"), future.stderr)
    }

    /// The current revision from `endpoint status`-free means: a get's header.
    func revision() throws -> Int64 {
        let json = try h.ok(["get", "nonexistent-probe", "-w", "json"])
        guard let r = json.range(of: "\"revision\":") else { XCTFail("no revision in \(json)"); return 0 }
        return Int64(json[r.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    func testWatch() throws {
        let watch = try ServerHarness.Background(["etcdctl", "--endpoints", h.endpoint, "watch", "w", "--prefix", "--prev-kv"])
        // The watch is registered once etcdctl has connected; retry a put until it is seen.
        Thread.sleep(forTimeInterval: 0.5)
        _ = try h.ok(["put", "w1", "a"])
        _ = try h.ok(["put", "w1", "b"])
        _ = try h.ok(["put", "other", "x"])
        _ = try h.ok(["del", "w1"])
        Thread.sleep(forTimeInterval: 0.3)
        let (out, err) = watch.stop()
        XCTAssertEqual(out, "PUT\nw1\na\nPUT\nw1\na\nw1\nb\nDELETE\nw1\nb\nw1\n\n", "stderr: \(err)")

        // From a past revision: the history is replayed.
        let replay = try ServerHarness.Background(["etcdctl", "--endpoints", h.endpoint, "watch", "w1", "--rev", "1"])
        Thread.sleep(forTimeInterval: 0.8)
        let (history, _) = replay.stop()
        XCTAssertEqual(history, "PUT\nw1\na\nPUT\nw1\nb\nDELETE\nw1\n\n")
    }

    func testLeases() throws {
        let grant = try h.ok(["lease", "grant", "60"])
        guard let id = grant.split(separator: " ").dropFirst().first.map(String.init) else { return XCTFail(grant) }
        XCTAssertEqual(grant, "lease \(id) granted with TTL(60s)\n")
        _ = try h.ok(["put", "leased", "v", "--lease", id])
        let ttl = try h.ok(["lease", "timetolive", id, "--keys"])
        XCTAssertTrue(ttl.hasPrefix("lease \(id) granted with TTL(60s), remaining("), ttl)
        XCTAssertTrue(ttl.hasSuffix("attached keys([leased])\n"), ttl)
        XCTAssertEqual(try h.ok(["lease", "list"]), "found 1 leases\n\(id)\n")
        let keepAlive = try h.ok(["lease", "keep-alive", "--once", id])
        XCTAssertTrue(keepAlive.hasPrefix("lease \(id) keepalived with TTL("), keepAlive)
        XCTAssertEqual(try h.ok(["lease", "revoke", id]), "lease \(id) revoked\n")
        XCTAssertEqual(try h.ok(["get", "leased"]), "")
        XCTAssertEqual(try h.ok(["lease", "timetolive", id]), "lease \(id) already expired\n")

        // A short lease expires on its own and takes its key with it.
        let short = try h.ok(["lease", "grant", "1"])
        let shortID = String(short.split(separator: " ")[1])
        _ = try h.ok(["put", "ephemeral", "v", "--lease", shortID])
        XCTAssertEqual(try h.ok(["get", "ephemeral", "--print-value-only"]), "v\n")
        XCTAssertTrue(try eventually(10) { try h.ok(["get", "ephemeral"]) == "" }, "the lease did not expire")
        let unknown = try h.ctl(["put", "x", "y", "--lease", "1234abcd"])
        XCTAssertTrue(unknown.stderr.contains("etcdserver: requested lease not found"), unknown.stderr)
    }

    func testMembersStatusHealthHashAndDefrag() throws {
        let members = try h.ok(["member", "list"])
        XCTAssertEqual(members, "8e9e05c52164694d, started, default, http://localhost:2380, http://localhost:2379, false\n")
        let status = try h.ok(["endpoint", "status", "-w", "json"])
        XCTAssertTrue(status.contains("\"leader\":10276657743932975437"), status)
        XCTAssertTrue(status.contains("\"version\":\"3.4.0\""), status)
        let table = try h.ok(["endpoint", "status", "-w", "table"])
        XCTAssertTrue(table.contains("| 8e9e05c52164694d |   3.4.0 |"), table)
        XCTAssertTrue(table.contains("|      true |"), table)
        let health = try h.ctl(["endpoint", "health"])
        XCTAssertEqual(health.status, 0)
        XCTAssertTrue((health.stdout + health.stderr).contains("\(h.endpoint) is healthy: successfully committed proposal"), health.stderr)
        _ = try h.ok(["put", "a", "1"])
        let hash1 = try h.ok(["endpoint", "hashkv", "-w", "json"])
        XCTAssertTrue(hash1.contains("\"hash\":"), hash1)
        XCTAssertEqual(try h.ok(["defrag"]), "Finished defragmenting etcd member[\(h.endpoint)]\n")
        XCTAssertEqual(try h.ok(["endpoint", "hashkv", "-w", "json"]), hash1, "defragmenting changed the key-value hash")
        XCTAssertEqual(try h.ok(["alarm", "list"]), "")
        let (code, body) = try h.http("/health")
        XCTAssertEqual(code, 200)
        XCTAssertTrue(body.contains("\"health\":\"true\""), body)
        XCTAssertEqual(try h.http("/version").body, "{\"etcdserver\":\"3.4.0\",\"etcdcluster\":\"3.4.0\"}")
        // The client port answers HTTP/1.1 too, as etcd's does, and keeps serving gRPC.
        XCTAssertEqual(try h.http("/version", clientPort: true).body, "{\"etcdserver\":\"3.4.0\",\"etcdcluster\":\"3.4.0\"}")
        let clientHealth = try h.http("/health", clientPort: true)
        XCTAssertEqual(clientHealth.status, 200)
        XCTAssertTrue(clientHealth.body.contains("\"health\":\"true\""), clientHealth.body)
        XCTAssertTrue(try h.http("/metrics", clientPort: true).body.contains("etcd_server_has_leader 1"))
        XCTAssertEqual(try h.http("/nope", clientPort: true).status, 404)
        XCTAssertEqual(try h.ok(["put", "after-http", "1"]), "OK\n")
        let metrics = try h.http("/metrics").body
        for name in ["etcd_server_has_leader 1", "etcd_disk_wal_fsync_duration_seconds_bucket", "etcd_mvcc_db_total_size_in_bytes",
                     "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}"] {
            XCTAssertTrue(metrics.contains(name), "no \(name) in /metrics")
        }
    }

    func testSnapshotSaveAndStatus() throws {
        for i in 0..<50 { _ = try h.ok(["put", "snap\(i)", String(repeating: "x", count: 100)]) }
        let file = h.dataDir + "/../backup.db"
        let saved = try h.ok(["snapshot", "save", file])
        XCTAssertTrue(saved.contains("Snapshot saved at \(file)"), saved)
        let status = try ServerHarness.run(["etcdctl", "snapshot", "status", file, "-w", "json"])
        XCTAssertEqual(status.status, 0, status.stderr)
        // etcdctl counts the keys of every bucket: 50 puts, meta's consistent index, auth's
        // revision, this member in `members` and `cluster/clusterVersion` — 54, as etcd 3.4
        // shows for the same puts.
        XCTAssertTrue(status.stdout.contains("\"totalKey\":54"), status.stdout)
        XCTAssertTrue(status.stdout.contains("\"revision\":51"), status.stdout)
    }

    func testAuth() throws {
        _ = try h.ok(["user", "add", "root:rootpw"])
        _ = try h.ok(["user", "add", "alice:alicepw"])
        _ = try h.ok(["role", "add", "app"])
        _ = try h.ok(["role", "grant-permission", "app", "readwrite", "app/", "--prefix"])
        _ = try h.ok(["user", "grant-role", "alice", "app"])
        XCTAssertEqual(try h.ok(["auth", "enable"]), "Authentication Enabled\n")
        let anonymous = try h.ctl(["put", "app/x", "1"])
        XCTAssertTrue(anonymous.stderr.contains("etcdserver: user name is empty"), anonymous.stderr)
        XCTAssertEqual(try h.ok(["put", "app/x", "1", "--user", "alice:alicepw"]), "OK\n")
        XCTAssertEqual(try h.ok(["get", "app/x", "--print-value-only", "--user", "alice:alicepw"]), "1\n")
        let denied = try h.ctl(["put", "secret", "1", "--user", "alice:alicepw"])
        XCTAssertTrue(denied.stderr.contains("etcdserver: permission denied"), denied.stderr)
        let wrong = try h.ctl(["get", "app/x", "--user", "alice:nope"])
        XCTAssertTrue(wrong.stderr.contains("etcdserver: authentication failed, invalid user ID or password"), wrong.stderr)
        let notAdmin = try h.ctl(["user", "list", "--user", "alice:alicepw"])
        XCTAssertTrue(notAdmin.stderr.contains("etcdserver: permission denied"), notAdmin.stderr)
        XCTAssertEqual(try h.ok(["user", "list", "--user", "root:rootpw"]), "alice\nroot\n")
        XCTAssertEqual(try h.ok(["put", "secret", "1", "--user", "root:rootpw"]), "OK\n")
        // A txn whose failure branch writes outside the permission is refused as a whole.
        let txn = try h.ctl(["txn", "-i", "--user", "alice:alicepw"], input: "value(\"app/x\") = \"1\"\n\nput app/y 2\n\nput secret 2\n\n")
        XCTAssertTrue(txn.stderr.contains("etcdserver: permission denied"), txn.stderr)
        XCTAssertEqual(try h.ok(["auth", "disable", "--user", "root:rootpw"]), "Authentication Disabled\n")
        XCTAssertEqual(try h.ok(["get", "secret", "--print-value-only"]), "1\n")
    }

    func testLockAndElect() throws {
        let locked = try h.ok(["lock", "mylock", "echo", "holding"])
        XCTAssertEqual(locked, "holding\n")
        let candidate = try ServerHarness.Background(["etcdctl", "--endpoints", h.endpoint, "elect", "myelection", "p1"])
        XCTAssertTrue(try eventually(10) {
            let leader = try h.ctl(["elect", "-l", "myelection"], timeout: 2)
            return leader.stdout.hasSuffix("\np1\n")
        }, "the candidate never became leader")
        _ = candidate.stop()
    }

    func testBadRequests() throws {
        let big = try h.ctl(["put", "big"], input: String(repeating: "x", count: 1_600_000))
        XCTAssertTrue(big.stderr.contains("etcdserver: request is too large"), big.stderr)
        let ops = (0..<129).map { "put k\($0) v" }.joined(separator: "\n")
        let many = try h.ctl(["txn", "-i"], input: "\n" + ops + "\n\n\n")
        XCTAssertTrue(many.stderr.contains("etcdserver: too many operations in txn request"), many.stderr)
        let dup = try h.ctl(["txn", "-i"], input: "\nput k v\nput k w\n\n\n")
        XCTAssertTrue(dup.stderr.contains("etcdserver: duplicate key given in txn request"), dup.stderr)
        let revoke = try h.ctl(["lease", "revoke", "abcdef"])
        XCTAssertTrue(revoke.stderr.contains("etcdserver: requested lease not found"), revoke.stderr)
        // A client that is not speaking gRPC at all, then one that hangs up mid-stream.
        _ = try ServerHarness.run(["bash", "-c", "head -c 4096 /dev/urandom > /dev/tcp/127.0.0.1/\(h.endpoint.split(separator: ":")[1]); true"],
                                  timeout: 10, environment: [:])
        _ = try ServerHarness.run(["bash", "-c", "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' > /dev/tcp/127.0.0.1/\(h.endpoint.split(separator: ":")[1]); true"],
                                  timeout: 10, environment: [:])
        let watch = try ServerHarness.Background(["etcdctl", "--endpoints", h.endpoint, "watch", "x"])
        Thread.sleep(forTimeInterval: 0.3)
        kill(watch.process.processIdentifier, SIGKILL)
        _ = watch.stop()
        XCTAssertEqual(try h.ok(["put", "still", "serving"]), "OK\n")
    }

    /// `--wal-dir` puts the WAL segments there, as etcd does; a restart finds them.
    func testSeparateWALDirectory() async throws {
        let sep = ServerHarness(dataDir: try temporaryDirectory(self) + "/sep.etcd")
        let walDir = sep.dataDir + "-wal"
        try await sep.start { $0.walDir = walDir }
        _ = try sep.ok(["put", "w", "1"])
        let segments = try FileManager.default.contentsOfDirectory(atPath: walDir).filter { $0.hasSuffix(".wal") }
        XCTAssertEqual(segments.count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sep.dataDir + "/member/wal"))
        await sep.stop()
        try await sep.start { $0.walDir = walDir }
        XCTAssertEqual(try sep.ok(["get", "w", "--print-value-only"]), "1\n")
        await sep.stop()
    }

    func testRestartKeepsEverything() async throws {
        _ = try h.ok(["put", "k1", "v1"])
        _ = try h.ok(["put", "k1", "v2"])
        let lease = String(try h.ok(["lease", "grant", "300"]).split(separator: " ")[1])
        _ = try h.ok(["put", "lk", "lv", "--lease", lease])
        _ = try h.ok(["user", "add", "bob:pw"])
        let before = try h.ok(["get", "", "--from-key", "-w", "json"])
        await h.stop()
        try await h.start()
        XCTAssertEqual(try h.ok(["get", "k1", "--print-value-only"]), "v2\n")
        XCTAssertEqual(try h.ok(["get", "k1", "--rev", "2", "--print-value-only"]), "v1\n")
        XCTAssertEqual(try h.ok(["user", "list"]), "bob\n")
        let ttl = try h.ok(["lease", "timetolive", lease, "--keys"])
        XCTAssertTrue(ttl.contains("granted with TTL(300s)") && ttl.contains("attached keys([lk])"), ttl)
        let after = try h.ok(["get", "", "--from-key", "-w", "json"])
        XCTAssertEqual(Self.withoutTerm(after), Self.withoutTerm(before))
    }

    /// A header minus the raft term (a restart elects again in a higher term).
    static func withoutTerm(_ json: String) -> String {
        json.replacingOccurrences(of: #""raft_term":\d+"#, with: "", options: .regularExpression)
    }
}
