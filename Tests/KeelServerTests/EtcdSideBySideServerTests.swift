import Foundation
import KeelServer
import KeelTestSupport
import XCTest

/// The same etcdctl session against Debian's etcd 3.4 and against keel, both fresh: every
/// command's output and error must be the same once the values that legitimately differ
/// (member and cluster IDs, raft terms, timings) are masked. Revisions, values, counts, error
/// texts and the key-value hash must agree exactly.
final class EtcdSideBySideServerTests: XCTestCase {
    /// A command: etcdctl arguments and what goes to its stdin.
    typealias Step = (args: [String], input: String?)

    static let session: [Step] = [
        (["put", "foo", "bar"], nil),
        (["get", "foo", "-w", "json"], nil),
        (["put", "foo", "baz", "--prev-kv", "-w", "json"], nil),
        (["get", "foo", "--rev", "2"], nil),
        (["put", "a/1", "x"], nil), (["put", "a/2", "y"], nil), (["put", "a/3", "z"], nil), (["put", "b", "q"], nil),
        (["get", "a/", "--prefix", "-w", "json"], nil),
        (["get", "a/", "--prefix", "--limit", "2", "--sort-by", "VALUE", "--order", "DESCEND"], nil),
        (["get", "a/2", "--from-key", "--keys-only"], nil),
        (["get", "", "--from-key", "--keys-only", "--sort-by", "MODIFY", "--order", "ASCEND"], nil),
        (["del", "a/", "--prefix", "--prev-kv", "-w", "json"], nil),
        (["txn", "-w", "json"], "mod(\"foo\") > \"0\"\n\nput t1 v1\nget foo\n\nput t2 v2\n\n"),
        (["txn"], "create(\"nope\") = \"0\"\nvalue(\"foo\") = \"baz\"\n\ndel b\n\nput never x\n\n"),
        (["txn"], "\nput dup 1\nput dup 2\n\n\n"),
        (["put", "", "v"], nil),
        (["get", "foo", "--rev", "1000"], nil),
        (["watch", "foo", "--rev", "1", "--prev-kv"], nil),
        (["compaction", "5"], nil),
        (["get", "foo", "--rev", "3"], nil),
        (["compaction", "4"], nil),
        (["endpoint", "hashkv", "-w", "json"], nil),
        (["alarm", "list"], nil),
        (["lease", "timetolive", "1234"], nil),
        (["lease", "revoke", "1234"], nil),
        (["put", "k", "v", "--lease", "1234"], nil),
        (["user", "add", "root:pw"], nil), (["role", "add", "r1"], nil),
        (["role", "grant-permission", "r1", "read", "a", "c"], nil),
        (["role", "get", "r1"], nil),
        (["user", "add", "u1:pw1"], nil), (["user", "grant-role", "u1", "r1"], nil),
        (["user", "get", "u1"], nil), (["user", "list"], nil), (["role", "list"], nil),
        (["user", "grant-role", "u1", "nosuchrole"], nil),
        (["user", "add", "u1:again"], nil),
        (["auth", "enable"], nil),
        (["get", "b", "--user", "u1:pw1"], nil),
        (["put", "b", "x", "--user", "u1:pw1"], nil),
        (["get", "zzz", "--user", "u1:pw1"], nil),
        (["get", "b", "--user", "u1:wrong"], nil),
        (["user", "list", "--user", "u1:pw1"], nil),
        (["auth", "disable", "--user", "root:pw"], nil),
        (["role", "revoke-permission", "r1", "a", "c"], nil),
        (["role", "revoke-permission", "r1", "a", "c"], nil),
        (["user", "delete", "u1"], nil), (["role", "delete", "r1"], nil),
        (["get", "", "--from-key", "-w", "json"], nil),
    ]

    /// Masks what differs between two fresh members: IDs, terms, timings.
    static func mask(_ s: String) -> String {
        var out = s
        for (pattern, replacement) in [
            (#""(cluster_id|member_id)":\d+"#, "\"$1\":ID"), (#""ts":"[^"]*""#, "\"ts\":TS"),
            (#""target":"[^"]*""#, "\"target\":TARGET"), (#"127\.0\.0\.1:\d+"#, "ENDPOINT"), (#""raft_term":\d+"#, "\"raft_term\":T"),
            (#"\b[0-9a-f]{16}\b"#, "HEXID"), (#"took = [^\n]+"#, "took = …"),
        ] {
            out = out.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression)
        }
        return out
    }

    func run(_ endpoint: String) throws -> [String] {
        var outputs: [String] = []
        for step in Self.session {
            let args = step.args.first == "watch"
                ? ["timeout", "2", "etcdctl", "--endpoints", endpoint] + step.args
                : ["etcdctl", "--endpoints", endpoint, "--command-timeout=10s"] + step.args
            let out = try ServerHarness.run(args, input: step.input, timeout: 15)
            let status = step.args.first == "watch" ? "" : " exit \(out.status)"
            outputs.append("$ etcdctl \(step.args.joined(separator: " "))\(status)\n\(Self.mask(out.stdout))\(Self.mask(out.stderr))")
        }
        return outputs
    }

    func testSessionMatchesEtcd() async throws {
        try ServerHarness.etcdctlAvailable()
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdServer(dataDir: dir + "/etcd")
        let theirs = try run(etcd.clientURL.replacingOccurrences(of: "http://", with: ""))
        etcd.stop()
        let h = ServerHarness(dataDir: dir + "/keel")
        try await h.start()
        let ours = try run(h.endpoint)
        await h.stop()
        XCTAssertEqual(ours.count, theirs.count)
        var differing = 0
        for (o, t) in zip(ours, theirs) where o != t {
            differing += 1
            XCTFail("differs from etcd 3.4:\n--- etcd\n\(t)\n--- keel\n\(o)")
        }
        print("etcdctl session side by side with etcd 3.4: \(ours.count - differing) of \(ours.count) commands identical")
    }

    /// The same `--name`, `--initial-advertise-peer-urls`, `--initial-cluster` and
    /// `--initial-cluster-token` give keel the member and cluster IDs etcd 3.4 derives; a restart
    /// with other flags keeps the IDs in the WAL, as etcd does.
    func testMemberAndClusterIDsMatchEtcd() async throws {
        try ServerHarness.etcdctlAvailable()
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdServer(dataDir: dir + "/etcd", extraArguments: ["--initial-cluster-token", "keel-id-test"])
        let theirs = try etcd.ctl(["member", "list", "-w", "json"]).stdout
        etcd.stop()
        func ids(_ json: String) -> [String] {
            ["cluster_id", "member_id", "ID"].map { field in
                guard let r = json.range(of: "\"\(field)\":[0-9]+", options: .regularExpression) else { return "missing \(field)" }
                return String(json[r])
            }
        }
        let h = ServerHarness(dataDir: dir + "/keel")
        try await h.start { c in
            c.name = "keeltest"
            c.initialAdvertisePeerURLs = [etcd.peerURL]
            c.initialCluster = "keeltest=\(etcd.peerURL)"
            c.initialClusterToken = "keel-id-test"
        }
        let ours = try h.ok(["member", "list", "-w", "json"])
        XCTAssertEqual(ids(ours), ids(theirs), "etcd: \(theirs)\nkeel: \(ours)")
        XCTAssertFalse(ids(theirs).contains { $0.hasPrefix("missing") }, theirs)
        await h.stop()
        try await h.start { c in c.name = "renamed" }
        XCTAssertEqual(ids(try h.ok(["member", "list", "-w", "json"])), ids(theirs))
        await h.stop()
    }
}
