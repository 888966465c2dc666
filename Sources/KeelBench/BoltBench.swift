#if canImport(Glibc)
import Glibc
#endif
import KeelBolt
import KeelIO

/// The bench workload on a KeelBolt file: write, random point reads, a full scan, and small
/// synced transactions. Results are reported per phase through `report` as they finish.
public struct BoltBench {
    public let config: BenchConfig
    /// Called with progress (0...1) and the phase name, at most every 100 ms.
    public var progress: ((String, Double) -> Void)?

    public init(config: BenchConfig) {
        self.config = config
    }

    /// Runs every phase.
    /// - Throws: `BoltError` from the engine, or `BenchError` for bad parameters.
    public func run(report: (PhaseResult) -> Void) throws {
        if let problem = config.problem() { throw BenchError.invalid(problem) }
        let path = config.path ?? temporaryPath()
        let fs = POSIXFileSystem()
        var options = Options()
        options.noSync = config.noSync
        options.pageSize = config.pageSize
        let db = try DB.open(path: path, options: options)
        defer {
            db.close()
            if !config.keep { try? fs.remove(path) }
        }
        let keys = KeySource(config: config)
        report(try write(db, keys))
        report(try read(db, keys))
        report(try scan(db, keys))
        if config.smallTransactions > 0 { report(try smallTransactions(db, keys)) }
    }

    private func result(_ phase: String, ops: Int, start: UInt64, histogram: LatencyHistogram?, db: DB) -> PhaseResult {
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let snapshot = histogram?.snapshot()
        return PhaseResult(backend: "bolt", phase: phase, ops: ops, seconds: seconds,
                           p50Microseconds: snapshot.map { Double($0.percentile(0.5)) / 1000 },
                           p99Microseconds: snapshot.map { Double($0.percentile(0.99)) / 1000 },
                           fileBytes: fileSize(db.path), peakRSSBytes: peakRSS())
    }

    private func write(_ db: DB, _ keys: KeySource) throws -> PhaseResult {
        let batch = config.batchSize == 0 ? config.count : config.batchSize
        let value = [UInt8](repeating: 0, count: config.valueSize)
        let histogram = LatencyHistogram()
        let start = monotonicNanoseconds()
        var lastProgress = start
        var written = 0
        try value.withUnsafeBytes { valueBytes in
            while written < config.count {
                let t0 = monotonicNanoseconds()
                try db.update { tx throws(BoltError) in
                    var bucket = try tx.createBucketIfNotExists(Array("bench".utf8))
                    bucket.fillPercent = config.fillPercent
                    if config.writeMode.nested {
                        let name = keys.key(written)
                        bucket = try bucket.createBucketIfNotExists(Array(name))
                        bucket.fillPercent = config.fillPercent
                    }
                    for i in written..<(written + batch) {
                        try keys.withKey(i) { key throws(BoltError) in try bucket.put(key, valueBytes) }
                    }
                }
                let t1 = monotonicNanoseconds()
                histogram.record(nanoseconds: t1 - t0)
                written += batch
                if let progress, t1 - lastProgress > 100_000_000 {
                    progress("write", Double(written) / Double(config.count))
                    lastProgress = t1
                }
            }
        }
        return result("write", ops: config.count, start: start, histogram: histogram, db: db)
    }

    private func read(_ db: DB, _ keys: KeySource) throws -> PhaseResult {
        var order = Array(0..<config.count)
        if config.readMode == .rnd {
            var rng = SplitMix64(seed: config.seed &+ 99)
            order.shuffle(using: &rng)
        }
        let start = monotonicNanoseconds()
        var found = 0
        try db.view { tx throws(BoltError) in
            guard let root = try tx.bucket(Array("bench".utf8)) else { return }
            let batch = config.batchSize == 0 ? config.count : config.batchSize
            var bucket = root
            var currentBatch = -1
            for (n, i) in order.enumerated() {
                if config.writeMode.nested && i / batch != currentBatch {
                    currentBatch = i / batch
                    guard let nested = try root.bucket(keys.key(currentBatch * batch)) else { continue }
                    bucket = nested
                }
                if try keys.withKey(i, { key throws(BoltError) in try bucket.get(key) }) != nil { found += 1 }
                if let progress, n & 0xFFFF == 0 { progress("read", Double(n) / Double(config.count)) }
            }
        }
        if found == 0 { throw BenchError.invalid("no key read back") }
        return result("read", ops: config.count, start: start, histogram: nil, db: db)
    }

