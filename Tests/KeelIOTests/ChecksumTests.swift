@testable import KeelIO
import XCTest

final class ChecksumTests: XCTestCase {
    func testCRC32CKnownVectors() {
        // RFC 3720 / iSCSI test vectors and the classic "123456789" check value.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    func testChainingEqualsOneChecksum() {
        var rng = SplitMix64(seed: 42)
        let data = (0..<10_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        var crc: UInt32 = 0
        var i = 0
        while i < data.count {
            let n = min(1 + Int(rng.next() % 700), data.count - i)
            crc = CRC32C.update(crc, Array(data[i..<(i + n)]))
            i += n
        }
        XCTAssertEqual(crc, CRC32C.checksum(data))
    }

    func testHardwareAndSoftwareAgree() {
        var rng = SplitMix64(seed: 7)
        for length in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1000, 4099] {
            let data = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            for offset in 0..<min(8, max(length, 1)) {
                let slice = Array(data.dropFirst(offset))
                let software = slice.withUnsafeBytes { CRC32C.software(0x1234_5678, $0) }
                XCTAssertEqual(CRC32C.update(0x1234_5678, slice), software, "length \(length) offset \(offset)")
            }
        }
        print("CRC-32C uses the hardware instruction: \(CRC32C.usesHardware)")
    }

    func testFNV1a64() {
        XCTAssertEqual(FNV1a64.hash([]), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(FNV1a64.hash(Array("a".utf8)), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(FNV1a64.hash(Array("foobar".utf8)), 0x8594_4171_f739_67e8)
    }

    func testHistogramPercentiles() {
        let h = LatencyHistogram()
        for i in 1...1000 { h.record(nanoseconds: UInt64(i) * 1000) }
        let s = h.snapshot()
        XCTAssertEqual(s.total, 1000)
        XCTAssertEqual(s.maxNanoseconds, 1_000_000)
        let p50 = Double(s.percentile(0.5))
        let p99 = Double(s.percentile(0.99))
        XCTAssertEqual(p50, 500_000, accuracy: 500_000 * 0.02)
        XCTAssertEqual(p99, 990_000, accuracy: 990_000 * 0.02)
        XCTAssertEqual(s.percentile(1.0), 1_000_000)
        XCTAssertEqual(LatencyHistogram().snapshot().percentile(0.5), 0)
        // Bucket bounds are monotonic and each value falls in a bucket whose bound is >= it.
        var previous: UInt64 = 0
        for ns: UInt64 in [1, 2, 15, 16, 17, 100, 1023, 1024, 99_999, 1 << 40] {
            let index = LatencyHistogram.bucketIndex(ns)
            XCTAssertGreaterThanOrEqual(LatencyHistogram.bucketUpperBound(index), ns)
            XCTAssertGreaterThanOrEqual(index, Int(previous))
            previous = UInt64(index)
        }
    }
}
