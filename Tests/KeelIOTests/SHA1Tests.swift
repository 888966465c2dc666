import Foundation
import KeelIO
import XCTest

final class SHA1Tests: XCTestCase {
    func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    func testKnownVectors() {
        XCTAssertEqual(hex(SHA1.hash([])), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(hex(SHA1.hash(Array("abc".utf8))), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(hex(SHA1.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))),
                       "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(hex(SHA1.hash([UInt8](repeating: 0x61, count: 1_000_000))), "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    /// Every length around the padding boundaries, against coreutils' `sha1sum`.
    func testPaddingBoundariesMatchCoreutils() throws {
        let dir = NSTemporaryDirectory() + "keel-sha1-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 7)
        for n in [55, 56, 57, 63, 64, 65, 119, 120, 128] {
            let data = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let path = dir + "/\(n)"
            FileManager.default.createFile(atPath: path, contents: Data(data))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/sha1sum")
            p.arguments = [path]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            p.waitUntilExit()
            let line = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(String(line.prefix(40)), hex(SHA1.hash(data)), "length \(n)")
        }
    }
}
