
/// A thread-safe histogram of durations with bounded memory: log2 buckets of nanoseconds, each cut
/// into 64 linear sub-buckets (about 1.5% resolution), from 1 ns to about 5 hours.
///
/// Every fdatasync the POSIX file system performs is recorded in `FileSyncLatency.shared`, which
/// the disk profiler and the metrics endpoint read.
public final class LatencyHistogram: Sendable {
    static let subBuckets = 64
    static let subBucketBits = 6
    static let majorBuckets = 42
    private struct State {
        var counts = [UInt64](repeating: 0, count: LatencyHistogram.subBuckets * LatencyHistogram.majorBuckets)
        var total: UInt64 = 0
        var sumNanoseconds: UInt64 = 0
        var maxNanoseconds: UInt64 = 0
    }
    private let state = Locked(State())

    public init() {}

    static func bucketIndex(_ ns: UInt64) -> Int {
        let value = max(ns, 1)
        let log = 63 - value.leadingZeroBitCount  // floor(log2)
        if log < subBucketBits { return Int(value) }  // 1...63 map 1:1 into the first sub-buckets
        let sub = Int((value >> UInt64(log - subBucketBits)) & UInt64(subBuckets - 1))
        let index = (log - subBucketBits + 1) * subBuckets + sub
        return min(index, subBuckets * majorBuckets - 1)
    }

    static func bucketUpperBound(_ index: Int) -> UInt64 {
        if index < subBuckets { return UInt64(index) }
        let log = index / subBuckets + subBucketBits - 1
        let sub = UInt64(index % subBuckets)
        return ((UInt64(subBuckets) + sub + 1) << UInt64(log - subBucketBits)) - 1
    }

    /// Records one duration.
    public func record(nanoseconds: UInt64) {
        let index = Self.bucketIndex(nanoseconds)
        state.withLock { s in
            s.counts[index] &+= 1
            s.total &+= 1
            s.sumNanoseconds &+= nanoseconds
            s.maxNanoseconds = max(s.maxNanoseconds, nanoseconds)
        }
    }

    /// A consistent copy of the histogram.
    public func snapshot() -> Snapshot {
        state.withLock { s in
            Snapshot(counts: s.counts, total: s.total, sumNanoseconds: s.sumNanoseconds, maxNanoseconds: s.maxNanoseconds)
        }
    }

    /// Clears every count.
    public func reset() { state.withLock { $0 = State() } }

    /// A frozen copy of a histogram, with percentile queries.
    public struct Snapshot: Sendable {
        let counts: [UInt64]
        /// The number of recorded durations.
        public let total: UInt64
        /// The sum of all durations.
        public let sumNanoseconds: UInt64
        /// The largest duration seen.
        public let maxNanoseconds: UInt64

        /// The duration at quantile `q` (0...1): an upper bound within about 1.5%, never above the maximum.
        public func percentile(_ q: Double) -> UInt64 {
            guard total > 0 else { return 0 }
            let rank = max(1, UInt64((Double(total) * min(max(q, 0), 1)).rounded(.up)))
            var seen: UInt64 = 0
            for (index, count) in counts.enumerated() where count > 0 {
                seen += count
                if seen >= rank { return min(LatencyHistogram.bucketUpperBound(index), maxNanoseconds) }
            }
            return maxNanoseconds
        }

        /// How many durations were at most `nanoseconds` (bucket resolution).
        public func count(atMost nanoseconds: UInt64) -> UInt64 {
            var sum: UInt64 = 0
            for (index, count) in counts.enumerated() where count > 0 {
                if LatencyHistogram.bucketUpperBound(index) <= nanoseconds { sum += count }
            }
            return sum
        }
    }
}

/// The process-wide record of fdatasync latencies on real files.
public enum FileSyncLatency {
    /// Every `sync()` of a `POSIXFileSystem` handle lands here.
    public static let shared = LatencyHistogram()
}

/// A monotonic clock in nanoseconds.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
