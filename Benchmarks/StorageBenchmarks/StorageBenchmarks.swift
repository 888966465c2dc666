import Benchmark
import Foundation
import KeelBackend
import KeelBolt
import KeelLMDB

/// Hot paths of both engines through the same `Backend` protocol: point get, cursor seek,
/// put inside a batch, and commit. Each engine works on 100,000 random 16-byte keys with
/// 100-byte values, loaded once before the measurements.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        maxDuration: .seconds(2),
        maxIterations: 1_000_000
    )
    for kind in ["bolt", "lmdb"] {
        let fixture = Fixture(kind: kind)

        Benchmark("\(kind) point get") { benchmark in
            let tx = try fixture.backend.beginRead()
            defer { tx.end() }
            let bucket = try tx.bucket(Fixture.bucket)
            var i = 0
            for _ in benchmark.scaledIterations {
                try fixture.withKey(i) { key throws(BackendError) in
                    _ = try bucket.get(key) { v throws(BackendError) in blackHole(v?.count) }
                }
                i = (i &+ 7919) % Fixture.count
            }
        }

        Benchmark("\(kind) cursor seek + next 10") { benchmark in
            let tx = try fixture.backend.beginRead()
            defer { tx.end() }
            let bucket = try tx.bucket(Fixture.bucket)
            var i = 0
            for _ in benchmark.scaledIterations {
                try fixture.withKey(i) { key throws(BackendError) in
                    try bucket.range(from: key, to: nil, limit: 10, reverse: false) { k, _ throws(BackendError) in
                        blackHole(k.count)
                        return true
                    }
                }
                i = (i &+ 7919) % Fixture.count
            }
        }

        Benchmark("\(kind) put in a 1000-key batch (rolled back)", configuration: .init(scalingFactor: .kilo)) { benchmark in
            var i = 0
            for _ in 0..<benchmark.scaledIterations.count / 1000 {
                let tx = try fixture.backend.beginWrite()
                let bucket = try tx.bucket(Fixture.bucket)
                benchmark.startMeasurement()
                for _ in 0..<1000 {
                    try fixture.withRandomKey(i) { key throws(BackendError) in try bucket.put(key, fixture.valueBytes) }
                    i &+= 1
                }
                benchmark.stopMeasurement()
                tx.rollback()
            }
        }

        Benchmark("\(kind) commit of 10 puts (no fsync)") { benchmark in
            var i = 0
            for _ in benchmark.scaledIterations {
                let tx = try fixture.backend.beginWrite()
                let bucket = try tx.bucket(Fixture.bucket)
                for _ in 0..<10 {
                    try fixture.withKey(i % Fixture.count) { key throws(BackendError) in try bucket.put(key, fixture.valueBytes) }
                    i &+= 1
                }
                try tx.commit()
            }
        }
    }
}

/// A loaded store of one engine, with its keys.
final class Fixture: @unchecked Sendable {
    static let count = 100_000
    static let bucket: BucketPath = [Array("bench".utf8)]
    let backend: any Backend
    let keys: [UInt8]
    let value = [UInt8](repeating: 0, count: 100)
    var valueBytes: UnsafeRawBufferPointer { value.withUnsafeBytes { $0 } }

    init(kind: String) {
        let dir = NSTemporaryDirectory() + "keel-microbench-\(kind)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if kind == "bolt" {
            var options = Options()
            options.noSync = true
            backend = try! BoltBackend(path: dir + "/bolt.db", options: options)
        } else {
            var options = LMDBOptions()
            options.noSync = true
            options.mapSize = 4 << 30
            backend = try! LMDBBackend(path: dir + "/lmdb", options: options)
        }
        var state: UInt64 = 42
        var bytes = [UInt8](repeating: 0, count: Fixture.count * 16)
        for i in 0..<bytes.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            bytes[i] = UInt8(truncatingIfNeeded: state >> 33)
        }
        keys = bytes
        let tx = try! backend.beginWrite()
        try! tx.createBucket(Fixture.bucket)
        let bucket = try! tx.bucket(Fixture.bucket)
        for i in 0..<Fixture.count {
            try! withKey(i) { key throws(BackendError) in try bucket.put(key, valueBytes) }
        }
        try! tx.commit()
    }

    func withKey<T>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws(BackendError) -> T) throws(BackendError) -> T {
        try withBackendBytes(Array(keys[(i * 16)..<(i * 16 + 16)]), body)
    }

    /// A key not in the store (the loaded key with its last byte flipped).
    func withRandomKey<T>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws(BackendError) -> T) throws(BackendError) -> T {
        var k = Array(keys[((i % Fixture.count) * 16)..<((i % Fixture.count) * 16 + 16)])
        k[15] ^= 0xA5
        return try withBackendBytes(k, body)
    }
}
