#if canImport(Glibc)
import Glibc
#endif
import KeelBackend
import KeelIO

/// The bench workload on one `Backend`: write, point reads, a full scan, and small synced
/// transactions. Every engine runs exactly the same calls through the same protocol.
public struct StorageBench {
    public let config: BenchConfig
    /// Called with progress (0...1) and the phase name.
    public var progress: ((String, Double) -> Void)?

    public init(config: BenchConfig) {
        self.config = config
    }

    /// Runs every phase on `backend`, reporting each as it finishes.
    public func run(_ backend: any Backend, dataPath: String, report: (PhaseResult) -> Void) throws {
        if let problem = config.problem() { throw BenchError.invalid(problem) }
        startRSS.value = currentRSS()
        let keys = KeySource(config: config)
        report(try write(backend, keys, dataPath))
        report(try read(backend, keys, dataPath))
        report(try scan(backend, keys, dataPath))
        if config.smallTransactions > 0 { report(try smallTransactions(backend, keys, dataPath)) }
    }

    private func result(_ backend: any Backend, _ phase: String, ops: Int, start: UInt64, histogram: LatencyHistogram?) -> PhaseResult {
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let snapshot = histogram?.snapshot()
        let cpu = cpuSeconds() - phaseCPUStart.value
        var r = PhaseResult(backend: backend.kind, phase: phase, ops: ops, seconds: seconds,
                           p50Microseconds: snapshot.map { Double($0.percentile(0.5)) / 1000 },
                           p99Microseconds: snapshot.map { Double($0.percentile(0.99)) / 1000 },
                           fileBytes: (try? backend.size()) ?? 0, peakRSSBytes: peakRSS())
        r.cpuSeconds = cpu
        r.startRSSBytes = startRSS.value
        return r
    }

    /// Resident memory when the workload began (runtime, libraries, the opened database).
    private let startRSS = Box(Int64(0))

    /// CPU time at the start of the current phase.
    private let phaseCPUStart = Box(0.0)

    private func startPhase() -> UInt64 {
        phaseCPUStart.value = cpuSeconds()
        return monotonicNanoseconds()
    }

    private static let benchBucket: BucketPath = [Array("bench".utf8)]

    private func ensureBucket(_ tx: any BackendWriteTx, _ path: BucketPath) throws(BackendError) {
        do throws(BackendError) { try tx.createBucket(path) } catch {
            if error.category != "bucketExists" { throw error }
        }
    }

    private func write(_ backend: any Backend, _ keys: KeySource, _ dataPath: String) throws -> PhaseResult {
        let batch = config.batchSize == 0 ? config.count : config.batchSize
        let value = [UInt8](repeating: 0, count: config.valueSize)
        let histogram = LatencyHistogram()
        let start = startPhase()
        var written = 0
        try value.withUnsafeBytes { valueBytes in
            while written < config.count {
                let t0 = monotonicNanoseconds()
                let tx = try backend.beginWrite()
                try ensureBucket(tx, Self.benchBucket)
                var path = Self.benchBucket
                if config.writeMode.nested {
                    path.append(keys.key(written))
                    try ensureBucket(tx, path)
                }
                let bucket = try tx.bucket(path)
                for i in written..<(written + batch) {
                    try keys.withRawKey(i) { key throws(BackendError) in try bucket.put(key, valueBytes) }
                }
                try tx.commit()
                let t1 = monotonicNanoseconds()
                histogram.record(nanoseconds: t1 - t0)
                written += batch
                progress?("write", Double(written) / Double(config.count))
            }
        }
        return result(backend, "write", ops: config.count, start: start, histogram: histogram)
    }

    private func read(_ backend: any Backend, _ keys: KeySource, _ dataPath: String) throws -> PhaseResult {
        var order = Array(0..<config.count)
        if config.readMode == .rnd {
            var rng = SplitMix64(seed: config.seed &+ 99)
            order.shuffle(using: &rng)
        }
        let batch = config.batchSize == 0 ? config.count : config.batchSize
        let start = startPhase()
        var found = 0
        let tx = try backend.beginRead()
        defer { tx.end() }
        var bucket = try tx.bucket(Self.benchBucket)
        var currentBatch = -1
        for (n, i) in order.enumerated() {
            if config.writeMode.nested && i / batch != currentBatch {
                currentBatch = i / batch
                bucket = try tx.bucket(Self.benchBucket + [keys.key(currentBatch * batch)])
            }
            let hit = try keys.withRawKey(i) { key throws(BackendError) in try bucket.get(key) { v throws(BackendError) in v != nil } }
            if hit { found += 1 }
            if n & 0xFFFF == 0 { progress?("read", Double(n) / Double(config.count)) }
        }
        if found == 0 { throw BenchError.invalid("no key read back") }
        return result(backend, "read", ops: config.count, start: start, histogram: nil)
    }

    private func scan(_ backend: any Backend, _ keys: KeySource, _ dataPath: String) throws -> PhaseResult {
        let start = startPhase()
        var seen = 0
        let tx = try backend.beginRead()
        defer { tx.end() }
        var paths = [Self.benchBucket]
        if config.writeMode.nested { paths = try tx.buckets(in: Self.benchBucket).map { Self.benchBucket + [$0] } }
        for path in paths {
            try tx.bucket(path).range(from: UnsafeRawBufferPointer(start: nil, count: 0), to: nil, limit: 0, reverse: false) { _, _ throws(BackendError) in
                seen += 1
                return true
            }
        }
        return result(backend, "scan", ops: seen, start: start, histogram: nil)
    }

    private func smallTransactions(_ backend: any Backend, _ keys: KeySource, _ dataPath: String) throws -> PhaseResult {
        let histogram = LatencyHistogram()
        let value = [UInt8](repeating: 1, count: config.valueSize)
        let n = config.smallTransactions
        let small: BucketPath = [Array("small".utf8)]
        let setup = try backend.beginWrite()
        try ensureBucket(setup, small)
        try setup.commit()
        let start = startPhase()
        try value.withUnsafeBytes { valueBytes in
            for i in 0..<n {
                let t0 = monotonicNanoseconds()
                let tx = try backend.beginWrite()
                let bucket = try tx.bucket(small)
                try keys.withRawKey(i % config.count) { key throws(BackendError) in try bucket.put(key, valueBytes) }
                try tx.commit()
                histogram.record(nanoseconds: monotonicNanoseconds() - t0)
                if i & 0x3FF == 0 { progress?("small-txn", Double(i) / Double(n)) }
            }
        }
        return result(backend, "small-txn", ops: n, start: start, histogram: histogram)
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

    func withRawKey<T>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws(BackendError) -> T) throws(BackendError) -> T {
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
public func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

final class Box<T> {
    var value: T
    init(_ value: T) { self.value = value }
}

public func peakRSS() -> Int64 {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int64(usage.ru_maxrss) * 1024
}
