import Foundation
import KeelNode
import KeelServer
import KeelTestSupport
import XCTest

/// One data directory, etcd 3.4 and keel taking turns on it (issue 12's promise, as far as it
/// goes so far): etcd writes, keel starts on its directory and serves the same data, keel
/// writes past its own snapshots, etcd starts again (from keel's .snap) and serves keel's
/// writes, and keel once more after etcd wrote.
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
        var etcd = try EtcdServer(dataDir: dir, extraArguments: ["--snapshot-count", "20", "--quota-backend-bytes", "400000"])
        let peerURL = etcd.peerURL
        for i in 1...30 { XCTAssertEqual(try etcd.ctl(["put", "k\(i)", "v\(i)"]).status, 0) }
        _ = try etcd.ctl(["del", "k3"])
        XCTAssertEqual(try Shell.run(["bash", "-c", "printf 'value(\"k1\") = \"v1\"\n\nput t1 yes\ndel k4\n\nput t1 no\n\n' | etcdctl --endpoints \(etcd.clientURL) txn -i"],
                                     environment: ["ETCDCTL_API": "3"]).status, 0)
        let lease = String(try etcd.ctl(["lease", "grant", "600"]).stdout.split(separator: " ")[1])
        _ = try etcd.ctl(["put", "lk", "lv", "--lease", lease])
        // A lease that runs out after the switch: keel must expire it and delete its key.
        let short = String(try etcd.ctl(["lease", "grant", "4"]).stdout.split(separator: " ")[1])
        _ = try etcd.ctl(["put", "short", "lived", "--lease", short])
        _ = try etcd.ctl(["user", "add", "bob:pw"])
        _ = try etcd.ctl(["role", "add", "r1"])
        _ = try etcd.ctl(["role", "grant-permission", "r1", "read", "a", "z"])
        _ = try etcd.ctl(["user", "grant-role", "bob", "r1"])
        _ = try etcd.ctl(["compaction", "10"])
        // A real NOSPACE alarm, then the big keys deleted (the alarm stays until disarmed).
        var filled = 0
        while filled < 100, try etcd.ctl(["put", "big\(filled)", String(repeating: "x", count: 20_000)]).status == 0 { filled += 1 }
        let alarms = try etcd.ctl(["alarm", "list"]).stdout
        XCTAssertTrue(alarms.contains("alarm:NOSPACE"), alarms)
        let etcdData = try etcd.ctl(["get", "", "--from-key", "-w", "json"]).stdout
        let etcdOld = try etcd.ctl(["get", "k1", "--rev", "12", "-w", "json"]).stdout
        // Every readable revision (the compaction kept 10 on).
        let current = Int(etcdData.range(of: #""revision":\d+"#, options: .regularExpression).map { etcdData[$0].split(separator: ":")[1] } ?? "0") ?? 0
        XCTAssertGreaterThan(current, 35)
        let etcdRevisions = try (10...current).map { try etcd.ctl(["get", "", "--from-key", "--rev", "\($0)", "-w", "json"]).stdout }
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
        for (i, rev) in (10...current).enumerated() {
            XCTAssertEqual(Self.normalized(try h.ok(["get", "", "--from-key", "--rev", "\(rev)", "-w", "json"])),
                           Self.normalized(etcdRevisions[i]), "revision \(rev)")
        }
        XCTAssertNotNil(etcdHash)
        XCTAssertEqual(Self.hash(try h.ok(["endpoint", "hashkv", "-w", "json"])), etcdHash)
        XCTAssertEqual(try h.ok(["member", "list"]).split(separator: ",").first, etcdMembers.split(separator: ",").first, "the member ID")
        XCTAssertTrue(try h.ok(["lease", "timetolive", lease, "--keys"]).contains("attached keys([lk])"))
        XCTAssertEqual(try h.ok(["user", "list"]), "bob\n")
        XCTAssertEqual(try h.ok(["user", "get", "bob"]), "User: bob\nRoles: r1\n")
        XCTAssertTrue(try h.ok(["role", "get", "r1"]).contains("[a, z)"))
        XCTAssertEqual(try h.ok(["alarm", "list"]), alarms)
        _ = try h.ok(["alarm", "disarm"])
        let expiry = Date().addingTimeInterval(15)
        while try h.ok(["get", "short", "--print-value-only"]) == "lived\n" && Date() < expiry {
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        XCTAssertEqual(try h.ok(["get", "short"]), "", "the short lease expired on keel and took its key")
        // The v2 state: the cluster version etcd published (its .snap and WAL), and this
        // member's attributes, which keel publishes again with its own client URLs, as etcd
        // does at every start.
        let node = h.server!.node
        XCTAssertEqual(node.published.clusterVersion, "3.4.0")
        XCTAssertEqual(node.published.attributes[node.config.memberID]?.name, "keeltest")
        let until = Date().addingTimeInterval(5)
        while node.published.attributes[node.config.memberID]?.clientURLs != h.server!.config.advertiseClientURLs && Date() < until {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTAssertEqual(node.published.attributes[node.config.memberID]?.clientURLs, h.server!.config.advertiseClientURLs)
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
        XCTAssertEqual(Self.normalized(try etcd.ctl(["get", "", "--from-key", "-w", "json"]).stdout), Self.normalized(keelData))
        XCTAssertEqual(Self.hash(try etcd.ctl(["endpoint", "hashkv", "-w", "json"]).stdout), keelHash)
        XCTAssertEqual(try etcd.ctl(["put", "from-etcd", "again"]).status, 0)
        let etcdData2 = try etcd.ctl(["get", "", "--from-key", "-w", "json"]).stdout
        let etcdHash2 = Self.hash(try etcd.ctl(["endpoint", "hashkv", "-w", "json"]).stdout)
        etcd.stop()

        // And keel once more: the second round trip stays equal.
        try await h.start { c in
            c.name = "keeltest"
            c.initialAdvertisePeerURLs = [peerURL]
            c.initialCluster = "keeltest=\(peerURL)"
        }
        XCTAssertEqual(Self.normalized(try h.ok(["get", "", "--from-key", "-w", "json"])), Self.normalized(etcdData2))
        XCTAssertEqual(Self.hash(try h.ok(["endpoint", "hashkv", "-w", "json"])), etcdHash2)
        XCTAssertEqual(try h.ok(["put", "from-keel-again", "yes"]), "OK\n")
        await h.stop()
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

    /// Snapshot restore both ways: etcd's snapshot → `SnapshotRestore` (keelutl snapshot
    /// restore) → keel and etcd each start on the result; keel's snapshot → `etcdctl snapshot
    /// restore` → etcd serves it. Damaged or unsafe inputs are refused and create nothing.
    func testSnapshotRestoreBothWays() async throws {
        try ServerHarness.etcdctlAvailable()
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdServer(dataDir: dir + "/src")
        for i in 1...10 { _ = try etcd.ctl(["put", "s\(i)", "v\(i)"]) }
        _ = try etcd.ctl(["del", "s2"])
        XCTAssertEqual(try etcd.ctl(["snapshot", "save", dir + "/etcd.db"]).status, 0)
        let etcdData = try etcd.ctl(["get", "s", "--prefix", "-w", "json"]).stdout
        etcd.stop()

        var o = SnapshotRestore.Options(snapshotPath: dir + "/etcd.db", dataDir: dir + "/restored.etcd", name: "keeltest",
                                        initialCluster: "keeltest=http://127.0.0.1:2390", initialAdvertisePeerURLs: ["http://127.0.0.1:2390"])
        o.initialClusterToken = "restore-test"
        let r = try SnapshotRestore.run(o)
        XCTAssertTrue(r.hashChecked)
        XCTAssertEqual(r.memberID, EtcdIdentity.memberID(peerURLs: ["http://127.0.0.1:2390"], clusterToken: "restore-test"))
        // Refusals: the directory now exists; no trailer; a damaged byte.
        XCTAssertThrowsError(try SnapshotRestore.run(o)) { XCTAssertTrue("\($0)".contains("exists"), "\($0)") }
        let raw = try Data(contentsOf: URL(fileURLWithPath: dir + "/etcd.db"))
        try raw.dropLast(32).write(to: URL(fileURLWithPath: dir + "/no-trailer.db"))
        var damaged = raw
        damaged[100] ^= 0xFF
        try damaged.write(to: URL(fileURLWithPath: dir + "/damaged.db"))
        for (file, words) in [("no-trailer.db", "snapshot missing hash but --skip-hash-check=false"), ("damaged.db", "expected sha256")] {
            var bad = o
            bad.snapshotPath = dir + "/" + file
            bad.dataDir = dir + "/" + file + ".etcd"
            XCTAssertThrowsError(try SnapshotRestore.run(bad)) { XCTAssertTrue("\($0)".contains(words), "\($0)") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: bad.dataDir))
        }

        // keel on the restored directory.
        let h = ServerHarness(dataDir: dir + "/restored.etcd")
        try await h.start { c in
            c.name = "keeltest"
            c.initialAdvertisePeerURLs = ["http://127.0.0.1:2390"]
            c.initialCluster = "keeltest=http://127.0.0.1:2390"
            c.initialClusterToken = "restore-test"
        }
        XCTAssertEqual(Self.normalized(try h.ok(["get", "s", "--prefix", "-w", "json"])).replacingOccurrences(of: #""(cluster_id|member_id)":\d+"#, with: "", options: .regularExpression),
                       Self.normalized(etcdData).replacingOccurrences(of: #""(cluster_id|member_id)":\d+"#, with: "", options: .regularExpression))
        XCTAssertTrue(try h.ok(["member", "list"]).hasPrefix(String(r.memberID, radix: 16) + ", started, keeltest, http://127.0.0.1:2390"))
        _ = try h.ok(["put", "from-keel", "1"])
        XCTAssertEqual(try h.ok(["snapshot", "save", dir + "/keel.db"]).isEmpty, false)
        await h.stop()

        // Into keel's other engines: LMDB alone, and both files for the cross-check.
        for engine in [BackendKind.lmdb, .crosscheck] {
            var l = o
            l.dataDir = dir + "/restored-\(engine.rawValue).etcd"
            l.backend = engine
            _ = try SnapshotRestore.run(l)
            XCTAssertEqual(FileManager.default.fileExists(atPath: l.dataDir + "/member/snap/db"), engine == .crosscheck)
            let k = ServerHarness(dataDir: l.dataDir)
            try await k.start { c in
                c.name = "keeltest"
                c.initialAdvertisePeerURLs = ["http://127.0.0.1:2390"]
                c.initialCluster = "keeltest=http://127.0.0.1:2390"
                c.initialClusterToken = "restore-test"
                c.backend = engine.rawValue
            }
            XCTAssertEqual(try k.ok(["get", "s", "--prefix", "--keys-only"]).split(separator: "\n").count, 9, engine.rawValue)
            _ = try k.ok(["put", "on-\(engine.rawValue)", "1"])
            await k.stop()
        }

        // etcd on a second restore of etcd's snapshot, and on etcdctl's restore of keel's.
        o.dataDir = dir + "/restored2.etcd"
        _ = try SnapshotRestore.run(o)
        let e2 = try EtcdServer(dataDir: o.dataDir)
        XCTAssertEqual(try e2.ctl(["get", "s5", "--print-value-only"]).stdout, "v5\n")
        XCTAssertTrue(try e2.ctl(["member", "list"]).stdout.hasPrefix(String(r.memberID, radix: 16) + ", started, keeltest,"))
        e2.stop()
        let restored = try ServerHarness.run(["etcdctl", "snapshot", "restore", dir + "/keel.db", "--data-dir", dir + "/from-keel.etcd",
                                              "--name", "keeltest", "--initial-cluster", "keeltest=http://127.0.0.1:2391",
                                              "--initial-advertise-peer-urls", "http://127.0.0.1:2391"])
        XCTAssertEqual(restored.status, 0, restored.stderr)
        let e3 = try EtcdServer(dataDir: dir + "/from-keel.etcd")
        defer { e3.stop() }
        XCTAssertEqual(try e3.ctl(["get", "from-keel", "--print-value-only"]).stdout, "1\n")
        XCTAssertEqual(try e3.ctl(["get", "s", "--prefix", "--keys-only"]).stdout.split(separator: "\n").count, 9)
    }

    /// Damaged data directories: a newest `.snap` that fails its CRC is passed over for the
    /// one before (as etcd does) and said so; a corrupted record in the middle of the WAL stops
    /// the start with the file and offset named, and changes nothing on disk.
    func testDamagedDataDirectories() async throws {
        try ServerHarness.etcdctlAvailable()
        let base = try temporaryDirectory(self)
        let fm = FileManager.default
        let h = ServerHarness(dataDir: base + "/good.etcd")
        try await h.start { $0.snapshotCount = 10 }
        for i in 1...3 { _ = try h.ok(["put", "d\(i)", "\(i)"]) }
        await h.stop()
        try fm.copyItem(atPath: base + "/good.etcd/member/snap/db", toPath: base + "/old.db")
        try await h.start { $0.snapshotCount = 10 }
        for i in 4...25 { _ = try h.ok(["put", "d\(i)", "\(i)"]) }
        await h.stop()
        let snaps = try fm.contentsOfDirectory(atPath: base + "/good.etcd/member/snap").filter { $0.hasSuffix(".snap") }.sorted()
        XCTAssertGreaterThanOrEqual(snaps.count, 2)

        try fm.copyItem(atPath: base + "/good.etcd", toPath: base + "/badsnap.etcd")
        let snapPath = base + "/badsnap.etcd/member/snap/" + snaps.last!
        var snap = try Data(contentsOf: URL(fileURLWithPath: snapPath))
        snap[snap.count / 2] ^= 0xFF
        try snap.write(to: URL(fileURLWithPath: snapPath))
        let b = ServerHarness(dataDir: base + "/badsnap.etcd")
        try await b.start { $0.logLevel = "info" }
        XCTAssertEqual(try b.ok(["get", "d", "--prefix", "--keys-only"]).split(separator: "\n").count, 25)
        XCTAssertTrue(b.logs.withLock { $0 }.contains { $0.contains("skipping a damaged snapshot file") && $0.contains(snaps.last!) })
        await b.stop()

        try fm.copyItem(atPath: base + "/good.etcd", toPath: base + "/badwal.etcd")
        let walDir = base + "/badwal.etcd/member/wal/"
        let segment = try fm.contentsOfDirectory(atPath: walDir).filter { $0.hasSuffix(".wal") }.sorted()[0]
        var wal = try Data(contentsOf: URL(fileURLWithPath: walDir + segment))
        let used = wal.lastIndex { $0 != 0 } ?? 0
        // Sixteen bytes, so some fall in a record's data whatever the padding (8-byte frames).
        for i in (used / 2)..<(used / 2 + 16) { wal[i] ^= 0xFF }
        try wal.write(to: URL(fileURLWithPath: walDir + segment))
        let before = try Data(contentsOf: URL(fileURLWithPath: walDir + segment))
        let w = ServerHarness(dataDir: base + "/badwal.etcd")
        do {
            try await w.start()
            await w.stop()
            XCTFail("keel started on a WAL with a corrupted record")
        } catch {
            XCTAssertTrue("\(error)".contains(segment) && "\(error)".contains("offset"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: walDir + segment)), before)

        // A db older than the newest snapshot (its entries are gone from the WAL), an empty
        // LMDB backend beside a WAL that continues from a snapshot (the history is in the bolt
        // db), and a db of another cluster: refused before the bolt db is written.
        try fm.copyItem(atPath: base + "/good.etcd", toPath: base + "/olddb.etcd")
        try fm.removeItem(atPath: base + "/olddb.etcd/member/snap/db")
        try fm.copyItem(atPath: base + "/old.db", toPath: base + "/olddb.etcd/member/snap/db")
        let other = ServerHarness(dataDir: base + "/other.etcd")
        try await other.start { $0.name = "other"; $0.initialClusterToken = "another-cluster" }
        await other.stop()
        try fm.removeItem(atPath: base + "/other.etcd/member/snap/db")
        try fm.copyItem(atPath: base + "/good.etcd/member/snap/db", toPath: base + "/other.etcd/member/snap/db")
        try fm.copyItem(atPath: base + "/good.etcd", toPath: base + "/lmdb.etcd")
        for (dirName, words, configure) in [("olddb.etcd", "older than the newest snapshot", { (_: inout ServerConfig) in }),
                                            ("lmdb.etcd", "is empty, but the WAL continues from a snapshot", { (c: inout ServerConfig) in c.backend = "lmdb" }),
                                            ("other.etcd", "belongs to another cluster", { (c: inout ServerConfig) in c.name = "other"; c.initialClusterToken = "another-cluster" })] {
            let db = base + "/" + dirName + "/member/snap/db"
            let dbBefore = try Data(contentsOf: URL(fileURLWithPath: db))
            let x = ServerHarness(dataDir: base + "/" + dirName)
            do {
                try await x.start(configure)
                await x.stop()
                XCTFail("keel started on \(dirName)")
            } catch {
                XCTAssertTrue("\(error)".contains(words), "\(error)")
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: db)), dbBefore, dirName)
        }
    }

    /// etcd releases WAL segments behind its snapshots (64 MiB segments, `--max-wals 1`, a purge
    /// every 30 s): keel starts from the newest .snap and the segments left, with the same data.
    func testKeelStartsAfterEtcdReleasedWALSegments() async throws {
        try ServerHarness.etcdctlAvailable()
        let dir = try temporaryDirectory(self) + "/released.etcd"
        let etcd = try EtcdServer(dataDir: dir, extraArguments: ["--snapshot-count", "5", "--max-wals", "1"])
        let peerURL = etcd.peerURL
        let value = dir + ".value"
        try Data(repeating: UInt8(ascii: "x"), count: 1_400_000).write(to: URL(fileURLWithPath: value))
        let fill = try Shell.run(["bash", "-c", "for i in $(seq 1 60); do etcdctl --endpoints \(etcd.clientURL) put big$((i % 7)) < \(value) > /dev/null || exit 1; done"],
                                 environment: ["ETCDCTL_API": "3"])
        XCTAssertEqual(fill.status, 0, fill.stderr)
        let walDir = dir + "/member/wal"
        let first = "0000000000000000-0000000000000000.wal"
        let deadline = Date().addingTimeInterval(90)
        while FileManager.default.fileExists(atPath: walDir + "/" + first) && Date() < deadline {
            try await Task.sleep(nanoseconds: 500_000_000)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: walDir + "/" + first), "etcd released no WAL segment")
        _ = try etcd.ctl(["put", "last", "1"])
        let etcdKeys = try etcd.ctl(["get", "", "--from-key", "--keys-only", "-w", "json"]).stdout
        let etcdHash = Self.hash(try etcd.ctl(["endpoint", "hashkv", "-w", "json"]).stdout)
        etcd.stop()

        let h = ServerHarness(dataDir: dir)
        try await h.start { c in
            c.name = "keeltest"
            c.initialAdvertisePeerURLs = [peerURL]
            c.initialCluster = "keeltest=\(peerURL)"
        }
        XCTAssertEqual(Self.normalized(try h.ok(["get", "", "--from-key", "--keys-only", "-w", "json"])), Self.normalized(etcdKeys))
        XCTAssertEqual(Self.hash(try h.ok(["endpoint", "hashkv", "-w", "json"])), etcdHash)
        XCTAssertEqual(try h.ok(["put", "from-keel", "1"]), "OK\n")
        await h.stop()
    }
}
