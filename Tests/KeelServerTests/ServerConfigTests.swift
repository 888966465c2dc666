import Foundation
import KeelNode
@testable import KeelServer
import KeelTestSupport
import Logging
import XCTest

/// etcd's configuration surface: flags in both forms, `ETCD_*` variables, the YAML file, and
/// clear refusals of what is wrong.
final class ServerConfigTests: XCTestCase {
    func testFlagsEnvironmentAndDefaults() throws {
        let d = try ServerConfig.parse(arguments: [], environment: [:])
        XCTAssertEqual(d.effectiveDataDir, "default.etcd")
        XCTAssertEqual(d.listenClientURLs, ["http://localhost:2379"])
        XCTAssertEqual(d.maxRequestBytes, 1_572_864)
        XCTAssertEqual(d.maxTxnOps, 128)
        XCTAssertEqual(d.snapshotCount, 100_000)
        XCTAssertEqual(try ServerConfig.hostAndPort(d.listenClientURLs[0]).host, "127.0.0.1")

        let c = try ServerConfig.parse(arguments: ["--name", "n1", "--data-dir=/tmp/x", "--snapshot-count", "10", "--pre-vote",
                                                   "--listen-client-urls", "http://127.0.0.1:1,http://127.0.0.1:2"],
                                       environment: ["ETCD_NAME": "ignored", "ETCD_MAX_TXN_OPS": "7", "PATH": "/bin"])
        XCTAssertEqual(c.name, "n1", "a flag beats its variable")
        XCTAssertEqual(c.dataDir, "/tmp/x")
        XCTAssertEqual(c.snapshotCount, 10)
        XCTAssertTrue(c.preVote)
        XCTAssertEqual(c.maxTxnOps, 7, "ETCD_MAX_TXN_OPS applies when the flag is absent")
        XCTAssertEqual(c.listenClientURLs.count, 2)
        XCTAssertEqual(try ServerConfig.parse(arguments: ["--strict-reconfig-check", "false"], environment: [:]).strictReconfigCheck, false)
        XCTAssertEqual(try ServerConfig.parse(arguments: ["--experimental-watch-progress-notify-interval", "1m30s"], environment: [:]).watchProgressNotifyInterval, 90)
        XCTAssertEqual(ServerConfig.duration("500ms"), 0.5)
        XCTAssertNil(ServerConfig.duration("5 minutes"))
    }

    /// IDs as etcd derives them: its defaults give etcd's well-known 8e9e05c52164694d in cluster
    /// cdf818194e3a8c32; a three-member `--initial-cluster` gives the cluster ID over all three;
    /// a configuration etcd refuses is refused with etcd's words.
    func testMemberAndClusterIDs() throws {
        let d = try ServerConfig.parse(arguments: [], environment: [:]).identity()
        XCTAssertEqual(String(d.memberID, radix: 16), "8e9e05c52164694d")
        XCTAssertEqual(String(d.clusterID, radix: 16), "cdf818194e3a8c32")
        XCTAssertEqual(d.members, 1)
        let three = try ServerConfig.parse(arguments: [
            "--name", "b", "--initial-advertise-peer-urls", "http://10.0.0.2:2380",
            "--initial-cluster", "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380",
            "--initial-cluster-token", "t"], environment: [:]).identity()
        XCTAssertEqual(three.members, 3)
        XCTAssertEqual(three.memberID, EtcdIdentity.memberID(peerURLs: ["http://10.0.0.2:2380"], clusterToken: "t"))
        let all = ["http://10.0.0.1:2380", "http://10.0.0.2:2380", "http://10.0.0.3:2380"].map { EtcdIdentity.memberID(peerURLs: [$0], clusterToken: "t") }
        XCTAssertEqual(three.clusterID, EtcdIdentity.clusterID(memberIDs: all.reversed()))
        XCTAssertThrowsError(try ServerConfig.parse(arguments: ["--name", "x", "--initial-cluster", "y=http://127.0.0.1:2380"], environment: [:]).identity()) {
            XCTAssertEqual("\($0)", "couldn't find local name \"x\" in the initial cluster configuration")
        }
        XCTAssertThrowsError(try ServerConfig.parse(arguments: ["--initial-cluster", "default=http://127.0.0.1:9"], environment: [:]).identity()) {
            XCTAssertTrue("\($0)".hasPrefix("--initial-cluster has default=http://127.0.0.1:9 but missing from --initial-advertise-peer-urls="), "\($0)")
        }
    }

