import KeelIO

/// Measures what etcd's durability costs on a disk: the latency of fdatasync after WAL-like
/// appends (etcd's recommended check: 2,300-byte writes, fdatasync after each, 22 MiB in all)
/// and of backend-like commits (a batch of 4 KiB page writes, fdatasync, a meta page,
/// fdatasync). It writes only inside its directory and removes its files.
public struct DiskProfiler {
    public struct Config: Sendable {
        public var directory: String
        /// Bytes per WAL-like write and the total written (etcd's fio recipe).
        public var walWriteBytes = 2300
        public var walTotalBytes = 22 * 1024 * 1024
        /// Backend-like commits: pages per commit, and how many commits.
        public var commitPages = 16
        public var commits = 200

        public init(directory: String) { self.directory = directory }
    }

    /// Latencies of one kind of sync.
    public struct Measurement: Sendable {
        public var name: String
        public var operations: Int
        public var seconds: Double
        public var histogram: LatencyHistogram.Snapshot

        public var iops: Double { seconds > 0 ? Double(operations) / seconds : 0 }
        public func microseconds(_ q: Double) -> Double { Double(histogram.percentile(q)) / 1000 }
        public var maxMicroseconds: Double { Double(histogram.maxNanoseconds) / 1000 }

        /// Counts per bucket of etcd's `etcd_disk_wal_fsync_duration_seconds`
        /// (0.001 s doubling to 8.192 s, then +Inf), cumulative as Prometheus reports them.
        public func etcdBuckets() -> [(le: String, count: UInt64)] {
            var result: [(String, UInt64)] = []
            var bound = 0.001
            for _ in 0..<14 {
                result.append((String(bound), histogram.count(atMost: UInt64(bound * 1e9))))
                bound *= 2
            }
            result.append(("+Inf", histogram.total))
            return result
        }
    }

    public let config: Config
    public let fileSystem: POSIXFileSystem

    public init(config: Config) {
        self.config = config
        fileSystem = POSIXFileSystem(syncLatency: LatencyHistogram())
    }

    /// WAL-like appends: sequential writes of `walWriteBytes`, fdatasync after each; the
    /// latencies are of the fdatasyncs.
    public func profileWAL() throws(IOError) -> Measurement {
        let path = joinPath(config.directory, "keel-disk-profile-wal.\(monotonicNanoseconds()).tmp")
        let file = try fileSystem.open(path, options: OpenOptions(writable: true, create: true, exclusive: true))
        defer {
            file.close()
            try? fileSystem.remove(path)
        }
        let chunk = [UInt8](repeating: 0x5A, count: config.walWriteBytes)
        let histogram = LatencyHistogram()
        var offset: Int64 = 0
        var operations = 0
        let start = monotonicNanoseconds()
        while offset < Int64(config.walTotalBytes) {
            try file.write(chunk, at: offset)
            // Only the fdatasync is timed, as etcd's wal_fsync_duration and fio's sync latency are.
            let t0 = monotonicNanoseconds()
            try file.sync()
            histogram.record(nanoseconds: monotonicNanoseconds() - t0)
            offset += Int64(chunk.count)
            operations += 1
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        return Measurement(name: "wal", operations: operations, seconds: seconds, histogram: histogram.snapshot())
    }

    /// Backend-like commits: `commitPages` 4 KiB pages at scattered offsets of a preallocated
    /// file, fdatasync, then one page at offset 0 (the meta), fdatasync.
    public func profileBackend() throws(IOError) -> Measurement {
        let path = joinPath(config.directory, "keel-disk-profile-db.\(monotonicNanoseconds()).tmp")
        let file = try fileSystem.open(path, options: OpenOptions(writable: true, create: true, exclusive: true))
        defer {
            file.close()
            try? fileSystem.remove(path)
        }
        let pageCount: Int64 = 4096
        try file.preallocate(offset: 0, length: pageCount * 4096, keepSize: false)
        try file.sync()
        let page = [UInt8](repeating: 0xA5, count: 4096)
        var rng = SplitMix64(seed: 7)
        let histogram = LatencyHistogram()
        let start = monotonicNanoseconds()
        for _ in 0..<config.commits {
            let t0 = monotonicNanoseconds()
            for _ in 0..<config.commitPages {
                try file.write(page, at: Int64(2 + rng.next() % UInt64(pageCount - 2)) * 4096)
            }
            try file.sync()
            try file.write(page, at: 0)
            try file.sync()
            histogram.record(nanoseconds: monotonicNanoseconds() - t0)
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        return Measurement(name: "backend-commit", operations: config.commits, seconds: seconds, histogram: histogram.snapshot())
    }

    /// etcd's guidance: WAL fdatasync p99 under 10 ms.
    public static func verdict(_ wal: Measurement) -> String {
        let p99 = wal.microseconds(0.99)
        if p99 < 10_000 {
            return "OK for etcd: WAL fdatasync p99 \(Int(p99)) us is under 10 ms; one writer can sustain about \(Int(wal.iops)) synced appends/s"
        }
        return "TOO SLOW for etcd: WAL fdatasync p99 \(Int(p99)) us is over 10 ms; expect leader elections and slow requests under load"
    }
}
