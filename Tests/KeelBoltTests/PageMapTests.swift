@testable import KeelBolt
import KeelIO
import XCTest

/// `PageMap` against `Dictionary` under seeded inserts, overwrites and removals, with ids that
/// collide in the table (multiples of its size) and consecutive ones.
final class PageMapTests: XCTestCase {
    func testAgainstDictionary() {
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        var map = PageMap<Int>()
        var reference: [UInt64: Int] = [:]
        for step in 0..<40_000 {
            let id: UInt64
            switch rng.next() % 3 {
            case 0: id = rng.next() % 64 * 1024  // the same slots over and over
            case 1: id = rng.next() % 3000        // consecutive ids
            default: id = rng.next() % (UInt64.max - 1)
            }
            if rng.next() % 3 == 0 {
                map[id] = nil
                reference[id] = nil
            } else {
                map[id] = step
                reference[id] = step
            }
            if step % 4_999 == 0 {
                XCTAssertEqual(map.count, reference.count, "seed \(seed) step \(step)")
                for (k, v) in reference { XCTAssertEqual(map[k], v, "seed \(seed) step \(step) id \(k)") }
                XCTAssertEqual(map.sortedKeys(), reference.keys.sorted(), "seed \(seed) step \(step)")
            }
            XCTAssertEqual(map[id], reference[id])
        }
        map.removeAll()
        XCTAssertTrue(map.isEmpty)
        XCTAssertNil(map[0])
        map[0] = 7
        XCTAssertEqual(map[0], 7)
    }

    /// `PageSet` against `Set`, with ids in the bitmap, beyond it, and `UInt64.max`.
    func testPageSetMatchesASet() {
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        var set = PageSet([2, 3, PageSet.bitmapLimit, .max])
        var reference: Set<UInt64> = [2, 3, PageSet.bitmapLimit, .max]
        for step in 0..<50_000 {
            let id: UInt64
            switch rng.next() % 10 {
            case 0: id = PageSet.bitmapLimit - 1 + rng.next() % 3
            case 1: id = UInt64.max - rng.next() % 2
            case 2: id = rng.next()
            default: id = rng.next() % 5_000
            }
            if rng.next() % 3 == 0 {
                set.remove(id)
                reference.remove(id)
            } else {
                set.insert(id)
                reference.insert(id)
            }
            XCTAssertEqual(set.contains(id), reference.contains(id), "seed \(seed) step \(step) id \(id)")
            if step % 4_999 == 0 {
                XCTAssertEqual(set.count, reference.count, "seed \(seed) step \(step)")
                for k in reference { XCTAssertTrue(set.contains(k), "seed \(seed) step \(step) id \(k)") }
            }
        }
        XCTAssertEqual(set.count, reference.count)
    }
}
