import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import KeelGRPC
import KeelProto
import KeelServer
import KeelTestSupport
import XCTest

/// Operator workflows through Debian's etcdctl 3.4: a real NOSPACE and its recovery,
/// mirroring into a second keel, `check perf`, leader moves and membership answers.
final class EtcdctlOperationsTests: XCTestCase {
    func testNoSpaceAlarmAndRecovery() async throws {
        try ServerHarness.etcdctlAvailable()
        let h = ServerHarness(dataDir: try temporaryDirectory(self) + "/q.etcd")
        try await h.start { $0.quotaBackendBytes = 400_000 }
        defer { Task { await h.stop() } }
        let value = String(repeating: "v", count: 20_000)
        var refused: Shell.Output?
        for i in 0..<60 {
            let out = try h.ctl(["put", "big\(i % 5)"], input: value)
            if out.status != 0 { refused = out; break }
        }
        guard let refused else { return XCTFail("the quota was never reached") }
        XCTAssertTrue(refused.stderr.contains("etcdserver: mvcc: database space exceeded"), refused.stderr)
        XCTAssertEqual(try h.ok(["alarm", "list"]), "memberID:10276657743932975437 alarm:NOSPACE \n")
        let (healthStatus, healthBody) = try h.http("/health")
        XCTAssertEqual(healthStatus, 503)
        XCTAssertTrue(healthBody.contains("\"health\":\"false\""), healthBody)
        // Reads and deletes still work; puts do not until the space is recovered.
        XCTAssertTrue(try h.ok(["get", "big0", "--keys-only"]).hasPrefix("big0\n"))
        let status = try h.ok(["endpoint", "status", "-w", "json"])
        guard let r = status.range(of: "\"revision\":") else { return XCTFail(status) }
        let revision = String(status[r.upperBound...].prefix { $0.isNumber })
        _ = try h.ok(["compaction", revision])
        _ = try h.ok(["defrag"])
        XCTAssertEqual(try h.ok(["alarm", "disarm"]), "memberID:10276657743932975437 alarm:NOSPACE \n")
        XCTAssertEqual(try h.ok(["alarm", "list"]), "")
        XCTAssertEqual(try h.ok(["put", "after", "recovery"]), "OK\n")
    }

    func testMakeMirrorIntoASecondKeel() async throws {
        try ServerHarness.etcdctlAvailable()
        let dir = try temporaryDirectory(self)
        let source = ServerHarness(dataDir: dir + "/src.etcd"), destination = ServerHarness(dataDir: dir + "/dst.etcd")
        try await source.start()
        try await destination.start()
        defer { Task { await source.stop(); await destination.stop() } }
        for i in 0..<20 { _ = try source.ok(["put", "m/\(i)", "v\(i)"]) }
        let mirror = try ServerHarness.Background(["etcdctl", "--endpoints", source.endpoint, "make-mirror", "--prefix", "m/",
                                                   destination.endpoint])
        // Keys written after the mirror started arrive through its watch.
        try await Task.sleep(nanoseconds: 500_000_000)
        for i in 20..<30 { _ = try source.ok(["put", "m/\(i)", "v\(i)"]) }
        _ = try source.ok(["del", "m/0"])
        let mirrored = try eventually(10) { try destination.ok(["get", "m/", "--prefix", "--keys-only"]).split(separator: "\n").count == 29 }
        _ = mirror.stop()
        let has = try destination.ok(["get", "m/", "--prefix", "--keys-only"])
        XCTAssertTrue(mirrored, "destination has: \(has)")
        XCTAssertEqual(try destination.ok(["get", "m/25", "--print-value-only"]), "v25\n")
        XCTAssertEqual(try destination.ok(["get", "m/0"]), "")
    }

