import Foundation
import KeelBolt
import KeelIO
import XCTest

/// KeelBolt against Go bbolt 1.3.6 (Debian's golang-github-coreos-bbolt-dev), both ways.
final class InteropTests: XCTestCase {
    struct Config {
        var name: String
        var pageSize = 4096
        var noFreelistSync = false
        var freelistType = FreelistType.array
        var goOptions: [String] {
            var o: [String] = []
            if noFreelistSync { o.append("nofreelistsync") }
            if freelistType == .hashmap { o.append("hashmap") }
            if pageSize != 4096 { o.append("pagesize=\(pageSize)") }
            return o
        }
        func options() -> Options {
            var o = Options()
            o.pageSize = pageSize
            o.noFreelistSync = noFreelistSync
            o.freelistType = freelistType
            o.lockTimeout = 5
            return o
        }
    }

    static let configs = [
        Config(name: "default"),
        Config(name: "nofreelistsync", noFreelistSync: true),
        Config(name: "hashmap", freelistType: .hashmap),
        Config(name: "pagesize-1024", pageSize: 1024),
    ]

    /// Writes a seeded data set with nested and inline buckets, overflow values, empty values,
    /// deletes (of keys and buckets) and sequences over several transactions.
    func writeRandomData(_ db: DB, seed: UInt64, operations: Int) throws {
        var rng = SplitMix64(seed: seed)
        for round in 0..<5 {
            try db.update { tx throws(BoltError) in
                for _ in 0..<operations {
                    var bucket = try tx.createBucketIfNotExists(b("top-\(rng.next() % 4)"))
                    if rng.next() % 3 == 0 { bucket = try bucket.createBucketIfNotExists(b("nested-\(rng.next() % 3)")) }
                    let key = b(String(format: "k%05d", Int(rng.next() % UInt64(operations * 2))))
                    let size: Int
                    switch rng.next() % 10 {
                    case 0: size = 5000 + Int(rng.next() % 10000)
                    case 1: size = 0
                    default: size = Int(rng.next() % 200)
                    }
                    let value = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    if rng.next() % 5 == 0 { try bucket.delete(key) } else { try bucket.put(key, value) }
                    if rng.next() % 50 == 0 { _ = try bucket.nextSequence() }
                }
                try tx.createBucketIfNotExists(b("small")).put(b("s\(round)"), b("tiny"))
                if round == 3 { try? tx.deleteBucket(b("top-1")) }
            }
        }
    }

    func testKeelFilesPassGoCheckAndReadIdentically() throws {
        let dir = try temporaryDirectory(self)
        let seed = testSeed()
        for config in Self.configs {
            let path = "\(dir)/keel-\(config.name).db"
            let db = try DB.open(path: path, options: config.options())
            try writeRandomData(db, seed: seed, operations: 300)
            assertConsistent(db, config.name)
            let ours = try keelDump(db)
            try db.close()
            let check = try GoOracle.run(["check", path], allowFailure: true)
            XCTAssertEqual(check.stdout, "OK\n", "\(config.name): Go tx.Check: \(check.stdout) \(check.stderr)")
            let theirs = try GoOracle.run(["dump", path]).stdout
            XCTAssertEqual(theirs, ours, "\(config.name): Go reads different data")
            XCTAssertGreaterThan(ours.split(separator: "\n").count, 100)
        }
    }

    func testGoFilesReadInKeelAndKeelKeepsWritingThem() throws {
        let dir = try temporaryDirectory(self)
        let seed = testSeed()
        for config in Self.configs {
            let path = "\(dir)/go-\(config.name).db"
            let goDump = try GoOracle.run(["write", path, String(seed % 1_000_000), "300"] + config.goOptions).stdout
            var db = try DB.open(path: path, options: config.options())
            XCTAssertEqual(db.pageSize, config.pageSize)
            XCTAssertEqual(try keelDump(db), goDump, "\(config.name): Keel reads different data from Go's file")
            assertConsistent(db, config.name)
            try writeRandomData(db, seed: seed &+ 1, operations: 200)
            let ours = try keelDump(db)
            try db.close()
            let check = try GoOracle.run(["check", path], allowFailure: true)
            XCTAssertEqual(check.stdout, "OK\n", "\(config.name): Go tx.Check after Keel wrote: \(check.stdout)")
            XCTAssertEqual(try GoOracle.run(["dump", path]).stdout, ours)
            // And Go can keep writing after Keel.
            try GoOracle.run(["append", path, "500"])
            db = try DB.open(path: path, options: config.options())
            let appended = try db.view { tx throws(BoltError) in try tx.bucket(b("go-append"))?.get(b("go-key-000499"))?.bytes }
            XCTAssertEqual(appended, b("go-value-499"))
            assertConsistent(db, config.name)
            try db.close()
        }
    }

    func testFreelistOfMoreThan65535IDsBothWays() throws {
        let dir = try temporaryDirectory(self)
        let path = "\(dir)/big.db"
        let goDump = try GoOracle.run(["bigfreelist", path]).stdout
        let db = try DB.open(path: path, options: Options())
        XCTAssertEqual(db.pageSize, 512)
        XCTAssertGreaterThan(db.freelistCounts().free, 65_535)
        XCTAssertEqual(try keelDump(db), goDump)
        assertConsistent(db)
        try db.update { tx throws(BoltError) in try tx.bucket(b("big"))!.put(b("keel"), b("was here")) }
        assertConsistent(db)
        let ours = try keelDump(db)
        try db.close()
        XCTAssertEqual(try GoOracle.run(["check", path], allowFailure: true).stdout, "OK\n")
        XCTAssertEqual(try GoOracle.run(["dump", path]).stdout, ours)
    }
}
