import Foundation
import KeelIO
import XCTest

final class SHA256Tests: XCTestCase {
    func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    func testKnownVectors() {
        XCTAssertEqual(hex(SHA256.hash([UInt8]())), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(SHA256.hash(Array("abc".utf8))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000))),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Fed in odd-sized pieces, the digest matches the one-shot digest and `sha256sum`'s.
    func testIncrementalMatchesOneShotAndCoreutils() throws {
        var rng = SplitMix64(seed: 42)
        let data = (0..<100_003).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        var s = SHA256()
        var i = 0
        while i < data.count {
            let n = min(Int(rng.next() % 200), data.count - i)
            s.update(Array(data[i..<(i + n)]))
            i += n
        }
        let digest = s.finalize()
        XCTAssertEqual(digest, SHA256.hash(data))
        let path = NSTemporaryDirectory() + "keel-sha256-\(getpid())"
        try Data(data).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(String(text.prefix(64)), hex(digest))
    }
}
