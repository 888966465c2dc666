import Foundation
import KeelServer
import KeelTestSupport
import XCTest

/// One data directory, etcd 3.4 and keel taking turns on it (issue 12's promise, as far as it
/// goes so far): etcd writes, keel starts on its directory and serves the same data, keel
/// writes past its own snapshots, etcd starts again (from keel's .snap) and serves keel's writes.
final class DataDirectoryInteropTests: XCTestCase {
    static func normalized(_ json: String) -> String {
        json.replacingOccurrences(of: #""raft_term":\d+"#, with: "", options: .regularExpression)
    }

    static func hash(_ json: String) -> String? {
        json.range(of: #""hash":\d+"#, options: .regularExpression).map { String(json[$0]) }
    }

    func testEtcdThenKeelThenEtcdOnOneDataDirectory() async throws {
        try ServerHarness.etcdctlAvailable()
        let dir = try temporaryDirectory(self) + "/shared.etcd"
        // etcd 3.4: writes, a delete, a lease with a key, a user, a compaction; a .snap exists
        // (snapshot count 20) and its WAL holds etcd's v2 publish entries.
        var etcd = try EtcdServer(dataDir: dir, extraArguments: ["--snapshot-count", "20"])
        let peerURL = etcd.peerURL
        for i in 1...30 { XCTAssertEqual(try etcd.ctl(["put", "k\(i)", "v\(i)"]).status, 0) }
        _ = try etcd.ctl(["del", "k3"])
        let lease = String(try etcd.ctl(["lease", "grant", "600"]).stdout.split(separator: " ")[1])
        _ = try etcd.ctl(["put", "lk", "lv", "--lease", lease])
        _ = try etcd.ctl(["user", "add", "bob:pw"])
        _ = try etcd.ctl(["compaction", "10"])
        let etcdData = try etcd.ctl(["get", "", "--from-key", "-w", "json"]).stdout
        let etcdOld = try etcd.ctl(["get", "k1", "--rev", "12", "-w", "json"]).stdout
        let etcdHash = Self.hash(try etcd.ctl(["endpoint", "hashkv", "-w", "json"]).stdout)
        let etcdMembers = try etcd.ctl(["member", "list"]).stdout
        etcd.stop()
        let snaps = try FileManager.default.contentsOfDirectory(atPath: dir + "/member/snap").filter { $0.hasSuffix(".snap") }
        XCTAssertFalse(snaps.isEmpty, "etcd wrote no .snap")

        // keel on etcd's directory, with etcd's flags.
        let h = ServerHarness(dataDir: dir)
        try await h.start { c in
            c.name = "keeltest"
            c.initialAdvertisePeerURLs = [peerURL]
            c.initialCluster = "keeltest=\(peerURL)"
            c.snapshotCount = 10
        }
        XCTAssertEqual(Self.normalized(try h.ok(["get", "", "--from-key", "-w", "json"])), Self.normalized(etcdData))
        XCTAssertEqual(Self.normalized(try h.ok(["get", "k1", "--rev", "12", "-w", "json"])), Self.normalized(etcdOld))
        XCTAssertNotNil(etcdHash)
        XCTAssertEqual(Self.hash(try h.ok(["endpoint", "hashkv", "-w", "json"])), etcdHash)
        XCTAssertEqual(try h.ok(["member", "list"]).split(separator: ",").first, etcdMembers.split(separator: ",").first, "the member ID")
        XCTAssertTrue(try h.ok(["lease", "timetolive", lease, "--keys"]).contains("attached keys([lk])"))
        XCTAssertEqual(try h.ok(["user", "list"]), "bob\n")
        // etcd's v2 publish entries in its WAL: this member's attributes and the cluster version.
        let published = h.server!.node.published
        XCTAssertEqual(published.clusterVersion, "3.4.0")
        XCTAssertEqual(published.attributes[h.server!.node.config.memberID]?.name, "keeltest")
        XCTAssertEqual(published.attributes[h.server!.node.config.memberID]?.clientURLs, [etcd.clientURL])
        XCTAssertEqual(try h.ok(["put", "from-keel", "yes"]), "OK\n")
        // Past a few of keel's own snapshots, so etcd must start from a keel .snap.
        for i in 1...25 { _ = try h.ok(["put", "keel\(i)", "\(i)"]) }
        let after = try FileManager.default.contentsOfDirectory(atPath: dir + "/member/snap").filter { $0.hasSuffix(".snap") }.sorted()
        XCTAssertNotEqual(after.last, snaps.sorted().last, "keel took no snapshot")
        let keelData = try h.ok(["get", "", "--from-key", "-w", "json"])
        let keelHash = Self.hash(try h.ok(["endpoint", "hashkv", "-w", "json"]))
        await h.stop()

        // etcd again, on what keel wrote.
        etcd = try EtcdServer(dataDir: dir, extraArguments: ["--snapshot-count", "20"])
        defer { etcd.stop() }
        XCTAssertEqual(Self.normalized(try etcd.ctl(["get", "", "--from-key", "-w", "json"]).stdout), Self.normalized(keelData))
        XCTAssertEqual(Self.hash(try etcd.ctl(["endpoint", "hashkv", "-w", "json"]).stdout), keelHash)
        XCTAssertEqual(try etcd.ctl(["put", "from-etcd", "again"]).status, 0)
    }

    /// A young keel directory (no .snap yet): etcd replays keel's whole WAL from the bootstrap
    /// conf change, whose context must be the member as etcd writes it (etcd panics without).
    func testEtcdReplaysAYoungKeelWAL() async throws {
        try ServerHarness.etcdctlAvailable()
        let dir = try temporaryDirectory(self) + "/young.etcd"
        let h = ServerHarness(dataDir: dir)
        try await h.start { c in c.name = "keeltest" }
        for i in 1...5 { _ = try h.ok(["put", "y\(i)", "\(i)"]) }
        let keelData = try h.ok(["get", "y", "--prefix", "-w", "json"])
        let keelHash = DataDirectoryInteropTests.hash(try h.ok(["endpoint", "hashkv", "-w", "json"]))
        await h.stop()
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: dir + "/member/snap").filter { $0.hasSuffix(".snap") }.isEmpty)
        let etcd = try EtcdServer(dataDir: dir)
        defer { etcd.stop() }
        XCTAssertEqual(Self.normalized(try etcd.ctl(["get", "y", "--prefix", "-w", "json"]).stdout), Self.normalized(keelData))
        XCTAssertEqual(Self.hash(try etcd.ctl(["endpoint", "hashkv", "-w", "json"]).stdout), keelHash)
        XCTAssertTrue(try etcd.ctl(["member", "list"]).stdout.contains(", started, keeltest, http://localhost:2380,"))
    }
}
