#if canImport(Glibc)
import Glibc
#endif
import KeelIO
import KeelRaft

/// `keelutl bench raft`: proposals committed per second in a 3-node in-memory KeelRaft cluster
/// (no disk, no network): the leader keeps `inflight` proposals outstanding, every node's Ready
/// is persisted to a MemoryStorage, messages are stepped straight into their target.
/// Benchmarks/etcdraft runs the same loop on etcd 3.4's raft.
public struct RaftBench {
    public struct Config: Sendable {
        public var count = 200_000
        public var inflight = 1
        public var entryBytes = 128
        public init() {}
    }

    public struct Result: Sendable {
        public var inflight: Int
        public var count: Int
        public var entryBytes: Int
        public var seconds: Double
        /// Allocations per committed entry, when the counter is preloaded (nil otherwise).
        public var allocationsPerEntry: Double?

        public var json: String {
            var j = JSONLine()
            j.add("impl", "keel-raft")
            j.add("inflight", inflight)
            j.add("count", count)
            j.add("entry_bytes", entryBytes)
            j.add("seconds", seconds, decimals: 4)
            j.add("ops_per_sec", Double(count) / seconds, decimals: 0)
            if let a = allocationsPerEntry { j.add("allocs_per_entry", a, decimals: 3) }
            return j.description
        }
    }

    public let config: Config
    public init(config: Config) { self.config = config }

    /// The allocation counter of libKeelMallocCount.so, if it was preloaded.
    static let mallocCount: (@convention(c) () -> UInt64)? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "keel_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) () -> UInt64).self)
    }()

    final class Cluster {
        var nodes: [RawNode] = []
        var storages: [MemoryStorage] = []
        var queue: [RaftMessage] = []
        var spare: [RaftMessage] = []

        init() throws {
            for id in UInt64(1)...3 {
                let s = MemoryStorage()
                try s.applySnapshot(RaftSnapshot(index: 1, term: 1, confState: ConfState(voters: [1, 2, 3])))
                var c = RaftConfig(id: id)
                c.electionTicks = 10
                c.heartbeatTicks = 1
                c.applied = 1
                c.maxSizePerMessage = 1 << 20
                c.maxInflightMessages = 256
                c.checkQuorum = true
                storages.append(s)
                nodes.append(try RawNode(config: c, storage: s))
            }
        }

        /// Runs every node until there is nothing left to do; returns the entries node 1 applied.
        func pump() throws -> Int {
            var applied = 0
            while true {
                var busy = false
                for i in nodes.indices where nodes[i].hasReady {
                    busy = true
                    let rd = try nodes[i].ready()
                    if let hs = rd.hardState { storages[i].setHardState(hs) }
                    try storages[i].append(rd.entries)
                    queue.append(contentsOf: rd.messages)
                    if i == 0 { for e in rd.committedEntries where e.type == .normal && !e.data.isEmpty { applied += 1 } }
                    try nodes[i].advance(rd)
                }
                if !queue.isEmpty {
                    busy = true
                    swap(&queue, &spare)
                    for m in spare { try nodes[Int(m.to) - 1].step(m) }
                    spare.removeAll(keepingCapacity: true)
                }
                if !busy { return applied }
            }
        }
    }

    public func run() throws -> Result {
        let cluster = try Cluster()
        try cluster.nodes[0].campaign()
        _ = try cluster.pump()
        guard cluster.nodes[0].status.role == .leader else { throw RaftError.corrupt("node 1 did not become leader") }
        let data = [UInt8](repeating: 0x6B, count: config.entryBytes)
        let allocs0 = Self.mallocCount?()
        let start = monotonicNanoseconds()
        var proposed = 0, applied = 0
        while applied < config.count {
            while proposed - applied < config.inflight && proposed < config.count {
                try cluster.nodes[0].propose(data)
                proposed += 1
            }
            applied += try cluster.pump()
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let allocs = allocs0.flatMap { a in Self.mallocCount.map { Double($0() - a) / Double(config.count) } }
        return Result(inflight: config.inflight, count: config.count, entryBytes: config.entryBytes, seconds: seconds, allocationsPerEntry: allocs)
    }
}
