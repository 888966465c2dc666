import Foundation
import KeelBackend
import KeelBolt
import KeelIO
import KeelMVCC
import KeelProto
import KeelRaft
import KeelWAL
import SwiftProtobuf

/// The raft node driver: one thread ticks KeelRaft, persists each Ready to etcd's WAL (and
/// fdatasyncs it) **before** sending its messages or applying its committed entries, applies
/// committed `InternalRaftRequest`s to KeelMVCC in log order (the raft index stored as the
/// consistent index in the same backend transaction), and answers the waiting proposers.
///
/// Data directory layout is etcd's: `member/wal/*.wal`, `member/snap/db`. On restart the WAL is
/// replayed into the raft log and entries at or below the backend's consistent index are not
/// applied twice. Single member for now; the message transport is a closure the cluster layer
/// will supply.
/// The storage engines a node can run on.
public enum BackendKind: String, Sendable, CaseIterable {
    case bolt, lmdb, crosscheck
}

public final class RaftNode: @unchecked Sendable {
    public struct Config: Sendable {
        public var dataDirectory: String
        public var memberID: UInt64 = 0x8e9e05c52164694d
        public var clusterID: UInt64 = 0xcdf818194e3a8c32
        /// Initial members (ID, member JSON for the bootstrap entries) of a new cluster.
        public var peers: [UInt64: [UInt8]] = [:]
        public var tickMilliseconds = 100
        public var electionTicks = 10
        public var heartbeatTicks = 1
        public var kvOptions = KVStore.Options()
        /// Where the backend file is (default `<data dir>/member/snap/db`); the backend always
        /// uses the real file system, the WAL the one given to `start`.
        public var backendPath: String?
        /// A separate WAL directory (etcd's `--wal-dir`); default `<data dir>/member/wal`.
        public var walDirectory: String?
        /// The storage engine under MVCC: `bolt` (etcd's file format, `member/snap/db`), `lmdb`
        /// (an LMDB environment in `member/snap/db.lmdb`), or `crosscheck` (both, every
        /// operation compared; bolt answers).
        public var backendKind: BackendKind = .bolt
        /// The largest encoded request accepted (etcd's `--max-request-bytes`, 1.5 MiB).
        public var maxRequestBytes = 1_572_864
        /// Applied entries between snapshots (etcd's `--snapshot-count`).
        public var snapshotCount: UInt64 = 100_000
        /// Entries kept in the raft log behind a snapshot for slow followers (etcd: 5000).
        public var snapshotCatchUpEntries: UInt64 = 5000
        /// `.snap` files and WAL segments kept (etcd's `--max-snapshots`, `--max-wals`; 0: all).
        public var maxSnapshots = 5
        public var maxWALs = 5
        /// The members written into each `.snap` (etcd's v2 store); default: this member
        /// with etcd's default name and URLs.
        public var members: [V2Member] = []
        /// Where the node reports what an operator wants to see (WAL replay progress, snapshots,
        /// purged files): a message and fields. Called on the driver thread; must not block.
        public var log: (@Sendable (String, [String: String]) -> Void)?
        public init(dataDirectory: String) { self.dataDirectory = dataDirectory }
    }

    /// The configuration; on restart the member and cluster IDs are the WAL's (as etcd: they
    /// were fixed when the member was created), whatever the caller passed.
    public private(set) var config: Config
    /// The store requests are applied to (read it directly for serializable reads).
    public let kv: KVStore
    /// Durations and counters for `/metrics`.
    public let metrics = NodeMetrics()
    private var lastLeader: UInt64 = 0
    private let fs: any FileSystem
    private let backend: any Backend
    private let storage: MemoryStorage
    private let raw: RawNode
    private let wal: WAL
    private let lock = NSCondition()
    private var inbox: [(request: Etcdserverpb_InternalRaftRequest, data: [UInt8], since: Date)] = []
    private var readInbox: [(context: [UInt8], done: @Sendable (Result<Void, NodeError>) -> Void)] = []
    /// Work that must run on the driver thread (it owns the backend's write transaction:
    /// LMDB ties a write transaction to the thread that began it).
    private var chores: [@Sendable () -> Void] = []
    private var watchSyncWanted = false
    private var waiters: [UInt64: @Sendable (Result<AppliedResult, NodeError>) -> Void] = [:]
    private var readWaiters: [[UInt8]: @Sendable (Result<Void, NodeError>) -> Void] = [:]
    /// Read points raft confirmed, waiting for the applied index to reach them.
    private var confirmedReads: [(index: UInt64, done: @Sendable (Result<Void, NodeError>) -> Void)] = []
    private var ids: LeaseIDGenerator
    private var readCounter: UInt64 = 0
    private var stopping = false
    private var failure: NodeError?
    private var thread: Thread?
    private let finished = NSCondition()
    private var running = false
    /// The last index applied to the store (driver thread).
    private var appliedIndex: UInt64 = 0
    /// Whether this member was leader at the last tick (leases expire only on the leader).
    private var wasLeader = false
    private var tickCount = 0
    /// Expired leases whose revoke is proposed and not yet applied.
    private var revoking: Set<Int64> = []
    /// The index of the newest `.snap` (0: none).
    private var snapshotIndex: UInt64 = 0
    /// The last log index at start and when replay progress was last reported.
    private var replayTarget: UInt64 = 0
    private var replayReported = Date()

    /// Where the driver sends messages to peers (none for a single member). Called on the
    /// driver thread after the Ready is durable; it must only enqueue.
    public var transport: (@Sendable ([RaftMessage]) -> Void)?

