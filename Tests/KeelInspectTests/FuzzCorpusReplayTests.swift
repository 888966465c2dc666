import Foundation
import KeelFuzz
import XCTest

/// Replays the committed fuzz corpora (Tests/FuzzCorpus) through the fuzz target bodies: every
/// input must come back without a trap.
final class FuzzCorpusReplayTests: XCTestCase {
    func corpus(_ name: String) throws -> [[UInt8]] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../FuzzCorpus/\(name)").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        return files.compactMap { FileManager.default.contents(atPath: dir.appendingPathComponent($0).path).map { [UInt8]($0) } }
    }

    func testWALCorpus() throws {
        let inputs = try corpus("FuzzWALSegment")
        XCTAssertGreaterThan(inputs.count, 2)
        for input in inputs { FuzzBodies.walSegment(input) }
    }

    func testBoltCorpus() throws {
        let inputs = try corpus("FuzzBoltFile")
        XCTAssertGreaterThan(inputs.count, 2)
        for input in inputs { FuzzBodies.boltFile(input) }
    }
}
