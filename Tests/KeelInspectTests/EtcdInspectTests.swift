import Foundation
import KeelBolt
import KeelInspect
import KeelIO
import KeelTestSupport
import XCTest

/// Against real tools on real files: etcd 3.4 started briefly on loopback (puts, a delete, a
/// lease, a compaction), then stopped.
final class EtcdInspectTests: XCTestCase {
    func testSnapshotStatusDumpAndWALAgreeWithEtcd() throws {
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdServer(dataDir: dir + "/etcd")
        func ctl(_ args: [String]) throws -> Shell.Output { try etcd.ctl(args) }
        for i in 0..<20 { _ = try ctl(["put", "/k/\(i % 7)", "value-\(i)"]) }
        _ = try ctl(["del", "/k/3"])
        let lease = try ctl(["lease", "grant", "600"]).stdout.split(separator: " ").dropFirst().first.map(String.init) ?? "0"
        _ = try ctl(["put", "/leased", "x", "--lease=\(lease)"])
        _ = try ctl(["compaction", "5"])
        // What etcd reports for every revision still readable (after the compaction at 5).
        var expected: [Int64: Set<String>] = [:]
        for rev in 5...24 {
            let out = try ctl(["get", "/", "--prefix", "--rev=\(rev)", "-w", "json"]).stdout
            guard let data = out.data(using: .utf8), let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { continue }
            for kv in (object["kvs"] as? [[String: Any]]) ?? [] {
                if let mod = kv["mod_revision"] as? Int64 ?? (kv["mod_revision"] as? NSNumber)?.int64Value, mod == rev,
                   let key = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }) {
                    expected[Int64(rev), default: []].insert(String(decoding: key, as: UTF8.self))
                }
            }
        }
        etcd.stop()

        let dbPath = dir + "/etcd/member/snap/db"
        // snapshot status: field for field equal to etcdctl's.
        let theirs = try Shell.run(["etcdctl", "snapshot", "status", dbPath, "-w", "json"], environment: ["ETCDCTL_API": "3"]).stdout
        var options = Options()
        options.readOnly = true
        let db = try DB.open(path: dbPath, options: options)
        defer { try? db.close() }
        let ours = try SnapshotStatus.compute(db)
        XCTAssertEqual(ours.json, theirs.trimmingCharacters(in: .whitespacesAndNewlines))

        // etcd dump shows every revision etcd reports.
        let (lines, problems) = try EtcdDump().lines(db)
        XCTAssertEqual(problems, [])
        XCTAssertFalse(expected.isEmpty)
        for (rev, keys) in expected {
            for key in keys {
                XCTAssertTrue(lines.contains { $0.contains("rev=\(rev)_0 key=\(key) ") }, "revision \(rev) of \(key) missing from the dump")
            }
        }
        XCTAssertTrue(lines.contains { $0.contains("tombstone key=/k/3") })
        XCTAssertTrue(lines.contains { $0.contains("finishedCompactRev=5") })
        XCTAssertTrue(lines.contains { $0.hasPrefix("  lease id=") })

        // wal dump lists every entry index the WAL holds.
        let (records, stop) = try WALDump().records(fileSystem: POSIXFileSystem(), directory: dir + "/etcd/member/wal")
        XCTAssertNil(stop)
        let indexes = records.filter { $0.type == "entry" }.compactMap(\.index)
        XCTAssertEqual(indexes, Array(1...UInt64(indexes.count)))
        XCTAssertTrue(records.contains { $0.summary.hasPrefix("put key=/leased value=1B lease=") })
        XCTAssertTrue(records.contains { $0.summary == "compaction revision=5" })
    }
}