    func testMoveLeaderAndMembershipAnswers() async throws {
        try ServerHarness.etcdctlAvailable()
        let h = ServerHarness(dataDir: try temporaryDirectory(self) + "/m.etcd")
        try await h.start()
        defer { Task { await h.stop() } }
        let move = try h.ctl(["move-leader", "8e9e05c52164694d"])
        XCTAssertEqual(move.status, 0, move.stderr)
        let bad = try h.ctl(["move-leader", "1234"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("1234 is not in the cluster") || bad.stderr.contains("bad leader transferee"), bad.stderr)
        let remove = try h.ctl(["member", "remove", "1234"])
        XCTAssertTrue(remove.stderr.contains("etcdserver: member not found"), remove.stderr)
        let removeSelf = try h.ctl(["member", "remove", "8e9e05c52164694d"])
        XCTAssertTrue(removeSelf.stderr.contains("etcdserver: re-configuration failed due to not enough started members"), removeSelf.stderr)
        let promote = try h.ctl(["member", "promote", "8e9e05c52164694d"])
        XCTAssertTrue(promote.stderr.contains("etcdserver: can only promote a learner member"), promote.stderr)
        let add = try h.ctl(["member", "add", "second", "--peer-urls", "http://127.0.0.1:2390"])
        XCTAssertTrue(add.stderr.contains("peer transport"), add.stderr)
        let addExisting = try h.ctl(["member", "add", "again", "--peer-urls", "http://localhost:2380"])
        XCTAssertTrue(addExisting.stderr.contains("etcdserver: Peer URLs already exists"), addExisting.stderr)
    }

    /// `etcdctl check perf` (60 s of load): its verdict is printed for the notes; the test
    /// requires it to finish without request errors.
    func testCheckPerf() async throws {
        try ServerHarness.etcdctlAvailable()
        let h = ServerHarness(dataDir: try temporaryDirectory(self) + "/p.etcd")
        try await h.start { $0.heartbeatMilliseconds = 100; $0.electionMilliseconds = 1000 }
        defer { Task { await h.stop() } }
        let out = try h.ctl(["check", "perf", "--load", "s"], timeout: 150)
        print("etcdctl check perf --load s against keel (debug build):\n\(out.stdout)\(out.stderr)")
        XCTAssertTrue(out.stdout.contains("Throughput is"), out.stdout + out.stderr)
        XCTAssertFalse(out.stdout.contains("FAIL: ERROR") || out.stderr.contains("Error:"), out.stdout + out.stderr)
    }

    /// A second server on a data directory in use refuses with a clear error; a port in use
    /// too; the first keeps serving.
    func testDataDirectoryAndPortInUse() async throws {
        try ServerHarness.etcdctlAvailable()
        let h = ServerHarness(dataDir: try temporaryDirectory(self) + "/l.etcd")
        try await h.start()
        defer { Task { await h.stop() } }
        do {
            _ = try await KeelServer.start(ServerHarness.testConfig(dataDir: h.dataDir), log: ServerLog(level: "error"))
            XCTFail("a second server started on the same data directory")
        } catch {
            XCTAssertTrue("\(error)".contains("is another keel or etcd using this data directory?"), "\(error)")
        }
        var busy = ServerHarness.testConfig(dataDir: try temporaryDirectory(self) + "/other.etcd")
        busy.listenClientURLs = ["http://" + h.endpoint]
        do {
            _ = try await KeelServer.start(busy, log: ServerLog(level: "error"))
            XCTFail("a second server bound a port in use")
        } catch {
            XCTAssertTrue("\(error)".contains("cannot listen on") || "\(error)".contains("in use"), "\(error)")
        }
        XCTAssertEqual(try h.ok(["put", "still", "here"]), "OK\n")
    }

    /// The server on each of Keel's engines (`--backend lmdb`, and `crosscheck`, which runs
    /// bolt and LMDB side by side and compares every answer): an operator's tour through
    /// etcdctl, then a restart. Debug builds stop at once if an LMDB write transaction ends on
    /// a thread other than the one that began it (the driver thread owns the batch).
    func testEveryEngineServesEtcdctl() async throws {
        for engine in ["lmdb", "crosscheck"] {
            let h = ServerHarness(dataDir: try temporaryDirectory(self) + "/\(engine).etcd")
            try await h.start { $0.backend = engine }
            for i in 1...20 { _ = try h.ok(["put", "k\(i)", "v\(i)"]) }
            XCTAssertTrue(try h.ok(["txn", "-i"], input: "value(\"k1\") = \"v1\"\n\nput k1 x\n\nput k2 y\n\n").hasSuffix("SUCCESS\n\nOK\n"), engine)
            XCTAssertEqual(try h.ok(["get", "k1", "--print-value-only"]), "x\n", engine)
            XCTAssertEqual(try h.ok(["get", "k", "--prefix", "--keys-only"]).split(separator: "\n").count, 20, engine)
            let lease = String(try h.ok(["lease", "grant", "300"]).split(separator: " ")[1])
            _ = try h.ok(["put", "leased", "v", "--lease", lease])
            XCTAssertTrue(try h.ok(["lease", "timetolive", lease, "--keys"]).contains("attached keys([leased])"), engine)
            _ = try h.ok(["user", "add", "root:rootpw"])
            _ = try h.ok(["role", "add", "reader"])
            _ = try h.ok(["role", "add", "root"])
            _ = try h.ok(["user", "grant-role", "root", "root"])
            XCTAssertEqual(try h.ok(["user", "list"]), "root\n", engine)
            XCTAssertEqual(try h.ok(["role", "list"]), "reader\nroot\n", engine)
            _ = try h.ok(["compaction", "10"])
            _ = try h.ok(["defrag"])
            _ = try h.ok(["endpoint", "hashkv"])
            _ = try h.ok(["endpoint", "status"])
            let snap = h.dataDir + ".snapshot.db"
            _ = try h.ok(["snapshot", "save", snap])
            XCTAssertTrue(try h.ok(["snapshot", "status", snap, "-w", "json"]).contains("\"revision\":23"), engine)
            XCTAssertEqual(try h.ok(["lock", "l1", "echo", "locked"]), "locked\n", engine)
            _ = try h.ok(["auth", "enable"])
            _ = try h.ok(["--user", "root:rootpw", "put", "a", "b"])
            _ = try h.ok(["--user", "root:rootpw", "auth", "disable"])
            let before = try h.ok(["get", "", "--from-key", "-w", "json"])
            await h.stop()
            try await h.start { $0.backend = engine }
            XCTAssertEqual(EtcdctlTests.withoutTerm(try h.ok(["get", "", "--from-key", "-w", "json"])), EtcdctlTests.withoutTerm(before), engine)
            XCTAssertEqual(try h.ok(["role", "list"]), "reader\nroot\n", engine)
            await h.stop()
        }
    }

    /// A watch created with `progress_notify` gets etcd's periodic progress notifications (an
    /// empty response with the watch's ID and the current revision). etcdctl 3.4 has no flag
    /// for it, so a gRPC client of the test asks.
    func testWatchProgressNotify() async throws {
        let h = ServerHarness(dataDir: try temporaryDirectory(self) + "/pn.etcd")
        try await h.start { $0.watchProgressNotifyInterval = 0.2 }
        let port = h.server!.clientPorts[0]
        let client = GRPCClient(transport: try .http2NIOPosix(target: .ipv4(host: "127.0.0.1", port: port), transportSecurity: .plaintext))
        let runner = Task { try await client.runConnections() }
        var p = Etcdserverpb_PutRequest()
        p.key = Data("p".utf8)
        p.value = Data("1".utf8)
        _ = try await Etcdserverpb_KV.Client(wrapping: client).put(p)
        let responses = try await Etcdserverpb_Watch.Client(wrapping: client).watch(requestProducer: { writer in
            var c = Etcdserverpb_WatchCreateRequest()
            c.key = Data("p".utf8)
            c.progressNotify = true
            var r = Etcdserverpb_WatchRequest()
            r.createRequest = c
            try await writer.write(r)
            try await Task.sleep(nanoseconds: 1_000_000_000)
        }, onResponse: { response in
            var got: [Etcdserverpb_WatchResponse] = []
            for try await m in response.messages {
                got.append(m)
                if got.count == 3 { break }
            }
            return got
        })
        client.beginGracefulShutdown()
        runner.cancel()
        await h.stop()
        XCTAssertEqual(responses.count, 3)
        XCTAssertTrue(responses[0].created)
        for r in responses.dropFirst() {
            XCTAssertEqual(r.watchID, responses[0].watchID)
            XCTAssertTrue(r.events.isEmpty)
            XCTAssertEqual(r.header.revision, 2)
        }
    }
}