    /// Opens the data directory (bootstrapping a new single-member cluster when it has no WAL)
    /// and starts the driver thread.
    public static func start(config: Config, fileSystem: any FileSystem = POSIXFileSystem()) throws(NodeError) -> RaftNode {
        let node = try RaftNode(config: config, fileSystem: fileSystem)
        node.run()
        return node
    }

    init(config: Config, fileSystem fs: any FileSystem) throws(NodeError) {
        self.config = config
        self.fs = fs
        let member = config.dataDirectory + "/member"
        let walDir = config.walDirectory ?? member + "/wal", snapDir = member + "/snap"
        do {
            try fs.makeDirectoryDurably(snapDir)
        } catch {
            throw NodeError.dataDirectory("cannot create \(snapDir): \(error)")
        }
        do {
            // A second node on the same data directory gets a clear error instead of waiting
            // (bolt's file lock; for LMDB alone, the WAL's segment locks below).
            var options = KeelBolt.Options()
            options.lockTimeout = 1
            let boltPath = config.backendPath ?? snapDir + "/db"
            let lmdbPath = snapDir + "/db.lmdb"
            switch config.backendKind {
            case .bolt:
                backend = try BoltBackend(path: boltPath, options: options)
            case .lmdb:
                try? fs.makeDirectoryDurably(lmdbPath)
                backend = try LMDBBackend(path: lmdbPath)
            case .crosscheck:
                let bolt = try BoltBackend(path: boltPath, options: options)
                try? fs.makeDirectoryDurably(lmdbPath)
                do {
                    backend = CrossCheckedBackend(primary: bolt, secondary: try LMDBBackend(path: lmdbPath))
                } catch {
                    try? bolt.close()
                    throw error
                }
            }
        } catch {
            throw NodeError.dataDirectory("cannot open the \(config.backendKind.rawValue) backend in \(snapDir) (is another keel or etcd using this data directory?): \(error)")
        }
        storage = MemoryStorage()
        let fresh = !fs.exists(walDir)
        do {
            var contents: WAL.Contents?
            if fresh {
                wal = try WAL.create(fileSystem: fs, directory: walDir, metadata: encodeMetadata(nodeID: config.memberID, clusterID: config.clusterID))
            } else {
                let (opened, snap, c) = try RaftNode.openWAL(fs: fs, walDir: walDir, snapDir: snapDir, log: config.log)
                wal = opened
                contents = c
                if let snap {
                    try storage.applySnapshot(snap)
                    snapshotIndex = snap.index
                    (v2Attributes, v2ClusterVersion) = try V2Store.published(snap.data, file: "the snapshot at index \(snap.index) in \(snapDir)")
                }
                if let meta = try? Etcdserverpb_Metadata(serializedBytes: c.metadata), meta.nodeID != 0,
                   meta.nodeID != config.memberID || meta.clusterID != config.clusterID {
                    config.log?("member and cluster IDs come from the WAL", ["member-id": String(meta.nodeID, radix: 16), "cluster-id": String(meta.clusterID, radix: 16)])
                    let configured = config.memberID
                    self.config.memberID = meta.nodeID
                    self.config.clusterID = meta.clusterID
                    self.config.members = config.members.map { m in
                        var m = m
                        if m.id == configured { m.id = meta.nodeID }
                        return m
                    }
                }
            }
            var raftConfig = RaftConfig(id: self.config.memberID)
            raftConfig.electionTicks = config.electionTicks
            raftConfig.heartbeatTicks = config.heartbeatTicks
            raftConfig.checkQuorum = true
            raftConfig.maxInflightMessages = 256
            raftConfig.maxUncommittedEntriesSize = 1 << 30
            if let contents {
                try storage.append(contents.entries.map { RaftEntry(term: $0.term, index: $0.index, type: EntryType(rawValue: $0.type) ?? .normal, data: $0.data) })
                let hs = contents.hardState
                storage.setHardState(RaftHardState(term: hs.term, vote: hs.vote, commit: hs.commit))
                raw = try RawNode(config: raftConfig, storage: storage)
            } else {
                raw = try RawNode(config: raftConfig, storage: storage)
                let peers = config.peers.isEmpty ? [(config.memberID, [UInt8]())] : config.peers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
                try raw.bootstrap(peers: peers)
            }
        } catch let e as WALError {
            try? backend.close()
            throw NodeError.dataDirectory("WAL \(walDir): \(e)")
        } catch let e as RaftError {
            try? backend.close()
            throw NodeError.dataDirectory("raft state in \(walDir): \(e)")
        } catch {
            try? backend.close()
            throw NodeError.dataDirectory("\(walDir): \(error)")
        }
        ids = LeaseIDGenerator(memberID: self.config.memberID)
        // The backend must belong with this WAL and snapshot; checked by reading before the
        // store opens (and writes anything), so a refused directory is left as it was.
        do {
            try RaftNode.checkBackend(backend, memberID: self.config.memberID, snapshotIndex: fresh ? 0 : snapshotIndex,
                                      path: config.backendKind == .lmdb ? snapDir + "/db.lmdb" : snapDir + "/db")
        } catch {
            try? wal.close()
            try? backend.close()
            throw error
        }
        do {
            var options = config.kvOptions
            options.memberID = self.config.memberID
            kv = try KVStore(backend: backend, options: options)
        } catch {
            try? wal.close()
            try? backend.close()
            throw NodeError.dataDirectory("cannot load the store from \(snapDir)/db: \(error)")
        }
        appliedIndex = kv.consistentIndex
        replayTarget = fresh ? 0 : storage.lastIndex()
        if replayTarget > appliedIndex {
            config.log?("replaying the WAL", ["from-index": "\(appliedIndex + 1)", "to-index": "\(replayTarget)"])
        }
        // Leases expire only once this member leads (see manageLeases).
        kv.demote()
        do { try kv.prepareServerBuckets() } catch {
            throw NodeError.dataDirectory("cannot prepare the store in \(snapDir): \(error)")
        }
        // Opening the store may have begun a batch on this (the caller's) thread. LMDB ties a
        // write transaction to the thread that began it, so it is committed here and the
        // driver thread begins every later one.
        do { try kv.forceCommit() } catch {
            throw NodeError.dataDirectory("cannot commit the store opened from \(snapDir): \(error)")
        }
    }

