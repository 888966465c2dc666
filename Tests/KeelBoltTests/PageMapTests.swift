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
}
