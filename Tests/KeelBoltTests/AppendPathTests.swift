@testable import KeelBolt
import KeelIO
import XCTest

/// Puts of increasing keys go straight to the bucket's rightmost leaf (`Bucket.rightmostLeaf`)
/// without a seek; everything else must still land where a seek would put it.
final class AppendPathTests: XCTestCase {
    func testIncreasingKeysUseTheRightmostLeafAndMixedWritesMatchAModel() throws {
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        let fs = SimulatedFileSystem(seed: seed)
        let db = try DB.open(path: "/db", options: simOptions(fs, pageSize: 512))
        var model: [[UInt8]: [UInt8]] = [:]
        var next = 0
        for round in 0..<30 {
            try db.update { tx throws(BoltError) in
                let bucket = try tx.createBucketIfNotExists(b("b"))
                for _ in 0..<(20 + Int(rng.next() % 200)) {
                    let key: [UInt8]
                    switch rng.next() % 10 {
                    case 0..<6:
                        // Appends: above every key so far.
                        next += 1 + Int(rng.next() % 3)
                        key = b(String(format: "k%06d", next))
                    case 6, 7:
                        // Anywhere, including below the rightmost leaf's first key.
                        key = b(String(format: "k%06d", Int(rng.next() % UInt64(next + 2))))
                    default:
                        let victim = b(String(format: "k%06d", Int(rng.next() % UInt64(next + 1))))
                        try bucket.delete(victim)
                        model[victim] = nil
                        continue
                    }
                    let value = [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: Int(rng.next() % 40))
                    try bucket.put(key, value)
                    model[key] = value
                }
                if round > 2 {
                    XCTAssertNotNil(bucket.rightmostLeaf, "appends found the rightmost leaf (seed \(seed))")
                }
            }
            assertConsistent(db, "round \(round), seed \(seed)")
            let stored = try flatContents(db, bucket: b("b"))
            XCTAssertEqual(stored, model, "round \(round), seed \(seed)")
            if stored != model { break }
        }
        let depth = try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.stats().depth }
        XCTAssertGreaterThan(depth, 2, "the tree grew branches, so the right edge was a real path")
        try db.close()
    }

    /// After the rightmost leaf was emptied by deletes in the same transaction, puts still land
    /// in order (the fast path needs a last key to compare with).
    func testAppendsAfterEmptyingTheRightmostLeaf() throws {
        let fs = SimulatedFileSystem(seed: 2)
        let db = try DB.open(path: "/db", options: simOptions(fs, pageSize: 512))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<400 { try bucket.put(b(String(format: "k%04d", i)), b("v")) }
        }
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            try bucket.put(b("k0400"), b("v"))
            for i in stride(from: 400, through: 300, by: -1) { try bucket.delete(b(String(format: "k%04d", i))) }
            try bucket.put(b("k0250a"), b("w"))
            try bucket.put(b("k0500"), b("w"))
            try bucket.put(b("k0501"), b("w"))
        }
        assertConsistent(db)
        let keys = try db.view { tx throws(BoltError) in
            var all: [String] = []
            try tx.bucket(b("b"))!.forEach { k, _ throws(BoltError) in all.append(String(decoding: k.bytes, as: UTF8.self)) }
            return all
        }
        XCTAssertEqual(keys.count, 303)
        XCTAssertEqual(keys, keys.sorted())
        XCTAssertEqual(Array(keys.suffix(3)), ["k0299", "k0500", "k0501"])
        try db.close()
    }
}