    // MARK: Requests

    /// Proposes a request through raft and waits until it is applied; returns what applying it
    /// produced. Acknowledged only after its entry is in the fdatasync'd WAL and applied.
    public func propose(_ request: Etcdserverpb_InternalRaftRequest) async throws(NodeError) -> AppliedResult {
        let result: Result<AppliedResult, NodeError> = await withCheckedContinuation { continuation in
            submit(request) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// The callback form of `propose`. `done` runs on the driver thread while it holds the
    /// node's lock: it must hand the result off (resume a continuation, enqueue) and must not
    /// call back into the node.
    public func submit(_ request: Etcdserverpb_InternalRaftRequest, done: @escaping @Sendable (Result<AppliedResult, NodeError>) -> Void) {
        var r = request
        lock.lock()
        if let f = failure ?? (stopping ? NodeError.stopped : nil) {
            lock.unlock()
            done(.failure(f))
            return
        }
        let id = UInt64(bitPattern: ids.next())
        r.header.id = id
        // As etcd: a lease ID is chosen before proposing, so every member applies the same one.
        if r.hasLeaseGrant && r.leaseGrant.id == 0 { r.leaseGrant.id = ids.next() & Int64.max }
        let data: [UInt8] = (try? r.serializedBytes()) ?? []
        if data.count > config.maxRequestBytes {
            lock.unlock()
            done(.failure(.requestTooLarge))
            return
        }
        waiters[id] = done
        inbox.append((r, data, Date()))
        lock.signal()
        lock.unlock()
    }

    /// Waits until the store reflects everything committed before the call (a ReadIndex round,
    /// then the applied index catching up): a linearizable read may then read `kv`.
    public func linearizableBarrier() async throws(NodeError) {
        let result: Result<Void, NodeError> = await withCheckedContinuation { continuation in
            lock.lock()
            if let f = failure ?? (stopping ? NodeError.stopped : nil) {
                lock.unlock()
                continuation.resume(returning: .failure(f))
                return
            }
            readCounter += 1
            var ctx = [UInt8](repeating: 0, count: 8)
            for i in 0..<8 { ctx[i] = UInt8(truncatingIfNeeded: readCounter >> (56 - 8 * UInt64(i))) }
            readInbox.append((ctx, { continuation.resume(returning: $0) }))
            lock.signal()
            lock.unlock()
        }
        try result.get()
    }

    /// Runs `body` on the driver thread, between Readies, and returns its result. Everything
    /// that commits or rewrites the backend from outside the apply path (defragment, backend
    /// snapshots, hashes) goes through here: the driver owns the backend's write transaction.
    public func perform<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            lock.lock()
            if let f = failure ?? (stopping ? NodeError.stopped : nil) {
                lock.unlock()
                continuation.resume(returning: .failure(f))
                return
            }
            chores.append { continuation.resume(returning: Result { try body() }) }
            lock.signal()
            lock.unlock()
        }
        return try result.get()
    }

    /// Asks the driver to let watchers catch up from the backend now (a watch from a past
    /// revision was created) instead of at the next tick.
    public func requestWatchSync() {
        lock.lock()
        watchSyncWanted = true
        lock.signal()
        lock.unlock()
    }

    /// What etcd's Maintenance/Status reports about a member (the gRPC layer adds the version).
    public struct MemberStatus: Sendable {
        public var memberID: UInt64
        public var clusterID: UInt64
        public var leader: UInt64
        public var raftTerm: UInt64
        /// The last index in the raft log (etcd's `raftIndex`).
        public var raftIndex: UInt64
        public var raftAppliedIndex: UInt64
        public var dbSize: Int64
        public var dbSizeInUse: Int64
        public var isLearner: Bool
    }

    /// The member's status for Maintenance/Status and `etcdctl endpoint status`.
    public func memberStatus() -> MemberStatus {
        lock.lock()
        let st = raw.status
        let last = storage.lastIndex()
        let applied = appliedIndex
        lock.unlock()
        return MemberStatus(memberID: config.memberID, clusterID: config.clusterID, leader: st.lead, raftTerm: st.term,
                            raftIndex: last, raftAppliedIndex: applied,
                            dbSize: (try? backend.size()) ?? 0, dbSizeInUse: (try? backend.sizeInUse()) ?? 0,
                            isLearner: st.confState.learners.contains(config.memberID))
    }

    /// Why the node stopped on its own (a failed fdatasync, a damaged entry), or nil while
    /// it runs or after a normal `stop()`.
    public var fatalError: NodeError? {
        lock.lock()
        defer { lock.unlock() }
        return failure
    }

    /// The current voters and learners.
    public var membership: (voters: [UInt64], learners: [UInt64]) {
        lock.lock()
        defer { lock.unlock() }
        let cs = raw.confState
        return (cs.voters.sorted(), cs.learners.sorted())
    }

