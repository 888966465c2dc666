@testable import KeelBolt
import KeelIO
import XCTest

/// The branch writer's fast loop writes the same bytes as the general element writer.
final class PageWriterTests: XCTestCase {
    func testBranchWriterMatchesTheGeneralWriter() {
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        let pageSize = 4096
        for round in 0..<200 {
            let count = 1 + Int(rng.next() % 60)
            var keys: [[UInt8]] = []
            for _ in 0..<count {
                // Mostly 16-byte keys (the fast copy), some of other sizes.
                let size = rng.next() % 3 == 0 ? 1 + Int(rng.next() % 40) : 16
                keys.append((0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            }
            let pgids = (0..<count).map { _ in rng.next() % 1_000_000 }
            let a = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 8)
            let b = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 8)
            defer { a.deallocate(); b.deallocate() }
            a.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
            b.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
            keys.withUnsafeBufferPointers { views in
                let elements = (0..<count).map { INode(flags: 0, pgid: pgids[$0], key: views[$0], value: .empty) }
                PageWriter(base: a).writeElements(id: 77, isLeaf: false, count: count, overflow: 0) { i in
                    (0, elements[i].pgid, elements[i].key, .empty)
                }
                elements.withUnsafeBufferPointer { PageWriter(base: b).writeBranch(id: 77, elements: $0, overflow: 0) }
            }
            XCTAssertEqual(memcmp(a, b, pageSize), 0, "round \(round), seed \(seed)")
        }
    }
}

private extension Array where Element == [UInt8] {
    /// Calls `body` with a view of each array, valid during the call.
    func withUnsafeBufferPointers<R>(_ body: ([ByteView]) -> R) -> R {
        var views: [ByteView] = []
        var storage: [UnsafeMutableRawPointer] = []
        defer { storage.forEach { $0.deallocate() } }
        for bytes in self {
            let p = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(bytes.count, 1), alignment: 1)
            bytes.withUnsafeBytes { if $0.count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            storage.append(p)
            views.append(ByteView(base: UnsafeRawPointer(p), count: bytes.count))
        }
        return body(views)
    }
}