    private func scan(_ db: DB, _ keys: KeySource) throws -> PhaseResult {
        let start = monotonicNanoseconds()
        var seen = 0
        try db.view { tx throws(BoltError) in
            guard let root = try tx.bucket(Array("bench".utf8)) else { return }
            var buckets = [root]
            if config.writeMode.nested {
                buckets = []
                var names: [[UInt8]] = []
                try root.forEach { k, _ throws(BoltError) in names.append(k.bytes) }
                for n in names { if let b = try root.bucket(n) { buckets.append(b) } }
            }
            for bucket in buckets {
                let c = bucket.cursor()
                var e = try c.first()
                while e != nil {
                    seen += 1
                    e = try c.next()
                }
            }
        }
        return result("scan", ops: seen, start: start, histogram: nil, db: db)
    }

    private func smallTransactions(_ db: DB, _ keys: KeySource) throws -> PhaseResult {
        let histogram = LatencyHistogram()
        let value = [UInt8](repeating: 1, count: config.valueSize)
        let n = config.smallTransactions
        let start = monotonicNanoseconds()
        try value.withUnsafeBytes { valueBytes in
            for i in 0..<n {
                let t0 = monotonicNanoseconds()
                try db.update { tx throws(BoltError) in
                    let bucket = try tx.createBucketIfNotExists(Array("small".utf8))
                    try keys.withKey(i % config.count) { key throws(BoltError) in try bucket.put(key, valueBytes) }
                }
                histogram.record(nanoseconds: monotonicNanoseconds() - t0)
                if let progress, i & 0x3FF == 0 { progress("small-txn", Double(i) / Double(n)) }
            }
        }
        return result("small-txn", ops: n, start: start, histogram: histogram, db: db)
    }
}

/// Errors of the bench itself.
public enum BenchError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(message): return message }
    }
}

/// Keys for the bench, generated once into one buffer: a big-endian counter in the leading bytes
/// (seq) or random bytes (rnd).
final class KeySource {
    let keySize: Int
    let storage: UnsafeMutableRawPointer
    let count: Int

    init(config: BenchConfig) {
        keySize = config.keySize
        count = config.count
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(keySize * count, 1), alignment: 8)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: keySize * count)
        var rng = SplitMix64(seed: config.seed)
        for i in 0..<count {
            let key = storage + i * keySize
            if config.writeMode.random {
                var j = 0
                while j < keySize {
                    var r = rng.next()
                    let n = min(8, keySize - j)
                    withUnsafeBytes(of: &r) { (key + j).copyMemory(from: $0.baseAddress!, byteCount: n) }
                    j += n
                }
            } else {
                // Counter from 1, big-endian, in the first 8 (or 4) bytes: keys sort in write order.
                let width = min(keySize, 8)
                var v = UInt64(i + 1)
                for k in stride(from: width - 1, through: 0, by: -1) {
                    key.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: k, as: UInt8.self)
                    v >>= 8
                }
            }
        }
    }

    deinit { storage.deallocate() }

    func withKey<T>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws(BoltError) -> T) throws(BoltError) -> T {
        try body(UnsafeRawBufferPointer(start: storage + i * keySize, count: keySize))
    }

    func key(_ i: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: storage + i * keySize, count: keySize)) }
}

func temporaryPath() -> String {
    let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    return "\(dir)/keel-bench-\(getpid())-\(monotonicNanoseconds()).db"
}

func fileSize(_ path: String) -> Int64 {
    var st = stat()
    return stat(path, &st) == 0 ? Int64(st.st_size) : 0
}

/// The process's peak resident set size in bytes.
public func peakRSS() -> Int64 {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int64(usage.ru_maxrss) * 1024
}
