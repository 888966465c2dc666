import KeelIO

/// How keys are generated and written, as `bbolt bench -write-mode`.
public enum WriteMode: String, Sendable, CaseIterable {
    /// Big-endian counter keys, ascending.
    case seq
    /// Random keys.
    case rnd
    /// seq, with one nested bucket per batch.
    case seqNest = "seq-nest"
    /// rnd, with one nested bucket per batch.
    case rndNest = "rnd-nest"

    var random: Bool { self == .rnd || self == .rndNest }
    var nested: Bool { self == .seqNest || self == .rndNest }
}

/// The order of point reads, as `bbolt bench -read-mode`.
public enum ReadMode: String, Sendable, CaseIterable {
    case seq
    case rnd
}

/// One benchmark run's parameters (bbolt bench's flags, plus Keel's phases).
public struct BenchConfig: Sendable {
    /// Database path; a temporary file when nil.
    public var path: String?
    /// Keep the file afterwards.
    public var keep = false
    /// Keys to write.
    public var count = 1000
    /// Keys per write transaction; 0 means all in one.
    public var batchSize = 0
    public var keySize = 8
    public var valueSize = 32
    public var writeMode = WriteMode.seq
    public var readMode = ReadMode.seq
    public var fillPercent = 0.5
    /// Skip fdatasync (unsafe, like bbolt's -no-sync).
    public var noSync = false
    /// Single-put synced commits in the small-transaction phase (0 skips it).
    public var smallTransactions = 10_000
    /// Seed for random keys and read order.
    public var seed: UInt64 = 1
    public var pageSize = 4096

    public init() {}

    /// Checks the parameters; returns a message for the first problem.
    public func problem() -> String? {
        if count <= 0 { return "--count must be positive" }
        if batchSize < 0 { return "--batch-size must not be negative" }
        if batchSize > 0 && count % batchSize != 0 { return "number of iterations must be divisible by the batch size" }
        if keySize < 4 || keySize > 32768 { return "--key-size must be between 4 and 32768 (the first 4 bytes hold the counter)" }
        if valueSize < 0 { return "--value-size must not be negative" }
        if fillPercent < 0.1 || fillPercent > 1.0 { return "--fill-percent must be between 0.1 and 1.0" }
        if smallTransactions < 0 { return "--small-txns must not be negative" }
        return nil
    }
}

/// The measurement of one phase.
public struct PhaseResult: Sendable {
    public var backend: String
    public var phase: String
    public var ops: Int
    public var seconds: Double
    /// Per-operation latency percentiles where the phase measures them (transactions).
    public var p50Microseconds: Double?
    public var p99Microseconds: Double?
    /// The file's size after the phase, and the process's peak resident memory so far.
    public var fileBytes: Int64
    public var peakRSSBytes: Int64
    /// User + system CPU seconds the phase used (steadier than wall time on a shared machine).
    public var cpuSeconds: Double = 0
    /// Resident memory when the workload began (0: not measured), so that memory the engine
    /// used can be told from the runtime's and libraries' own.
    public var startRSSBytes: Int64 = 0

    public init(backend: String, phase: String, ops: Int, seconds: Double, p50Microseconds: Double?, p99Microseconds: Double?,
                fileBytes: Int64, peakRSSBytes: Int64) {
        self.backend = backend
        self.phase = phase
        self.ops = ops
        self.seconds = seconds
        self.p50Microseconds = p50Microseconds
        self.p99Microseconds = p99Microseconds
        self.fileBytes = fileBytes
        self.peakRSSBytes = peakRSSBytes
    }

    public var opsPerSecond: Double { seconds > 0 ? Double(ops) / seconds : 0 }

    /// One JSON object on one line.
    public var json: String {
        var json = JSONLine()
        json.add("backend", backend)
        json.add("phase", phase)
        json.add("ops", ops)
        json.add("seconds", seconds, decimals: 6)
        json.add("ops_per_sec", opsPerSecond, decimals: 1)
        if let p50 = p50Microseconds { json.add("p50_us", p50, decimals: 1) }
        if let p99 = p99Microseconds { json.add("p99_us", p99, decimals: 1) }
        json.add("cpu_seconds", cpuSeconds, decimals: 6)
        json.add("file_bytes", fileBytes)
        json.add("peak_rss_bytes", peakRSSBytes)
        if startRSSBytes > 0 { json.add("start_rss_bytes", startRSSBytes) }
        return json.description
    }

    /// A line for people, like bbolt bench's.
    public var text: String {
        var line = "# \(padded(phase, 9))\t\(ops)(ops)\t\(format(seconds, 3))s\t(\(format(seconds / Double(max(ops, 1)) * 1e9, 0))ns/op)\t(\(format(opsPerSecond, 0)) op/sec)"
        if let p50 = p50Microseconds, let p99 = p99Microseconds { line += "\tp50 \(format(p50, 0))us p99 \(format(p99, 0))us" }
        return line
    }
}

func format(_ value: Double, _ decimals: Int) -> String { formatDecimal(value, decimals) }

func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