    /// The leader's ID (0: none known) and the raft term, cheaply (every response header).
    public var leaderAndTerm: (leader: UInt64, term: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        return (raw.lead, raw.term)
    }

    /// Hands leadership to `target` (etcd's MoveLeader) and waits until it leads, up to
    /// `timeout` seconds. Only the leader may do this; `target` must be a voter.
    public func moveLeader(to target: UInt64, timeout: Double) async throws(NodeError) {
        try beginTransfer(to: target)
        let deadline = Date().addingTimeInterval(timeout)
        while leaderAndTerm.leader != target {
            if Date() > deadline { throw NodeError.timedOut("request timed out, leader transfer took too long") }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    private func beginTransfer(to target: UInt64) throws(NodeError) {
        lock.lock()
        defer { lock.unlock() }
        if let f = failure ?? (stopping ? NodeError.stopped : nil) { throw f }
        guard raw.role == .leader else { throw NodeError.notLeader }
        guard raw.confState.voters.contains(target) else { throw NodeError.badLeaderTransferee }
        if raw.lead != target {
            raw.transferLeader(to: target)
            lock.signal()
        }
    }

    /// Raft's status (term, leader, commit, applied, …).
    public var status: RaftStatus {
        lock.lock()
        defer { lock.unlock() }
        return raw.status
    }

    /// Stops the driver: requests not yet applied fail with `.stopped`, the WAL and the store
    /// are closed. Idempotent.
    public func stop() {
        lock.lock()
        stopping = true
        lock.signal()
        lock.unlock()
        finished.lock()
        while running { finished.wait() }
        finished.unlock()
    }

    // MARK: The driver

    private func run() {
        running = true
        let t = Thread { [self] in
            loop()
            finished.lock()
            running = false
            finished.broadcast()
            finished.unlock()
        }
        t.name = "keel-raft-node"
        thread = t
        t.start()
    }

    private func loop() {
        let tick = Double(config.tickMilliseconds) / 1000
        var nextTick = Date().addingTimeInterval(tick)
        // Persist and apply what the log already holds (the bootstrap entries of a new
        // cluster, the replayed WAL of an old one); then a single member elects itself at once
        // instead of waiting an election timeout.
        lock.lock()
        do {
            try processReadies()
            if raw.confState.voters == [config.memberID] {
                try? raw.campaign()
                try processReadies()
            }
        } catch {
            failure = error
            stopping = true
        }
        lock.unlock()
        // Proposals wait this long for a leader before failing with `.noLeader`.
        let leaderWait = Double(config.electionTicks * config.tickMilliseconds * 2) / 1000
        while true {
            lock.lock()
            while (inbox.isEmpty || raw.lead == 0) && readInbox.isEmpty && chores.isEmpty && !watchSyncWanted && !stopping && !raw.hasReady && Date() < nextTick {
                _ = lock.wait(until: nextTick)
            }
            if stopping {
                lock.unlock()
                break
            }
            var syncWatchers = watchSyncWanted
            if Date() >= nextTick {
                raw.tick()
                tickCount += 1
                manageLeases()
                nextTick = Date().addingTimeInterval(tick)
                syncWatchers = true
            }
            watchSyncWanted = false
            let work = chores
            chores = []
            if !work.isEmpty || syncWatchers {
                // Outside the lock: chores may take a while (defragment, snapshot export).
                lock.unlock()
                for chore in work { chore() }
                // Watchers catch up from the backend (etcd's sync loop, every tick here).
                if syncWatchers { try? kv.syncWatchers() }
                lock.lock()
            }
            var proposals = inbox
            inbox = []
            if raw.lead == 0 {
                // No leader yet: keep waiting a while, then fail.
                let now = Date()
                for p in proposals where now.timeIntervalSince(p.since) > leaderWait {
                    waiters.removeValue(forKey: p.request.header.id)?(.failure(.noLeader))
                }
                inbox = proposals.filter { now.timeIntervalSince($0.since) <= leaderWait }
                proposals = []
            }
            let reads = readInbox
            readInbox = []
            for (request, data, _) in proposals {
                do {
                    try raw.propose(data)
                } catch {
                    let e: NodeError = (error == .proposalDropped && raw.lead == 0) ? .noLeader : .proposalDropped
                    waiters.removeValue(forKey: request.header.id)?(.failure(e))
                }
            }
            for r in reads {
                if raw.lead == 0 {
                    r.done(.failure(.noLeader))
                    continue
                }
                readWaiters[r.context] = r.done
                raw.readIndex(context: r.context)
            }
            do {
                try processReadies()
            } catch {
                failure = error
                lock.unlock()
                break
            }
            lock.unlock()
        }
        shutDown()
    }

    /// Leases expire on the leader only, as in etcd: becoming leader extends every lease by an
    /// election timeout (`promote`), losing leadership stops expiry (`demote`), and the leader
    /// proposes a `LeaseRevoke` through raft for each expired lease (every 5 ticks, at most 500
    /// at a time), so every member deletes the attached keys at the same index.
    private func manageLeases() {
        let leader = raw.role == .leader
        if leader != wasLeader {
            wasLeader = leader
            if leader {
                kv.promote(extend: Double(config.electionTicks * config.tickMilliseconds) / 1000)
            } else {
                kv.demote()
                revoking = []
            }
        }
        guard leader, tickCount % 5 == 0 else { return }
        for lease in kv.expiredLeases(limit: 500) where !revoking.contains(lease) {
            var r = Etcdserverpb_InternalRaftRequest()
            r.header.id = UInt64(bitPattern: ids.next())
            r.leaseRevoke.id = lease
            guard let data = try? r.serializedBytes() as [UInt8] else { continue }
            do {
                try raw.propose(data)
                revoking.insert(lease)
                waiters[r.header.id] = { [weak self] _ in self?.revoking.remove(lease) }
            } catch {
                // No room now (no leader, transfer, size limit): tried again at the next round.
            }
        }
    }

    /// Persist, then send, then apply — for every Ready raft has. Called with `lock` held.
    private func processReadies() throws(NodeError) {
        while raw.hasReady {
            let rd: Ready
            do { rd = try raw.ready() } catch { throw NodeError.fatal("raft: \(error)") }
            // 1. Durable before anything is sent or acknowledged (WAL.save fdatasyncs when
            //    raft says it must: entries, or a new term or vote).
            //    The lock is released meanwhile: proposers keep queueing (the next Ready
            //    batches them) instead of waiting out the fdatasync. Only this thread touches
            //    the WAL, and raft is not stepped until the lock is back.
            let hs = rd.hardState.map { HardState(term: $0.term, vote: $0.vote, commit: $0.commit) } ?? HardState()
            let walEntries = rd.entries.map { Entry(type: $0.type.rawValue, term: $0.term, index: $0.index, data: $0.data) }
            lock.unlock()
            let began = DispatchTime.now().uptimeNanoseconds
            let saved = Result { () throws(WALError) in try wal.save(hardState: hs, entries: walEntries) }
            if rd.mustSync { metrics.walFsync.observe(seconds: Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9) }
            lock.lock()
            do { try saved.get() } catch {
                // An fsync or write failure: the WAL is lost for writing. Never retry.
                throw NodeError.fatal("WAL write failed: \(error)")
            }
            do {
                if let h = rd.hardState { storage.setHardState(h) }
                try storage.append(rd.entries)
            } catch {
                throw NodeError.fatal("raft log: \(error)")
            }
            // 2. Send.
            if !rd.messages.isEmpty { transport?(rd.messages) }
            if let soft = rd.softState, soft.lead != lastLeader {
                if soft.lead != 0 { metrics.leaderChanges.add() }
                lastLeader = soft.lead
            }
            if let h = rd.hardState { metrics.committedIndex.store(h.commit) }
            // 3. Apply.
            for e in rd.committedEntries {
                try apply(e)
                reportReplay(e.index)
            }
            if !rd.committedEntries.isEmpty { try snapshotIfDue() }
            for rs in rd.readStates {
                if let done = readWaiters.removeValue(forKey: rs.context) { confirmedReads.append((rs.index, done)) }
            }
            do { try raw.advance(rd) } catch { throw NodeError.fatal("raft: \(error)") }
        }
        if !confirmedReads.isEmpty {
            let ready = confirmedReads.filter { $0.index <= appliedIndex }
            confirmedReads.removeAll { $0.index <= appliedIndex }
            for r in ready { r.done(.success(())) }
        }
        // The backend commit (an fdatasync) also runs without the lock.
        let commitsBefore = kv.backendCommits
        lock.unlock()
        let began = DispatchTime.now().uptimeNanoseconds
        let committed = Result { () throws(MVCCError) in try kv.commitIfDue() }
        if kv.backendCommits != commitsBefore { metrics.backendCommit.observe(seconds: Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9) }
        lock.lock()
        do { try committed.get() } catch { throw NodeError.fatal("backend commit failed: \(error)") }
    }

    /// Refuses a backend that does not belong with the WAL: one whose consistent index is
    /// below the newest snapshot (an older copy of the db: the entries between were released
    /// from the WAL, so they would be lost), or one whose `members` records name other members
    /// only (a db from another cluster).
    static func checkBackend(_ backend: any Backend, memberID: UInt64, snapshotIndex: UInt64, path: String) throws(NodeError) {
        let (consistentIndex, members): (UInt64?, [UInt64])
        do {
            let read = try backend.beginRead()
            defer { read.end() }
            let names = try read.buckets(in: [])
            var ci: UInt64?
            if names.contains(Array("meta".utf8)), let b = try read.bucket([Array("meta".utf8)]).get(Array("consistent_index".utf8)), b.count == 8 {
                ci = b.reduce(0) { $0 << 8 | UInt64($1) }
            }
            var ids: [UInt64] = []
            if names.contains(Array("members".utf8)) {
                ids = try read.bucket([Array("members".utf8)]).entries().compactMap { UInt64(String(decoding: $0.key, as: UTF8.self), radix: 16) }
            }
            (consistentIndex, members) = (ci, ids)
        } catch {
            throw NodeError.dataDirectory("cannot read \(path): \(error)")
        }
        if snapshotIndex > 0 && consistentIndex == nil {
            throw NodeError.dataDirectory("\(path) is empty, but the WAL continues from a snapshot at index \(snapshotIndex): the history before it is only in the backend this data directory was written with (another --backend?). Start with that backend, or restore a snapshot into a new data directory")
        }
        if snapshotIndex > 0, let ci = consistentIndex, ci < snapshotIndex {
            throw NodeError.dataDirectory("\(path) has consistent index \(ci), older than the newest snapshot (index \(snapshotIndex)): the entries between are no longer in the WAL. Restore the db that belongs with this WAL, or restore a snapshot into a new data directory")
        }
        if !members.isEmpty && !members.contains(memberID) {
            throw NodeError.dataDirectory("\(path) belongs to another cluster: its members are \(members.map { String($0, radix: 16) }.sorted().joined(separator: ", ")), but this WAL is member \(String(memberID, radix: 16))'s")
        }
    }

    /// A progress line every second while entries from before the start are applied.
    private func reportReplay(_ index: UInt64) {
        guard replayTarget > 0, let log = config.log else { return }
        if index >= replayTarget {
            log("WAL replay finished", ["applied-index": "\(index)"])
            replayTarget = 0
        } else if Date().timeIntervalSince(replayReported) >= 1 {
            replayReported = Date()
            log("replaying the WAL", ["applied-index": "\(index)", "to-index": "\(replayTarget)",
                                      "percent": String(format: "%.1f", Double(index) * 100 / Double(max(replayTarget, 1)))])
        }
    }

    /// Opens the WAL at the newest `.snap` it has a snapshot record for (etcd's rule: a snap
    /// file without its WAL record is an orphan of a crash between the two writes), repairing a
    /// torn tail left by a crash.
    static func openWAL(fs: any FileSystem, walDir: String, snapDir: String, log: (@Sendable (String, [String: String]) -> Void)? = nil) throws -> (WAL, RaftSnapshot?, WAL.Contents) {
        let snapshotter = Snapshotter(fileSystem: fs, directory: snapDir)
        var candidates: [RaftSnapshot?] = []
        for name in (try? snapshotter.names()) ?? [] {
            do {
                candidates.append(RaftSnapshot(try snapshotter.read(path: snapDir + "/" + name)))
            } catch {
                // As etcd: a damaged .snap is passed over for the one before it (the WAL still
                // holds what came after that one), and said so.
                log?("skipping a damaged snapshot file", ["path": snapDir + "/" + name, "error": "\(error)"])
            }
        }
        candidates.append(nil)
        var lastError: (any Error)?
        for snap in candidates {
            let at = WALSnapshot(index: snap?.index ?? 0, term: snap?.term ?? 0)
            for attempt in 0..<2 {
                let wal = try WAL.open(fileSystem: fs, directory: walDir, snapshot: at)
                do {
                    return (wal, snap, try wal.readAll())
                } catch {
                    try? wal.close()
                    lastError = error
                    if case .tornTail = error, attempt == 0, try WAL.repair(fileSystem: fs, directory: walDir) { continue }
                    if case .snapshotNotFound = error { break }
                    throw error
                }
            }
        }
        throw lastError ?? WALError.noSegments(directory: walDir)
    }

    /// etcd's snapshot trigger: every `snapshotCount` applied entries, commit the backend (so
    /// the consistent index is durable), write the `.snap` (v2 store with the membership), record
    /// it in the WAL, compact the in-memory log to `snapshotCatchUpEntries` behind it, release
    /// the WAL segments before it, and purge files beyond `maxSnapshots`/`maxWALs`.
    private func snapshotIfDue() throws(NodeError) {
        guard config.snapshotCount > 0, appliedIndex > snapshotIndex, appliedIndex - snapshotIndex > config.snapshotCount else { return }
        let index = appliedIndex
        do {
            try kv.forceCommit()
            let members = config.members.isEmpty
                ? [V2Member(id: config.memberID, name: "default", peerURLs: ["http://localhost:2380"], clientURLs: ["http://localhost:2379"])]
                : config.members
            let snap = try storage.createSnapshot(at: index, confState: raw.confState, data: V2Store.json(members: members))
            let bytes: [UInt8] = try snap.proto.serializedBytes()
            // The file first, then its WAL record: a crash between leaves an orphan file,
            // never a record without its file.
            try Snapshotter(fileSystem: fs, directory: config.dataDirectory + "/member/snap").save(term: snap.term, index: index, snapshot: bytes)
            try wal.saveSnapshot(WALSnapshot(index: index, term: snap.term))
            snapshotIndex = index
            if index > config.snapshotCatchUpEntries {
                let compactTo = index - config.snapshotCatchUpEntries
                if compactTo > storage.firstIndex() { try storage.compact(to: compactTo) }
            }
            wal.releaseLock(to: index)
            config.log?("saved snapshot", ["index": "\(index)", "term": "\(snap.term)"])
        } catch let e as WALError {
            throw NodeError.fatal("saving the snapshot at \(index): \(e)")
        } catch {
            throw NodeError.fatal("snapshot at \(index): \(error)")
        }
        purgeFiles()
    }

    /// Removes the oldest `.snap` files beyond `maxSnapshots` and unlocked WAL segments beyond
    /// `maxWALs` (a locked segment is still needed and is never removed).
    private func purgeFiles() {
        let snapDir = config.dataDirectory + "/member/snap", walDir = config.walDirectory ?? config.dataDirectory + "/member/wal"
        if config.maxSnapshots > 0, let names = try? Snapshotter(fileSystem: fs, directory: snapDir).names(), names.count > config.maxSnapshots {
            for name in names.dropFirst(config.maxSnapshots) { try? fs.remove(snapDir + "/" + name) }
        }
        if config.maxWALs > 0, let names = try? WAL.segmentNames(fs, walDir), names.count > config.maxWALs {
            let locked = Set(wal.lockedSegments)
            for name in names.prefix(names.count - config.maxWALs) where !locked.contains(name) { try? fs.remove(walDir + "/" + name) }
        }
    }

    private func apply(_ e: RaftEntry) throws(NodeError) {
        defer { appliedIndex = max(appliedIndex, e.index) }
        switch e.type {
        case .confChange, .confChangeV2:
            do {
                _ = try raw.applyConfChange(ConfChange(entry: e))
            } catch {
                throw NodeError.fatal("conf change at \(e.index): \(error)")
            }
            if e.type == .confChange, let cc = try? Raftpb_ConfChange(serializedBytes: e.data) { try recordMember(cc, index: e.index) }
            return
        case .normal:
            break
        }
        if e.data.isEmpty { return }
        // etcd's rule: an InternalRaftRequest, else a bare v2 Request (etcd 3.4 publishes member
        // attributes and the cluster version that way, so an etcd WAL holds both kinds).
        let request: Etcdserverpb_InternalRaftRequest
        if let r = try? Etcdserverpb_InternalRaftRequest(serializedBytes: e.data) {
            request = r
        } else if let v2 = try? Etcdserverpb_Request(serializedBytes: e.data) {
            try applyV2(v2)
            waiters.removeValue(forKey: v2.id)?(.success(.v2))
            return
        } else {
            throw NodeError.fatal("entry \(e.index) is neither an InternalRaftRequest nor a v2 Request (\(e.data.count) bytes): the WAL holds something etcd 3.4 did not write")
        }
        if request.hasV2 {
            try applyV2(request.v2)
            waiters.removeValue(forKey: request.v2.id)?(.success(.v2))
            return
        }
        // Already in the backend (the consistent index covers it): a replay after restart.
        let id = request.hasHeader ? request.header.id : request.id
        if e.index <= kv.consistentIndex {
            waiters.removeValue(forKey: id)?(.failure(.stopped))
            return
        }
        let result = applyRequest(request, index: e.index)
        if case let .failed(err) = result, case .backend = err {
            throw NodeError.fatal("backend failed applying entry \(e.index): \(err)")
        }
        waiters.removeValue(forKey: id)?(.success(result))
    }

    /// The v2 state etcd 3.4 keeps through raft: members' published attributes
    /// (`/0/members/<id>/attributes`) and the cluster version (`/0/version`). Other v2 requests
    /// (SYNC, v2 keys under `/1`) change nothing Keel keeps. Guarded by `lock`.
    private var v2Attributes: [UInt64: V2Attributes] = [:]
    private var v2ClusterVersion: String?

    /// What a member published about itself (etcd's `Attributes`).
    public struct V2Attributes: Sendable, Equatable, Decodable {
        public var name: String
        public var clientURLs: [String]?
    }

    /// Attributes members published through raft (from this member's WAL, written by etcd or
    /// keel), and the cluster version set the same way.
    public var published: (attributes: [UInt64: V2Attributes], clusterVersion: String?) {
        lock.lock()
        defer { lock.unlock() }
        return (v2Attributes, v2ClusterVersion)
    }

    /// Members' peer URLs from their conf changes (the rest of their backend record).
    private var v2PeerURLs: [UInt64: [String]] = [:]

    /// A member as etcd's conf-change context carries it.
    struct MemberContext: Decodable {
        var id: UInt64
        var peerURLs: [String]
    }

    /// etcd keeps each member in the backend's `members` bucket (and removed IDs in
    /// `members_removed`), written when the conf change applies.
    private func recordMember(_ cc: Raftpb_ConfChange, index: UInt64) throws(NodeError) {
        do {
            switch cc.type {
            case .confChangeAddNode, .confChangeAddLearnerNode, .confChangeUpdateNode:
                guard let m = try? JSONDecoder().decode(MemberContext.self, from: cc.context), m.id == cc.nodeID else { return }
                v2PeerURLs[m.id] = m.peerURLs
                try kv.saveMember(id: m.id, json: [UInt8](cc.context))
            case .confChangeRemoveNode:
                v2PeerURLs.removeValue(forKey: cc.nodeID)
                try kv.removeMember(id: cc.nodeID)
            default:
                return
            }
        } catch {
            throw NodeError.fatal("backend failed recording the member of conf change \(index): \(error)")
        }
    }

    private func applyV2(_ r: Etcdserverpb_Request) throws(NodeError) {
        guard r.method == "PUT" else { return }
        do {
            if r.path == "/0/version" {
                v2ClusterVersion = r.val
                try kv.saveClusterVersion(r.val)
                return
            }
            let parts = r.path.split(separator: "/")
            guard parts.count == 4, parts[0] == "0", parts[1] == "members", parts[3] == "attributes",
                  let id = UInt64(parts[2], radix: 16),
                  let attributes = try? JSONDecoder().decode(V2Attributes.self, from: Data(r.val.utf8)) else { return }
            v2Attributes[id] = attributes
            if let peers = v2PeerURLs[id] {
                try kv.saveMember(id: id, json: EtcdIdentity.memberJSON(id: id, peerURLs: peers, name: attributes.name, clientURLs: attributes.clientURLs ?? []))
            }
        } catch {
            throw NodeError.fatal("backend failed applying the v2 request for \(r.path): \(error)")
        }
    }

    /// Proposes an etcd v2 PUT — how etcd 3.4 publishes a member's attributes
    /// (`/0/members/<id>/attributes`) and the cluster version (`/0/version`) — and waits until it
    /// is applied.
    public func publishV2(path: String, value: String) async throws(NodeError) {
        let result: Result<AppliedResult, NodeError> = await withCheckedContinuation { continuation in
            lock.lock()
            if let f = failure ?? (stopping ? NodeError.stopped : nil) {
                lock.unlock()
                continuation.resume(returning: .failure(f))
                return
            }
            let id = UInt64(bitPattern: ids.next())
            var v2 = Etcdserverpb_Request()
            v2.id = id
            v2.method = "PUT"
            v2.path = path
            v2.val = value
            var marker = Etcdserverpb_InternalRaftRequest()
            marker.header.id = id
            waiters[id] = { continuation.resume(returning: $0) }
            inbox.append((marker, (try? v2.serializedBytes()) ?? [], Date()))
            lock.signal()
            lock.unlock()
        }
        _ = try result.get()
    }

    private func applyRequest(_ r: Etcdserverpb_InternalRaftRequest, index: UInt64) -> AppliedResult {
        do {
            if r.hasPut { return .put(try kv.put(r.put, index: index)) }
            if r.hasDeleteRange { return .deleteRange(try kv.deleteRange(r.deleteRange, index: index)) }
            if r.hasTxn { return .txn(try kv.txn(r.txn, index: index)) }
            if r.hasRange { return .range(try kv.range(r.range)) }
            if r.hasCompaction { return .compaction(try kv.compact(r.compaction.revision, index: index)) }
            if r.hasLeaseGrant {
                let g = try kv.grantLease(id: r.leaseGrant.id, ttl: r.leaseGrant.ttl, index: index)
                return .leaseGrant(id: g.id, ttl: g.ttl)
            }
            if r.hasLeaseRevoke { return .leaseRevoke(revision: try kv.revokeLease(id: r.leaseRevoke.id, index: index)) }
            if r.hasLeaseCheckpoint {
                for c in r.leaseCheckpoint.checkpoints { try kv.checkpointLease(id: c.id, remainingTTL: c.remainingTtl, index: index) }
                return .leaseCheckpointed
            }
            if r.hasAlarm {
                let a = r.alarm
                switch a.action {
                case .activate: _ = try kv.activateAlarm(memberID: a.memberID, alarm: a.alarm)
                case .deactivate: _ = try kv.deactivateAlarm(memberID: a.memberID, alarm: a.alarm)
                default: break
                }
                return .alarms(kv.alarmList())
            }
            if r.hasAuthenticate {
                let a = r.authenticate
                // etcd's form: password checked before raft, the token prefix in the entry.
                if !a.simpleToken.isEmpty { return .authenticated(token: try kv.assignToken(prefix: a.simpleToken, user: a.name, index: index)) }
                return .authenticated(token: try kv.authenticate(a.name, password: a.password, index: index))
            }
            if r.hasAuthEnable { try kv.authEnable(index: index); return .authChanged }
            if r.hasAuthDisable { try kv.authDisable(index: index); return .authChanged }
            if r.hasAuthUserAdd {
                let u = r.authUserAdd
                try kv.userAdd(u.name, password: u.password, noPassword: u.options.noPassword, index: index)
                return .authChanged
            }
            if r.hasAuthUserDelete { try kv.userDelete(r.authUserDelete.name, index: index); return .authChanged }
            if r.hasAuthUserChangePassword {
                try kv.userChangePassword(r.authUserChangePassword.name, password: r.authUserChangePassword.password, index: index)
                return .authChanged
            }
            if r.hasAuthUserGrantRole { try kv.userGrantRole(r.authUserGrantRole.user, role: r.authUserGrantRole.role, index: index); return .authChanged }
            if r.hasAuthUserRevokeRole { try kv.userRevokeRole(r.authUserRevokeRole.name, role: r.authUserRevokeRole.role, index: index); return .authChanged }
            if r.hasAuthRoleAdd { try kv.roleAdd(r.authRoleAdd.name, index: index); return .authChanged }
            if r.hasAuthRoleDelete { try kv.roleDelete(r.authRoleDelete.role, index: index); return .authChanged }
            if r.hasAuthRoleGrantPermission {
                try kv.roleGrantPermission(r.authRoleGrantPermission.name, r.authRoleGrantPermission.perm, index: index)
                return .authChanged
            }
            if r.hasAuthRoleRevokePermission {
                let rv = r.authRoleRevokePermission
                try kv.roleRevokePermission(rv.role, key: [UInt8](rv.key), rangeEnd: [UInt8](rv.rangeEnd), index: index)
                return .authChanged
            }
            return .unsupported("request kind not applied by this node yet")
        } catch {
            return .failed(error)
        }
    }

    /// Debug tracing to stderr when KEEL_NODE_TRACE is set (the server issue brings real logs).
    private func trace(_ message: @autoclosure () -> String) {
        if ProcessInfo.processInfo.environment["KEEL_NODE_TRACE"] != nil { FileHandle.standardError.write(Data((message() + "\n").utf8)) }
    }

    private func shutDown() {
        lock.lock()
        trace("shut down: \(String(describing: failure))")
        let reason = failure ?? .stopped
        let pending = Array(waiters.values) + Array(readWaiters.values).map { f in { (_: Result<AppliedResult, NodeError>) in f(.failure(reason)) } }
        let confirmed = confirmedReads.map(\.done)
        waiters = [:]
        readWaiters = [:]
        confirmedReads = []
        let queued = inbox
        inbox = []
        let queuedReads = readInbox
        readInbox = []
        let queuedChores = chores
        chores = []
        stopping = true
        lock.unlock()
        for w in pending { w(.failure(reason)) }
        for c in confirmed { c(.failure(reason)) }
        for q in queuedReads { q.done(.failure(reason)) }
        // Chores still run (they only answer their callers); the store is open until below.
        for chore in queuedChores { chore() }
        _ = queued
        // Errors here leave nothing to save: the WAL holds every applied entry, and a backend
        // that could not commit is replayed from it at the next start.
        do { try kv.forceCommit() } catch { trace("closing: backend commit failed: \(error)") }
        do { try kv.close() } catch { trace("closing: store close failed: \(error)") }
        // The store does not own the backend: close it (and release its file lock) here.
        do { try backend.close() } catch { trace("closing: backend close failed: \(error)") }
        do { try wal.close() } catch { trace("closing: WAL close failed: \(error)") }
    }
}
