@testable import KeelBolt
import KeelIO
import XCTest

/// One-page leaves edited in place (`LeafImage`): the edits, compaction, the fallback to decoded
/// elements, views that must survive later edits, and the pages as Go bbolt reads them.
final class LeafImageTests: XCTestCase {
    /// A file with one bucket of `count` keys "k0000"… (values "v0"… padded with "." to
    /// `valueSize`) committed, so later transactions edit its leaves as images. The bucket must
    /// be too big to be inline (a quarter page) for its leaves to have pages of their own.
    private func seeded(_ fs: SimulatedFileSystem, pageSize: Int = 1024, count: Int = 40, valueSize: Int = 2) throws -> DB {
        let db = try DB.open(path: "/db", options: simOptions(fs, pageSize: pageSize))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<count { try bucket.put(b(String(format: "k%04d", i)), self.value(i, valueSize)) }
        }
        return db
    }

    private func value(_ i: Int, _ size: Int) -> [UInt8] {
        let v = b("v\(i)")
        return v + [UInt8](repeating: UInt8(ascii: "."), count: max(size - v.count, 0))
    }

    /// The node holding `key` in bucket "b", after a write put it in the node cache.
    private func leafNode(_ bucket: Bucket, _ key: [UInt8]) throws -> Node {
        let c = bucket.cursor()
        _ = try c.seek(key)
        return try c.node()
    }

    func testEditsInPlaceKeepTheImageAndMatchAModel() throws {
        let fs = SimulatedFileSystem(seed: 1)
        let db = try seeded(fs)
        var model: [[UInt8]: [UInt8]] = [:]
        for i in 0..<40 { model[b(String(format: "k%04d", i))] = b("v\(i)") }
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            try bucket.put(b("k0001"), b("replaced"))
            try bucket.put(b("k0001a"), b("inserted"))
            try bucket.delete(b("k0002"))
            let node = try! self.leafNode(bucket, b("k0001"))
            XCTAssertNotNil(node.image, "a one-page leaf is edited as an image")
            XCTAssertEqual(node.image?.dead, b("k0001").count + b("v1").count + b("k0002").count + b("v2").count)
            XCTAssertEqual(try bucket.get(b("k0001"))?.bytes, b("replaced"))
            XCTAssertEqual(try bucket.get(b("k0001a"))?.bytes, b("inserted"))
            XCTAssertNil(try bucket.get(b("k0002")))
        }
        model[b("k0001")] = b("replaced")
        model[b("k0001a")] = b("inserted")
        model[b("k0002")] = nil
        assertConsistent(db)
        let stored = try flatContents(db, bucket: b("b"))
        XCTAssertEqual(stored, model)
        try db.close()
    }

    func testCompactionAndViewsThatOutliveLaterEdits() throws {
        let fs = SimulatedFileSystem(seed: 1)
        let db = try seeded(fs, count: 8, valueSize: 40)
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            let before = try bucket.get(b("k0003"))!
            let keyView = try bucket.cursor().seek(b("k0003"))!.key
            let node = try! self.leafNode(bucket, b("k0003"))
            let firstBuffer = node.image!.base
            // Rewrite the same keys with growing values until the dead space forces compaction
            // into a fresh buffer, staying under a page so the leaf stays an image.
            var round = 0
            while node.image?.base == firstBuffer {
                round += 1
                for i in 0..<8 { try bucket.put(b(String(format: "k%04d", i)), [UInt8](repeating: UInt8(round), count: 60)) }
                XCTAssertLessThan(round, 50, "compaction never happened")
            }
            XCTAssertNotNil(node.image, "still an image after compaction")
            XCTAssertLessThan(node.image?.size ?? .max, 1024)
            // Views taken before are untouched: old bytes stay in the old buffer.
            XCTAssertEqual(before.bytes, self.value(3, 40))
            XCTAssertEqual(keyView.bytes, b("k0003"))
            XCTAssertEqual(try bucket.get(b("k0003"))?.bytes, [UInt8](repeating: UInt8(round), count: 60))
        }
        assertConsistent(db)
        try db.view { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            for i in 0..<8 { XCTAssertEqual(try bucket.get(b(String(format: "k%04d", i)))?.count, 60) }
        }
        try db.close()
    }

    func testAFullLeafFallsBackToNodesAndSplits() throws {
        let fs = SimulatedFileSystem(seed: 1)
        let db = try seeded(fs, count: 4, valueSize: 70)
        var viewOfOld: ByteView?
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            let old = try bucket.get(b("k0000"))!
            let node = try! self.leafNode(bucket, b("k0000"))
            XCTAssertNotNil(node.image)
            for i in 4..<200 { try bucket.put(b(String(format: "k%04d", i)), [UInt8](repeating: 7, count: 30)) }
            XCTAssertNil(node.image, "a leaf past one page is decoded")
            XCTAssertEqual(old.bytes, self.value(0, 70), "a view into the image survives the fallback")
            XCTAssertEqual(try bucket.get(b("k0199"))?.count, 30)
            viewOfOld = old
        }
        XCTAssertEqual(viewOfOld?.isAlive, false)
        assertConsistent(db)
        let depth = try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.stats().depth }
        XCTAssertGreaterThan(depth, 1, "the leaf split")
        try db.close()
    }

    /// A put that would make a leaf exactly one page splits it, as bbolt does (its split rule
    /// keeps only leaves smaller than a page), instead of leaving a full image: page counts stay
    /// equal to bbolt's.
    func testALeafOfExactlyOnePageSplitsLikeBbolt() throws {
        let fs = SimulatedFileSystem(seed: 3)
        let db = try DB.open(path: "/db", options: simOptions(fs, pageSize: 1024))
        // 16 + 9 × (16 + 8 + 76) = 916 bytes: one leaf, not inline.
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<9 { try bucket.put(b(String(format: "k%07d", i)), [UInt8](repeating: 1, count: 76)) }
        }
        XCTAssertEqual(try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.stats().leafPageN }, 1)
        // + (16 + 8 + 84) = 1024 bytes: exactly a page.
        try db.update { tx throws(BoltError) in
            try tx.bucket(b("b"))!.put(b("k0000009"), [UInt8](repeating: 2, count: 84))
        }
        assertConsistent(db)
        XCTAssertEqual(try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.stats().leafPageN }, 2)
        try db.close()
    }

    func testDeletingEverythingFromImagesRebalances() throws {
        let fs = SimulatedFileSystem(seed: 1)
        let db = try seeded(fs, count: 300)
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            for i in 0..<300 where i % 7 != 0 { try bucket.delete(b(String(format: "k%04d", i))) }
        }
        assertConsistent(db)
        let keys = try db.view { tx throws(BoltError) in
            var n = 0
            try tx.bucket(b("b"))!.forEach { _, _ throws(BoltError) in n += 1 }
            return n
        }
        XCTAssertEqual(keys, 43)
        try db.close()
    }

    /// Seeded random churn on tiny pages, many transactions, each checked against a model and
    /// by `check`: inserts, overwrites that grow and shrink values, deletes, in sorted and random
    /// order, so images fill, compact, fall back, split and merge.
    func testRandomChurnAgainstAModel() throws {
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        for pageSize in [512, 1024, 4096] {
            let fs = SimulatedFileSystem(seed: 1)
            let db = try DB.open(path: "/db", options: simOptions(fs, pageSize: pageSize))
            var model: [[UInt8]: [UInt8]] = [:]
            for round in 0..<40 {
                try db.update { tx throws(BoltError) in
                    let bucket = try tx.createBucketIfNotExists(b("b"))
                    for _ in 0..<(1 + Int(rng.next() % 120)) {
                        let key = b(String(format: "key-%04d", Int(rng.next() % 600)))
                        if rng.next() % 4 == 0 {
                            try bucket.delete(key)
                            model[key] = nil
                        } else {
                            let size = Int(rng.next() % UInt64(pageSize / 6))
                            let value = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                            try bucket.put(key, value)
                            model[key] = value
                        }
                    }
                }
                assertConsistent(db, "page size \(pageSize), round \(round), seed \(seed)")
                let stored = try flatContents(db, bucket: b("b"))
                XCTAssertEqual(stored, model, "page size \(pageSize), round \(round), seed \(seed)")
                if stored != model { break }
            }
            try db.close()
        }
    }

    /// Pages written as images (with dead space dropped, gaps zeroed) pass Go bbolt's check and
    /// read back identically there.
    func testImagesWrittenPassGoCheck() throws {
        let dir = try temporaryDirectory(self)
        let path = "\(dir)/images.db"
        var options = Options()
        options.pageSize = 4096
        options.lockTimeout = 5
        let db = try DB.open(path: path, options: options)
        var rng = SplitMix64(seed: testSeed())
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<2000 { try bucket.put(b(String(format: "k%05d", i)), [UInt8](repeating: 1, count: 40)) }
        }
        for _ in 0..<10 {
            try db.update { tx throws(BoltError) in
                let bucket = try tx.bucket(b("b"))!
                for _ in 0..<300 {
                    let key = b(String(format: "k%05d", Int(rng.next() % 2500)))
                    switch rng.next() % 3 {
                    case 0: try bucket.delete(key)
                    case 1: try bucket.put(key, [UInt8](repeating: 2, count: Int(rng.next() % 80)))
                    default: try bucket.put(key, [])
                    }
                }
            }
        }
        assertConsistent(db)
        let ours = try keelDump(db)
        try db.close()
        let check = try GoOracle.run(["check", path], allowFailure: true)
        XCTAssertEqual(check.stdout, "OK\n", "Go tx.Check: \(check.stdout) \(check.stderr)")
        XCTAssertEqual(try GoOracle.run(["dump", path]).stdout, ours)
    }
}
