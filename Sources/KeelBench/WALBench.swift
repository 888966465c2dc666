import Dispatch
import KeelIO
import KeelWAL

/// `keelutl bench wal`: entries appended through KeelWAL by concurrent writers with group commit.
public struct WALBench {
    public struct Config: Sendable {
        public var directory: String
        public var entries = 10_000
        public var entrySize = 256
        public var writers = 1
        public init(directory: String) { self.directory = directory }
    }

    public struct Result: Sendable {
        public var entries: Int
        public var seconds: Double
        public var fdatasyncs: Int
        public var latency: LatencyHistogram.Snapshot

        public var entriesPerSecond: Double { Double(entries) / seconds }
        public var fdatasyncsPerSecond: Double { Double(fdatasyncs) / seconds }
        public var entriesPerFdatasync: Double { fdatasyncs > 0 ? Double(entries) / Double(fdatasyncs) : 0 }
        public func microseconds(_ q: Double) -> Double { Double(latency.percentile(q)) / 1000 }

        public var json: String {
            var json = JSONLine()
            json.add("entries", entries)
            json.add("seconds", seconds, decimals: 6)
            json.add("entries_per_sec", entriesPerSecond, decimals: 1)
            json.add("fdatasyncs_per_sec", fdatasyncsPerSecond, decimals: 1)
            json.add("entries_per_fdatasync", entriesPerFdatasync, decimals: 2)
            json.add("p50_us", microseconds(0.5), decimals: 1)
            json.add("p99_us", microseconds(0.99), decimals: 1)
            return json.description
        }
    }

    public let config: Config
    public init(config: Config) { self.config = config }

    /// Creates the WAL in the directory (as etcd does, through `DIR.tmp` and a rename), appends,
    /// closes it.
    public func run() throws -> Result {
        let fs = POSIXFileSystem()
        let wal = try WAL.create(fileSystem: fs, directory: config.directory, metadata: encodeMetadata(nodeID: 1, clusterID: 1))
        let log = GroupCommitLog(wal: wal)
        let histogram = LatencyHistogram()
        let payload = [UInt8](repeating: 0x6B, count: config.entrySize)
        let writers = max(1, config.writers)
        let failures = Locked<[String]>([])
        let group = DispatchGroup()
        let start = monotonicNanoseconds()
        for w in 0..<writers {
            let count = config.entries / writers + (w < config.entries % writers ? 1 : 0)
            let thread = Thread {
                for _ in 0..<count {
                    let t0 = monotonicNanoseconds()
                    do {
                        try log.append(term: 1, data: payload)
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                        return
                    }
                    histogram.record(nanoseconds: monotonicNanoseconds() - t0)
                }
            }
            group.enter()
            thread.run(then: { group.leave() })
        }
        group.wait()
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        if let failure = failures.withLock({ $0.first }) { throw BenchError.invalid("wal append failed: \(failure)") }
        try log.close()
        return Result(entries: config.entries, seconds: seconds, fdatasyncs: log.syncCount, latency: histogram.snapshot())
    }
}

/// A plain OS thread (writers must block in fdatasync without starving a shared pool).
final class Thread: @unchecked Sendable {
    private let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    func run(then done: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBox(body: body, done: done))
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        var thread = pthread_t()
        pthread_create(&thread, &attributes, { raw in
            let box = Unmanaged<ThreadBox>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            box.done()
            return nil
        }, box.toOpaque())
        pthread_detach(thread)
        pthread_attr_destroy(&attributes)
    }
}

private final class ThreadBox {
    let body: @Sendable () -> Void
    let done: @Sendable () -> Void
    init(body: @escaping @Sendable () -> Void, done: @escaping @Sendable () -> Void) {
        self.body = body
        self.done = done
    }
}

#if canImport(Glibc)
import Glibc
#endif
