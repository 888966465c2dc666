import Dispatch
import Foundation
import KeelBolt
import KeelIO
import XCTest

/// Readers on other threads keep a stable snapshot while the writer commits, frees and reuses
/// pages, on a real file and a real map.
final class ConcurrencyTests: XCTestCase {
    static func value(version: Int, index: Int) -> [UInt8] {
        var v = b("v\(version)-\(index)-")
        v += [UInt8](repeating: UInt8(version % 251), count: 80)
        return v
    }

    func runReadersDuringWrites(mapReserveBytes: Int, versions: Int) throws {
        let dir = try temporaryDirectory(self)
        var options = Options()
        options.mapReserveBytes = mapReserveBytes
        let db = try DB.open(path: dir + "/c.db", options: options)
        let keys = 300
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("c"))
            for i in 0..<keys { try bucket.put(b(String(format: "key-%04d", i)), ConcurrencyTests.value(version: 0, index: i)) }
        }
        let done = Locked(false)
        let snapshotsChecked = Locked(0)
        let failures = Locked<[String]>([])
        let group = DispatchGroup()
        for reader in 0..<3 {
            DispatchQueue.global().async(group: group) {
                var rounds = 0
                while !done.withLock { $0 } || rounds < 3 {
                    rounds += 1
                    do {
                        try db.view { tx throws(BoltError) in
                            let bucket = try tx.bucket(b("c"))!
                            let first = try bucket.get(b("key-0000"))!.bytes
                            let version = Int(String(decoding: first.dropFirst().prefix { $0 != UInt8(ascii: "-") }, as: UTF8.self))!
                            for pass in 0..<2 {
                                var count = 0
                                let c = bucket.cursor()
                                var entry = try c.first()
                                while let e = entry {
                                    if !e.value!.equals(ConcurrencyTests.value(version: version, index: count)) {
                                        failures.withLock { $0.append("reader \(reader) pass \(pass): key \(count) changed under snapshot of version \(version)") }
                                        return
                                    }
                                    count += 1
                                    entry = try c.next()
                                }
                                if count != keys { failures.withLock { $0.append("reader \(reader): \(count) keys") } }
                                if pass == 0 { usleep(UInt32(200 + reader * 300)) }
                            }
                        }
                        snapshotsChecked.withLock { $0 += 1 }
                        usleep(3000)
                    } catch {
                        failures.withLock { $0.append("reader \(reader): \(error)") }
                        return
                    }
                }
            }
        }
        DispatchQueue.global().async(group: group) {
            do {
                for version in 1...versions {
                    try db.update { tx throws(BoltError) in
                        let bucket = try tx.bucket(b("c"))!
                        for i in 0..<keys { try bucket.put(b(String(format: "key-%04d", i)), ConcurrencyTests.value(version: version, index: i)) }
                        // Churn: a bucket created and dropped frees many pages.
                        let churn = try tx.createBucketIfNotExists(b("churn"))
                        for i in 0..<50 { try churn.put(b("x\(version)-\(i)"), [UInt8](repeating: 1, count: 500)) }
                        if version % 3 == 0 { try tx.deleteBucket(b("churn")) }
                    }
                }
            } catch {
                failures.withLock { $0.append("writer: \(error)") }
            }
            done.withLock { $0 = true }
        }
        group.wait()
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertGreaterThan(snapshotsChecked.withLock { $0 }, 3)
        assertConsistent(db)
        XCTAssertEqual(db.stats().openTxN, 0)
        try db.close()
    }

    func testReadersKeepStableSnapshots() throws {
        try runReadersDuringWrites(mapReserveBytes: 1 << 36, versions: 80)
    }

    /// A tiny reservation forces new maps while readers still use the old ones.
    func testReadersSurviveRemaps() throws {
        try runReadersDuringWrites(mapReserveBytes: 64 << 10, versions: 80)
    }

    /// A second process (here: a second open) cannot take the write lock while the first holds it.
    func testSecondWriterIsLockedOut() throws {
        let dir = try temporaryDirectory(self)
        let db = try DB.open(path: dir + "/l.db")
        var options = Options()
        options.lockTimeout = 0.2
        XCTAssertThrowsError(try DB.open(path: dir + "/l.db", options: options)) { error in
            XCTAssertEqual(error as? BoltError, .io(.lockTimeout(path: dir + "/l.db")))
        }
        options.readOnly = true
        XCTAssertThrowsError(try DB.open(path: dir + "/l.db", options: options))
        try db.close()
        let reader1 = try DB.open(path: dir + "/l.db", options: options)
        let reader2 = try DB.open(path: dir + "/l.db", options: options)
        XCTAssertThrowsError(try reader1.update { _ throws(BoltError) in }) { XCTAssertEqual($0 as? BoltError, .readOnly) }
        try reader1.close()
        try reader2.close()
    }

    /// A page freed while an older reader is open is not reused until that reader ends.
    func testPendingPagesWaitForOldReaders() throws {
        let fs = SimulatedFileSystem(seed: 11)
        let db = try DB.open(path: "/p.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in try tx.createBucket(b("b")).put(b("k"), [UInt8](repeating: 1, count: 3000)) }
        let reader = try db.beginRead()
        let before = try reader.bucket(b("b"))!.get(b("k"))!
        for i in 0..<20 {
            try db.update { tx throws(BoltError) in try tx.bucket(b("b"))!.put(b("k"), [UInt8](repeating: UInt8(i + 2), count: 3000)) }
        }
        XCTAssertTrue(before.allSatisfy { $0 == 1 }, "the old reader's value was overwritten")
        XCTAssertEqual(db.freelistCounts().free, 0, "nothing may be reused while the reader from before is open")
        reader.rollback()
        try db.update { tx throws(BoltError) in try tx.bucket(b("b"))!.put(b("k"), b("small")) }
        XCTAssertGreaterThan(db.freelistCounts().free, 0)
        assertConsistent(db)
        try db.close()
    }
}