    func testRefusals() {
        func refused(_ args: [String], env: [String: String] = [:], _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try ServerConfig.parse(arguments: args, environment: env), line: line) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(e)", line: line)
            }
        }
        refused(["--no-such-flag", "1"], "unknown flag --no-such-flag")
        refused(["--data-dir", "x", "--bogus"], "unknown flag --bogus")
        refused(["--snapshot-count", "lots"], "is not a non-negative integer")
        refused(["--listen-client-urls", "127.0.0.1:2379"], "must start with http://")
        refused(["--initial-cluster-state", "old"], "is not new or existing")
        refused(["--backend", "rocks"], "is not bolt, lmdb or crosscheck")
        refused(["--name"], "needs a value")
        refused([], env: ["ETCD_NO_SUCH": "1"], "names no flag")
        // etcd flags Keel does not honour yet are accepted (and listed by --help).
        XCTAssertNoThrow(try ServerConfig.parse(arguments: ["--enable-v2", "--cors", "*"], environment: [:]))
        XCTAssertTrue(ServerConfig.help.contains("--cert-file"))
    }

    func testYAMLConfigFile() throws {
        let path = try temporaryDirectory(self) + "/etcd.yaml"
        try """
        # etcd's sample file, the keys Keel knows
        name: 'yaml-member'
        data-dir: /var/lib/etcd
        snapshot-count: 5000
        heartbeat-interval: 50
        election-timeout: 500
        listen-client-urls: http://127.0.0.1:3379
        auto-compaction-mode: revision
        auto-compaction-retention: "1000"
        client-transport-security:
          cert-file:
          client-cert-auth: false
        initial-cluster-state: 'new'
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let c = try ServerConfig.parse(arguments: ["--config-file", path, "--name", "flag-ignored"], environment: [:])
        XCTAssertEqual(c.name, "yaml-member", "a config file replaces the flags, as in etcd")
        XCTAssertEqual(c.dataDir, "/var/lib/etcd")
        XCTAssertEqual(c.snapshotCount, 5000)
        XCTAssertEqual(c.heartbeatMilliseconds, 50)
        XCTAssertEqual(c.listenClientURLs, ["http://127.0.0.1:3379"])
        XCTAssertEqual(try c.compactionRetention(), 1000)
        try "name: x\nbogus-key: 1\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ServerConfig.parse(arguments: ["--config-file", path], environment: [:])) { e in
            XCTAssertTrue("\(e)".contains(":2: unknown key \"bogus-key\""), "\(e)")
        }
    }

    func testAutoCompaction() throws {
        var c = ServerConfig()
        c.autoCompactionRetention = "1h30m"
        XCTAssertEqual(try c.compactionRetention(), 5400)
        c.autoCompactionRetention = "2"
        XCTAssertEqual(try c.compactionRetention(), 7200, "a bare number is hours, as etcd")
        c.autoCompactionRetention = "5x"
        XCTAssertThrowsError(try c.compactionRetention())

        // Periodic, 100 s: samples every 10 s; compacts to the revision seen 100 s before.
        var p = AutoCompactor(mode: "periodic", retention: 100)
        var compactions: [Int64] = []
        for t in stride(from: 0.0, through: 300, by: 1) {
            if let r = p.due(now: t, currentRevision: Int64(t) * 10 + 1, compacted: compactions.last ?? 0) { compactions.append(r) }
        }
        XCTAssertEqual(compactions.first, 1, "at t=100 the revision from t=0")
        XCTAssertEqual(compactions.last, 2001, "at t=300 the revision from t=200")
        // Revision mode: keep the last 1000 revisions, checked every 300 s.
        var r = AutoCompactor(mode: "revision", retention: 1000)
        XCTAssertEqual(r.due(now: 1000, currentRevision: 5000, compacted: 0), 4000)
        XCTAssertNil(r.due(now: 1100, currentRevision: 9000, compacted: 4000), "not before 300 s")
        XCTAssertEqual(r.due(now: 1300, currentRevision: 9000, compacted: 4000), 8000)
        // A retention beyond Int64 from the flag keeps everything instead of trapping.
        var huge = AutoCompactor(mode: "revision", retention: Double(Int64.max))
        XCTAssertNil(huge.due(now: 1000, currentRevision: 5000, compacted: 0))
    }
}

/// The server's log on swift-log: etcd's JSON lines by default, any swift-log backend when
/// embedded.
final class ServerLogTests: XCTestCase {
    func testEtcdJSONLinesFilteredByLevel() throws {
        let lines = TestLocked<[String]>([])
        let log = ServerLog(level: "warn", sink: { line in lines.withLock { $0.append(line) } })
        log.info("hidden", ["a": "1"])
        log.warn("slow \"fsync\"", ["took": "1.2s", "path": "/x"])
        log.error("stopped", [:])
        let got = lines.withLock { $0 }
        XCTAssertEqual(got.count, 2)
        let first = try JSONSerialization.jsonObject(with: Data(got[0].utf8)) as? [String: String]
        XCTAssertEqual(first?["level"], "warn")
        XCTAssertEqual(first?["msg"], "slow \"fsync\"")
        XCTAssertEqual(first?["took"], "1.2s")
        XCTAssertEqual(first?["path"], "/x")
        XCTAssertNotNil(first?["ts"])
        XCTAssertTrue(got[0].hasPrefix("{\"level\":\"warn\",\"ts\":\""), got[0])
        XCTAssertTrue(got[1].hasPrefix("{\"level\":\"error\""), got[1])
    }

    /// An embedding program's own handler receives the messages with their fields as metadata.
    func testEmbeddersLoggerGetsMessagesAndFields() {
        struct Capture: LogHandler {
            let events: TestLocked<[(Logger.Level, String, Logger.Metadata)]>
            var metadata: Logger.Metadata = [:]
            var metadataProvider: Logger.MetadataProvider?
            var logLevel: Logger.Level = .debug
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) { events.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) } }
        }
        let events = TestLocked<[(Logger.Level, String, Logger.Metadata)]>([])
        let log = ServerLog(logger: Logger(label: "embedded") { _ in Capture(events: events) })
        log.info("serving client requests", ["address": "127.0.0.1:2379"])
        let got = events.withLock { $0 }
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.0, .info)
        XCTAssertEqual(got.first?.1, "serving client requests")
        XCTAssertEqual(got.first?.2["address"], .string("127.0.0.1:2379"))
    }
}
