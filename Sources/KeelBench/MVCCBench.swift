#if canImport(Glibc)
import Glibc
#endif
import Foundation
import KeelBackend
import KeelIO
import KeelMVCC
import KeelProto

/// `keelutl bench mvcc`: etcd's MVCC workloads on KVStore over the bbolt-format backend, the same
/// ones `Benchmarks/etcdmvcc` runs on etcd 3.4's Go mvcc (same keys, same order, same batching:
/// 10,000 changes or 100 ms per backend commit, fdatasync on).
///
/// Phases: `put` (N random keys, one write txn each), `range-key` (N/20 single-key ranges of
/// random existing keys), `range-100` (N/100 ranges of 100 consecutive keys), `txn-put` (N/10
/// txns of one put over existing keys). Keys are 32 bytes from SplitMix64(seed + i), values
/// 256 bytes; the Go program derives the same keys.
public struct MVCCBench {
    public struct Config: Sendable {
        public var path: String
        public var count = 100_000
        public var keySize = 32
        public var valueSize = 256
        public var seed: UInt64 = 1
        public init(path: String) { self.path = path }
    }

    public let config: Config
    public init(config: Config) { self.config = config }

    /// The i-th key: `keySize` bytes from SplitMix64 seeded with seed + i.
    public static func key(_ i: Int, seed: UInt64, size: Int) -> [UInt8] {
        var rng = SplitMix64(seed: seed &+ UInt64(i))
        var out: [UInt8] = []
        out.reserveCapacity(size + 8)
        while out.count < size { withUnsafeBytes(of: rng.next().bigEndian) { out.append(contentsOf: $0) } }
        return Array(out.prefix(size))
    }

    public func run(_ emit: (PhaseResult) -> Void) throws {
        let fs = POSIXFileSystem()
        if fs.exists(config.path) { try fs.remove(config.path) }
        let backend = try BoltBackend(path: config.path)
        let rssBefore = currentRSS()
        let store = try KVStore(backend: backend)
        let n = config.count
        let keys = (0..<n).map { MVCCBench.key($0, seed: config.seed, size: config.keySize) }
        let value = Data(repeating: 0x61, count: config.valueSize)
        func phase(_ name: String, _ ops: Int, _ body: () throws -> Void) throws {
            let cpu0 = cpuSeconds()
            let t0 = monotonicNanoseconds()
            try body()
            let seconds = Double(monotonicNanoseconds() - t0) / 1e9
            var result = PhaseResult(backend: "keel-mvcc", phase: name, ops: ops, seconds: seconds, p50Microseconds: nil, p99Microseconds: nil,
                                     fileBytes: fileSize(config.path), peakRSSBytes: peakRSS())
            result.cpuSeconds = cpuSeconds() - cpu0
            emit(result)
        }
        try phase("put", n) {
            var p = Etcdserverpb_PutRequest()
            p.value = value
            for (i, k) in keys.enumerated() {
                p.key = Data(k)
                _ = try store.put(p, index: UInt64(i + 1))
                if i % 1000 == 999 { try store.commitIfDue() }
            }
            try store.forceCommit()
        }
        let indexBytes = currentRSS() - rssBefore
        emit(PhaseResult(backend: "keel-mvcc", phase: "index-rss-bytes", ops: Int(indexBytes), seconds: 0, p50Microseconds: nil,
                         p99Microseconds: nil, fileBytes: 0, peakRSSBytes: peakRSS()))
        var rng = SplitMix64(seed: config.seed ^ 0x5EED)
        try phase("range-key", n / 20) {
            var r = Etcdserverpb_RangeRequest()
            for _ in 0..<(n / 20) {
                r.key = Data(keys[Int(rng.next() % UInt64(n))])
                _ = try store.range(r)
            }
        }
        let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }
        try phase("range-100", n / 100) {
            var r = Etcdserverpb_RangeRequest()
            for _ in 0..<(n / 100) {
                let i = Int(rng.next() % UInt64(n - 100))
                r.key = Data(sorted[i])
                r.rangeEnd = Data(sorted[i + 100])
                _ = try store.range(r)
            }
        }
        try phase("txn-put", n / 10) {
            var t = Etcdserverpb_TxnRequest()
            var op = Etcdserverpb_RequestOp()
            var p = Etcdserverpb_PutRequest()
            p.value = value
            for i in 0..<(n / 10) {
                p.key = Data(keys[Int(rng.next() % UInt64(n))])
                op.request = .requestPut(p)
                t.success = [op]
                _ = try store.txn(t, index: UInt64(n + i + 1))
                if i % 1000 == 999 { try store.commitIfDue() }
            }
            try store.forceCommit()
        }
        try store.close()
        try backend.close()
        try? fs.remove(config.path)
    }
}

/// The resident set size now (from /proc/self/statm), in bytes.
public func currentRSS() -> Int64 {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int64(fields[1]) else { return 0 }
    return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
}
