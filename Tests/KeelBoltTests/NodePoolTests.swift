@testable import KeelBolt
import KeelIO
import XCTest

/// Nodes of ended write transactions go back to the database's pool and are reused by the next
/// writer (`Node.make`); a node something outside still holds stays out of the pool.
final class NodePoolTests: XCTestCase {
    func testWritersReuseNodesAndKeepTheirContentsRight() throws {
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        let fs = SimulatedFileSystem(seed: seed)
        let db = try DB.open(path: "/db", options: simOptions(fs, pageSize: 512))
        var model: [[UInt8]: [UInt8]] = [:]
        var pooledAfterFirst = 0
        for round in 0..<25 {
            let poolBefore = db.spareNodes.count
            var poolDuring = 0
            var made = 0
            try db.update { tx throws(BoltError) in
                let bucket = try tx.createBucketIfNotExists(b("b"))
                for _ in 0..<(50 + Int(rng.next() % 150)) {
                    let key = b(String(format: "k%05d", Int(rng.next() % 3000)))
                    if rng.next() % 4 == 0 {
                        try bucket.delete(key)
                        model[key] = nil
                    } else {
                        let value = [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: Int(rng.next() % 60))
                        try bucket.put(key, value)
                        model[key] = value
                    }
                }
                made = tx.stats.nodeCount
                poolDuring = tx.spareNodes.count
            }
            if round == 0 { pooledAfterFirst = db.spareNodes.count }
            if poolBefore > 0 && made > 0 {
                XCTAssertLessThan(poolDuring, poolBefore, "the writer took its nodes from the pool (round \(round), seed \(seed))")
                XCTAssertGreaterThanOrEqual(db.spareNodes.count, min(poolBefore, DB.maxSpareNodes - made),
                                            "and they came back when it ended (round \(round), seed \(seed))")
            }
            assertConsistent(db, "round \(round), seed \(seed)")
            let stored = try flatContents(db, bucket: b("b"))
            XCTAssertEqual(stored, model, "round \(round), seed \(seed)")
            if stored != model { break }
        }
        XCTAssertGreaterThan(pooledAfterFirst, 0, "the first writer's nodes went to the pool")
        XCTAssertLessThanOrEqual(db.spareNodes.count, DB.maxSpareNodes)
        // Every pooled node is empty and unlinked.
        for node in db.spareNodes {
            XCTAssertEqual(node.count, 0)
            XCTAssertTrue(node.children.isEmpty)
            XCTAssertNil(node.image)
            XCTAssertEqual(node.pgid, 0)
        }
        try db.close()
    }

    func testANodeHeldOutsideStaysOutOfThePool() throws {
        let fs = SimulatedFileSystem(seed: 3)
        let db = try DB.open(path: "/db", options: simOptions(fs, pageSize: 512))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<300 { try bucket.put(b(String(format: "k%04d", i)), b("v")) }
        }
        // A cursor of a write transaction that walks a leaf the transaction changed holds that
        // leaf's node; the caller keeps the cursor past the commit.
        var kept: Cursor?
        var heldNode: Node?
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            try bucket.put(b("k0150"), b("changed"))
            let c = bucket.cursor()
            _ = try c.seek(b("k0150"))
            heldNode = c.stack.last?.node
            kept = c
        }
        let node = try XCTUnwrap(heldNode)
        XCTAssertFalse(db.spareNodes.contains { $0 === node }, "a node a cursor still holds is not reused")
        XCTAssertEqual(node.count > 0, true, "and it still has its elements")
        heldNode = nil
        // The next writer works as usual while the old cursor is alive, and the old cursor refuses.
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            for i in 0..<300 { try bucket.put(b(String(format: "k%04d", i)), b("w")) }
        }
        XCTAssertThrowsError(try kept!.next())
        kept = nil
        assertConsistent(db)
        XCTAssertEqual(try flatContents(db, bucket: b("b")).count, 300)
        try db.close()
    }
}
