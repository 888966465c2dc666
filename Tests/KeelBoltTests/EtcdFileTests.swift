import Foundation
import KeelBolt
import KeelIO
import XCTest

/// A real etcd 3.4 backend file (`member/snap/db`) opens read-only in KeelBolt with every bucket
/// and key, exactly as Go bbolt reads it.
final class EtcdFileTests: XCTestCase {
    func testRealEtcdBackendOpensReadOnly() throws {
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdServer(dataDir: dir + "/etcd")
        defer { etcd.stop() }
        for i in 0..<50 { try etcd.ctl(["put", "/keel/key-\(i)", "value-\(i)"]) }
        try etcd.ctl(["del", "/keel/key-7"])
        let lease = try etcd.ctl(["lease", "grant", "600"]).stdout
        let leaseID = lease.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        try etcd.ctl(["put", "/keel/leased", "x", "--lease=\(leaseID)"])
        etcd.stop()

        let path = dir + "/etcd/member/snap/db"
        var options = Options()
        options.readOnly = true
        let db = try DB.open(path: path, options: options)
        defer { try? db.close() }
        let names = try db.view { tx throws(BoltError) in try tx.bucketNames().map { String(decoding: $0, as: UTF8.self) } }
        for expected in ["key", "meta", "members", "lease", "cluster", "alarm", "auth"] {
            XCTAssertTrue(names.contains(expected), "bucket \(expected) missing from \(names)")
        }
        // Every put, the delete (a tombstone revision) and the leased put: 52 revisions at least.
        let (revisions, sawValue) = try db.view { tx throws(BoltError) in
            var count = 0
            var saw = false
            try tx.bucket(b("key"))!.forEach { k, v throws(BoltError) in
                count += 1
                XCTAssertTrue(k.count == 17 || k.count == 18, "revision keys are 17 bytes (18 with the tombstone mark), not \(k.count)")
                if let v, v.bytes.containsSubsequence(b("value-49")) { saw = true }
            }
            return (count, saw)
        }
        XCTAssertGreaterThanOrEqual(revisions, 52)
        XCTAssertTrue(sawValue)
        assertConsistent(db)
        XCTAssertEqual(try keelDump(db), try GoOracle.run(["dump", path]).stdout, "Keel and Go bbolt read the etcd file differently")
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for i in 0...(count - needle.count) where self[i] == needle[0] && Array(self[i..<(i + needle.count)]) == needle { return true }
        return false
    }
}
