import KeelIO
@testable import KeelRaft
import KeelTestSupport
import XCTest

/// `RaftEntries` behaves exactly like `[RaftEntry]` whatever it holds inside, and the log hands
/// single entries out inline (the allocation-free replication path depends on it).
final class RaftEntriesTests: XCTestCase {
    private func entry(_ i: UInt64, bytes: Int = 3) -> RaftEntry {
        RaftEntry(term: i / 4 + 1, index: i, data: [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: bytes))
    }

    private func isInline(_ es: RaftEntries) -> Bool {
        if case .one = es.storage { return true }
        return false
    }

    func testMatchesAnArrayUnderRandomEdits() {
        let seed = testSeed("RaftEntries random edits")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<300 {
            var model: [RaftEntry] = []
            var es = RaftEntries()
            for step in 0..<40 {
                let e = entry(rng.next() % 1000)
                switch rng.next() % 7 {
                case 0, 1:
                    model.append(e)
                    es.append(e)
                case 2 where !model.isEmpty:
                    let i = Int(rng.next() % UInt64(model.count))
                    model[i] = e
                    es[i] = e
                case 3:
                    let lo = model.isEmpty ? 0 : Int(rng.next() % UInt64(model.count + 1))
                    let hi = lo + Int(rng.next() % UInt64(model.count - lo + 1))
                    let n = Int(rng.next() % 3)
                    let new = (0..<n).map { _ in entry(rng.next() % 1000) }
                    model.replaceSubrange(lo..<hi, with: new)
                    es.replaceSubrange(lo..<hi, with: new)
                case 4:
                    let n = Int(rng.next() % UInt64(model.count + 1))
                    model = Array(model.prefix(n))
                    es = es.head(n)
                case 5:
                    let n = Int(rng.next() % UInt64(model.count + 1))
                    model = Array(model[n...])
                    es = es.tail(from: n)
                default:
                    es = RaftEntries(model)
                }
                XCTAssertEqual(es.array, model, "seed \(seed) step \(step)")
                XCTAssertEqual(es.count, model.count, "seed \(seed) step \(step)")
                XCTAssertEqual(es.first, model.first, "seed \(seed) step \(step)")
                XCTAssertEqual(es.last, model.last, "seed \(seed) step \(step)")
                XCTAssertEqual(es.isEmpty, model.isEmpty, "seed \(seed) step \(step)")
                XCTAssertEqual(es, RaftEntries(model), "seed \(seed) step \(step)")
                XCTAssertEqual(isInline(es), model.count == 1, "one entry is held inline (seed \(seed) step \(step))")
            }
        }
    }

    func testEqualityIgnoresRepresentation() {
        let a = entry(1), b = entry(2)
        var one = RaftEntries(a)
        XCTAssertEqual(one, [a])
        XCTAssertNotEqual(one, [b])
        XCTAssertNotEqual(one, [a, b])
        one.append(b)
        XCTAssertEqual(one, [a, b])
        XCTAssertEqual(one.head(1), RaftEntries([a]))
        XCTAssertTrue(isInline(one.head(1)))
        XCTAssertTrue(isInline(one.tail(from: 1)))
        XCTAssertEqual(RaftEntries(), [])
        XCTAssertEqual(one.map(\.index), [1, 2])
    }

    func testLogHandsOutSingleEntriesInlineAndCutsBySize() throws {
        let s = MemoryStorage()
        try s.append((1...10).map { entry($0, bytes: 100) })
        XCTAssertTrue(isInline(try s.entries(4, 5, maxBytes: .max)))
        XCTAssertEqual(try s.entries(4, 5, maxBytes: .max), [entry(4, bytes: 100)])
        // A limit below one entry still returns one; each 100-byte entry encodes to 108 bytes.
        XCTAssertEqual(try s.entries(2, 11, maxBytes: 1).map(\.index), [2])
        XCTAssertEqual(try s.entries(2, 11, maxBytes: 216).map(\.index), [2, 3])
        XCTAssertEqual(try s.entries(2, 11, maxBytes: 215).map(\.index), [2])
        XCTAssertEqual(try s.entries(2, 11, maxBytes: .max).count, 9)

        let log = RaftLog(storage: s, maxCommittedBytesPerReady: .max)
        try log.append(RaftEntries((11...13).map { entry($0, bytes: 100) }))
        XCTAssertTrue(isInline(try log.slice(12, 13, maxBytes: .max)), "one unstable entry")
        XCTAssertTrue(isInline(try log.slice(9, 10, maxBytes: .max)), "one stored entry")
        // Across the stored and unstable parts, cut at the limit.
        XCTAssertEqual(try log.slice(9, 14, maxBytes: .max).map(\.index), [9, 10, 11, 12, 13])
        XCTAssertEqual(try log.slice(9, 14, maxBytes: 3 * 108).map(\.index), [9, 10, 11])
        XCTAssertEqual(try log.slice(9, 14, maxBytes: 1).map(\.index), [9])
    }
}
