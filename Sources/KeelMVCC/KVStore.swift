import Foundation
import KeelBackend
import KeelIO
import KeelProto

/// etcd's revision-keyed key/value store (etcd 3.4's `mvcc` package semantics) on any `Backend`,
/// in etcd's schema: the `key` bucket maps 17-byte revisions (18 with the tombstone mark) to
/// `mvccpb.KeyValue`, and `meta` holds `consistent_index`, `scheduledCompactRev` and
/// `finishedCompactRev`. An in-memory index maps each key to its generations of revisions; it
/// is rebuilt by one scan of the `key` bucket when the store opens.
///
/// Writes go into etcd's batch transaction (`BatchedWriter`: committed at `batchLimit` changes
/// or when `commitIfDue` finds the oldest change older than `batchInterval`); reads see every
/// write that returned, committed or not. Durability is the caller's (the WAL's): pass the raft
/// index a write applies as `index`, and it is stored in `meta/consistent_index` in the same
/// backend transaction as the changes.
///
/// Thread-safe: operations are serialised. Requests are etcd's (`Etcdserverpb_*`) messages.
public final class KVStore: @unchecked Sendable {
    public struct Options: Sendable {
        /// Changes per backend commit (etcd `--backend-batch-limit`).
        public var batchLimit = 10_000
        /// Seconds before pending changes are committed by `commitIfDue` (`--backend-batch-interval`).
        public var batchInterval = 0.1
        /// Revisions deleted per compaction batch (`--experimental-compaction-batch-limit`).
        public var compactionBatchLimit = 1000
        /// Most operations in one txn (`--max-txn-ops`).
        public var maxTxnOps = 128
        /// Keep leases (the `lease` bucket, attach/detach on writes, expiry while primary). Off
        /// for a store that must hold exactly what etcd's bare `mvcc` store holds.
        public var leases = true
        /// The shortest TTL a lease gets (etcd: ceil(1.5 × election timeout) = 2 s by default).
        public var minLeaseTTL: Int64 = 2
        /// Monotonic seconds, for lease expiry (tests pass a fake clock).
        public var clock: @Sendable () -> Double = { Double(monotonicNanoseconds()) / 1e9 }
        /// The backend quota in bytes (`--quota-backend-bytes`): 0 for etcd's 2 GiB, negative
        /// for none.
        public var quotaBytes: Int64 = 0
        /// This member's ID, for the NOSPACE alarm the quota raises.
        public var memberID: UInt64 = 0
        /// Keep the auth store (the `auth`, `authUsers`, `authRoles` buckets). Off for a store
        /// that must hold exactly what etcd's bare `mvcc` store holds.
        public var auth = true
        /// bcrypt cost for new passwords (etcd: 10; tests lower it).
        public var bcryptCost = BCrypt.defaultCost
        public init() {}
    }

    static let keyBucket: BucketPath = [Array("key".utf8)]
    static let metaBucket: BucketPath = [Array("meta".utf8)]
    static let leaseBucket: BucketPath = [Array("lease".utf8)]
    static let alarmBucket: BucketPath = [Array("alarm".utf8)]
    static let consistentIndexKey = Array("consistent_index".utf8)
    static let scheduledCompactKey = Array("scheduledCompactRev".utf8)
    static let finishedCompactKey = Array("finishedCompactRev".utf8)

    public let backend: any Backend
    public let options: Options
    let writer: BatchedWriter
    private let lock = NSLock()
    // State below is guarded by `lock`.
    let index = TreeIndex()
    var current: Int64 = 1
    private var compacted: Int64 = -1
    private var appliedIndex: UInt64 = 0
    /// `key` bucket values written in the open batch, so reads see them before the commit.
    private var uncommitted: [[UInt8]: [UInt8]] = [:]
    private var commitsSeen = 0
    var failure: String?
    /// The applied index waiting for the next commit.
    var pendingConsistentIndex: UInt64?
    /// The open batch's `key` bucket (the transaction is held so its identity stays unique).
    var cachedKeyBucket: (tx: AnyObject, bucket: any BackendBucket)?
    /// Leases by ID (when `options.leases`).
    var leases: [Int64: Lease] = [:]
    /// Whether leases expire here.
    var primary = false
    /// IDs for grants that ask for 0.
    lazy var leaseIDGenerator = LeaseIDGenerator(memberID: options.memberID)
    /// Active alarms (the `alarm` bucket).
    var alarms: [Etcdserverpb_AlarmMember] = []
    /// Every watcher, and which of them are synced (notified as writes happen).
    var watchers: [Watcher] = []
    var syncedWatchers = Set<ObjectIdentifier>()
    /// Events of the write txn in progress.
    var txnEvents: [Mvccpb_Event] = []
    var compactRevisionLocked: Int64 { compacted }
    /// The auth store's flag, revision, uncommitted records and simple tokens.
    var authEnabled = false
    var authRev: UInt64 = 0
    var authPending: [[UInt8]: [UInt8]] = [:]
    var tokens: [String: SimpleToken] = [:]

    /// Opens the store on `backend`: creates `key` and `meta` when missing, rebuilds the index,
    /// and finishes a compaction that was scheduled but not finished.
    /// - Throws: `.corrupt` for values that are not etcd's, `.backend`.
    public init(backend: any Backend, options: Options = Options()) throws(MVCCError) {
        self.backend = backend
        self.options = options
        writer = BatchedWriter(backend: backend, batchLimit: options.batchLimit, intervalSeconds: options.batchInterval)
        // The applied index goes into each batch right before it commits (always under `lock`:
        // every call into the writer is made holding it).
        writer.setBeforeCommit { [unowned self] tx throws(BackendError) in
            if let index = self.pendingConsistentIndex {
                try tx.bucket(KVStore.metaBucket).put(KVStore.consistentIndexKey, bigEndianBytes(index))
                self.pendingConsistentIndex = nil
            }
        }
        try restore()
    }

    // MARK: State

    /// The revision of the last change (1 for an empty store).
    public var currentRevision: Int64 { withLock { current } }
    /// The revision the store was compacted at, or -1.
    public var compactRevision: Int64 { withLock { compacted } }
    /// The last raft index stored with a change.
    public var consistentIndex: UInt64 { withLock { appliedIndex } }
    /// Keys in the index (live or with history).
    public var indexedKeys: Int { withLock { index.count } }
    /// Backend batch commits so far (for commit-duration metrics).
    public var backendCommits: Int { writer.counters.commits }

    @inline(__always)
    func withLock<T>(_ body: () throws(MVCCError) -> T) throws(MVCCError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    @inline(__always)
    func withLock<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    // MARK: Open

    private func restore() throws(MVCCError) {
        // Create `key` and `meta` only when missing, so a read-only backend (an etcd data file
        // opened for inspection) works.
        let missing = try backendCall { () throws(BackendError) -> Bool in
            let read = try backend.beginRead()
            defer { read.end() }
            let names = try read.buckets(in: [])
            return !names.contains(KVStore.keyBucket[0]) || !names.contains(KVStore.metaBucket[0])
        }
        if missing {
            try backendCall { () throws(BackendError) in
                let tx = try backend.beginWrite()
                for bucket in [KVStore.keyBucket, KVStore.metaBucket] where (try? tx.bucket(bucket)) == nil {
                    try tx.createBucket(bucket)
                }
                try tx.commit()
            }
        }
        let read = try backendCall { () throws(BackendError) in try backend.beginRead() }
        defer { read.end() }
        var scheduled: Int64 = 0
        try backendCall { () throws(BackendError) in
            let meta = try read.bucket(KVStore.metaBucket)
            if let finished = try meta.get(KVStore.finishedCompactKey) { compacted = (try? Revision.decode(finished).revision.main) ?? -1 }
            if let s = try meta.get(KVStore.scheduledCompactKey) { scheduled = (try? Revision.decode(s).revision.main) ?? 0 }
            if let ci = try meta.get(KVStore.consistentIndexKey) { appliedIndex = bigEndianValue(ci) ?? 0 }
        }
        var last: Int64 = 0
        var problem: MVCCError?
        try backendCall { () throws(BackendError) in
            let keys = try read.bucket(KVStore.keyBucket)
            var entries: [(key: [UInt8], value: [UInt8])] = []
            var from: [UInt8] = []
            // In chunks of 10,000, as etcd does, so memory stays bounded.
            repeat {
                entries = try keys.entries(from: from, limit: 10_000)
                for e in entries {
                    do throws(MVCCError) {
                        try restoreEntry(e.key, e.value, last: &last)
                    } catch {
                        problem = problem ?? error
                    }
                }
                if let k = entries.last?.key { from = k + [0] }
            } while entries.count == 10_000
        }
        if let problem { throw problem }
        // The compaction revisions come from the file too.
        guard compacted < Int64.max / 2, scheduled < Int64.max / 2 else {
            throw MVCCError.corrupt("compaction revisions (scheduled \(scheduled), finished \(compacted)) are out of range")
        }
        current = max(last, compacted, 1)
        if compacted > 0 && current < compacted { current = compacted }
        if scheduled > compacted && scheduled > 0 {
            // A compaction was persisted but not finished: finish it now.
            try compactLocked(scheduled, resumed: true)
        }
        if options.leases { try restoreLeases() }
        try restoreAlarms()
        if options.auth { try restoreAuth() }
    }

    private func restoreEntry(_ key: [UInt8], _ value: [UInt8], last: inout Int64) throws(MVCCError) {
        let (revision, tombstone) = try Revision.decode(key)
        // Revisions come from the file: keep them where `current + 1` and friends cannot overflow.
        guard revision.main > 0, revision.main < Int64.max / 2 else {
            throw MVCCError.corrupt("key bucket revision \(revision) is out of range")
        }
        guard let kv = try? Mvccpb_KeyValue(serializedBytes: value) else {
            throw MVCCError.corrupt("value at revision \(revision) is not a mvccpb.KeyValue")
        }
        let k = [UInt8](kv.key)
        last = revision.main
        if let ki = index.get(k) {
            if tombstone { ki.tombstone(revision) } else { ki.put(revision) }
            ki.lease = tombstone ? 0 : kv.lease
        } else if !tombstone {
            let ki = index.getOrInsert(k)
            ki.restore(created: Revision(main: kv.createRevision), modified: revision, version: kv.version)
            ki.lease = kv.lease
        }
    }

    // MARK: Reads

    /// etcd's Range, with every option of `RangeRequest` (the server's linearizability is
    /// its own business). `header.revision` is the current revision.
    public func range(_ request: Etcdserverpb_RangeRequest) throws(MVCCError) -> Etcdserverpb_RangeResponse {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            return try rangeLocked(request, at: current)
        }
    }

    /// The KeyValues of keys in `[key, end)` at main revision `rev` (end nil: the key alone),
    /// up to `limit` (0: all), and how many keys matched.
    private func rangeKeys(_ key: [UInt8], _ end: [UInt8]?, rev: Int64, limit: Int, countOnly: Bool) throws(MVCCError) -> (kvs: [Mvccpb_KeyValue], count: Int) {
        var revisions: [Revision] = []
        if let end {
            index.forEach(from: key, to: end.isEmpty ? nil : end) { ki in
                if let state = ki.get(atRev: rev) { revisions.append(state.modified) }
                return true
            }
        } else if let ki = index.get(key), let state = ki.get(atRev: rev) {
            revisions.append(state.modified)
        }
        if countOnly || revisions.isEmpty { return ([], revisions.count) }
        let n = limit <= 0 ? revisions.count : min(limit, revisions.count)
        return (try fetch(Array(revisions.prefix(n))), revisions.count)
    }

    /// The stored KeyValues of `revisions`, from the open batch or the backend.
    func fetch(_ revisions: [Revision]) throws(MVCCError) -> [Mvccpb_KeyValue] {
        var out: [Mvccpb_KeyValue] = []
        out.reserveCapacity(revisions.count)
        var read: (any BackendReadTx)?
        var bucket: (any BackendBucket)?
        defer { read?.end() }
        for revision in revisions {
            let key = revision.bytes()
            var bytes = uncommitted[key]
            if bytes == nil {
                if bucket == nil {
                    read = try backendCall { () throws(BackendError) in try backend.beginRead() }
                    bucket = try backendCall { () throws(BackendError) in try read!.bucket(KVStore.keyBucket) }
                }
                bytes = try backendCall { () throws(BackendError) in try bucket!.get(key) }
            }
            guard let bytes else { throw MVCCError.corrupt("revision \(revision) is in the index but not in the key bucket") }
            guard let kv = try? Mvccpb_KeyValue(serializedBytes: bytes) else {
                throw MVCCError.corrupt("value at revision \(revision) is not a mvccpb.KeyValue")
            }
            out.append(kv)
        }
        return out
    }

    /// Range at `readRev` (the revision reads see: current, or the write txn's own).
    private func rangeLocked(_ r: Etcdserverpb_RangeRequest, at readRev: Int64) throws(MVCCError) -> Etcdserverpb_RangeResponse {
        let rev = r.revision <= 0 ? readRev : r.revision
        if rev > readRev { throw MVCCError.futureRevision }
        if rev < compacted { throw MVCCError.compacted }
        var limit = Int(r.limit)
        let filters = r.minModRevision != 0 || r.maxModRevision != 0 || r.minCreateRevision != 0 || r.maxCreateRevision != 0
        if r.sortOrder != .none || filters { limit = 0 }
        if limit > 0 { limit += 1 }
        var (kvs, count) = try rangeKeys([UInt8](r.key), r.rangeEnd.isEmpty ? nil : gteRange([UInt8](r.rangeEnd)),
                                         rev: rev, limit: limit, countOnly: r.countOnly)
        if r.maxModRevision != 0 { kvs.removeAll { $0.modRevision > r.maxModRevision } }
        if r.minModRevision != 0 { kvs.removeAll { $0.modRevision < r.minModRevision } }
        if r.maxCreateRevision != 0 { kvs.removeAll { $0.createRevision > r.maxCreateRevision } }
        if r.minCreateRevision != 0 { kvs.removeAll { $0.createRevision < r.minCreateRevision } }
        var order = r.sortOrder
        if r.sortTarget != .key && order == .none { order = .ascend }
        if order != .none {
            // Stable, with key order (how the index returns them) for ties.
            let ascending: (Mvccpb_KeyValue, Mvccpb_KeyValue) -> Bool
            switch r.sortTarget {
            case .version: ascending = { $0.version < $1.version }
            case .create: ascending = { $0.createRevision < $1.createRevision }
            case .mod: ascending = { $0.modRevision < $1.modRevision }
            case .value: ascending = { compareBytes([UInt8]($0.value), [UInt8]($1.value)) < 0 }
            default: ascending = { compareBytes([UInt8]($0.key), [UInt8]($1.key)) < 0 }
            }
            let indexed = kvs.enumerated().map { ($0.offset, $0.element) }
            kvs = indexed.sorted { a, b in
                if order == .descend { return ascending(b.1, a.1) || (!ascending(a.1, b.1) && a.0 < b.0) }
                return ascending(a.1, b.1) || (!ascending(b.1, a.1) && a.0 < b.0)
            }.map(\.1)
        }
        var response = Etcdserverpb_RangeResponse()
        if r.limit > 0 && kvs.count > Int(r.limit) {
            kvs.removeSubrange(Int(r.limit)...)
            response.more = true
        }
        if r.keysOnly { for i in kvs.indices { kvs[i].value = Data() } }
        response.header.revision = readRev
        response.count = Int64(count)
        response.kvs = kvs
        return response
    }

    // MARK: Writes

    /// etcd's Put. `index` is the raft index it applies (0: not recorded).
    public func put(_ request: Etcdserverpb_PutRequest, index raftIndex: UInt64 = 0) throws(MVCCError) -> Etcdserverpb_PutResponse {
        try KVStore.validate(request)
        return try write(raftIndex) { (w: inout WriteTxn) throws(MVCCError) in
            try checkSpace(cost: KVStore.cost(request))
            return try applyPut(request, &w)
        }
    }

    /// etcd's DeleteRange.
    public func deleteRange(_ request: Etcdserverpb_DeleteRangeRequest, index raftIndex: UInt64 = 0) throws(MVCCError) -> Etcdserverpb_DeleteRangeResponse {
        if request.key.isEmpty { throw MVCCError.emptyKey }
        return try write(raftIndex) { (w: inout WriteTxn) throws(MVCCError) in try applyDelete(request, &w) }
    }

    /// etcd's Txn: compares against the current revision, then the success or failure ops in
    /// order (nested txns included); every change shares one main revision.
    public func txn(_ request: Etcdserverpb_TxnRequest, index raftIndex: UInt64 = 0) throws(MVCCError) -> Etcdserverpb_TxnResponse {
        try KVStore.validate(request, maxOps: options.maxTxnOps)
        return try write(raftIndex) { (w: inout WriteTxn) throws(MVCCError) in
            try checkSpace(cost: KVStore.cost(request))
            // As etcd: every compare (nested ones too) against the state before the txn, then
            // the chosen branch checked (ignore_* keys, leases, range revisions) before any write.
            var path: [Bool] = []
            try comparePath(request, at: w.beginRev, into: &path)
            var cursor = 0
            try check(request, path: path, cursor: &cursor, at: w.beginRev)
            cursor = 0
            var response = try applyTxn(request, path: path, cursor: &cursor, &w)
            response.header.revision = w.changes > 0 ? w.beginRev + 1 : w.beginRev
            return response
        }
    }

    /// etcd's `compareToPath`: the branch each txn (depth first) takes, all decided at `rev`.
    private func comparePath(_ t: Etcdserverpb_TxnRequest, at rev: Int64, into path: inout [Bool]) throws(MVCCError) {
        var succeeded = true
        for c in t.compare where !(try compare(c, at: rev)) {
            succeeded = false
            break
        }
        path.append(succeeded)
        for op in succeeded ? t.success : t.failure {
            if case let .requestTxn(inner)? = op.request { try comparePath(inner, at: rev, into: &path) }
        }
    }

    /// etcd's `checkRequests` over the chosen branches: the errors a txn can meet are found
    /// before it writes anything.
    private func check(_ t: Etcdserverpb_TxnRequest, path: [Bool], cursor: inout Int, at rev: Int64) throws(MVCCError) {
        let succeeded = path[cursor]
        cursor += 1
        for op in succeeded ? t.success : t.failure {
            switch op.request {
            case let .requestPut(p)?:
                if p.ignoreValue || p.ignoreLease {
                    guard index.get([UInt8](p.key))?.get(atRev: rev) != nil else { throw MVCCError.keyNotFound }
                }
                if p.lease != 0, !(try leaseExists(p.lease)) { throw MVCCError.leaseNotFound }
            case let .requestRange(r)?:
                if r.revision > rev { throw MVCCError.futureRevision }
                if r.revision != 0 && r.revision < compacted { throw MVCCError.compacted }
            case let .requestTxn(inner)?:
                try check(inner, path: path, cursor: &cursor, at: rev)
            default:
                break
            }
        }
    }

    /// One write transaction's bookkeeping.
    struct WriteTxn {
        let beginRev: Int64
        var changes = 0
        /// Revision reads inside the txn see (its own changes included).
        var readRev: Int64 { changes > 0 ? beginRev + 1 : beginRev }
    }

    /// Runs `body` as one write transaction: its changes go to the batch, the consistent index
    /// with them, and the revision advances when something changed.
    private func write<T>(_ raftIndex: UInt64, _ body: (inout WriteTxn) throws(MVCCError) -> T) throws(MVCCError) -> T {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            var w = WriteTxn(beginRev: current)
            txnEvents = []
            let result: T
            do throws(MVCCError) {
                result = try body(&w)
            } catch {
                if w.changes > 0 {
                    // Part of a write reached the batch and the index (etcd panics here): drop
                    // the batch, so the backend stays at its last commit (whose consistent
                    // index tells the WAL replay where to start), and stop rather than serve a
                    // state no request produced.
                    failure = "a write failed after \(w.changes) of its changes were applied (\(error)); reopen the store"
                    writer.abort(because: failure!)
                    cachedKeyBucket = nil
                }
                throw error
            }
            if w.changes > 0 {
                try saveConsistentIndex(raftIndex)
                current += 1
                let events = txnEvents
                txnEvents = []
                notify(revision: current, events: events)
            }
            return result
        }
    }

    /// Stores the applied raft index in `meta` in the open batch (0: nothing to record).
    func saveConsistentIndex(_ raftIndex: UInt64) throws(MVCCError) {
        guard raftIndex > 0 else { return }
        // Written into the batch by the pre-commit hook: the last index applied lands in the same
        // transaction as the changes it covers, once per commit instead of once per write.
        pendingConsistentIndex = raftIndex
        appliedIndex = raftIndex
        if writer.counters.pending == 0 {
            // Nothing else is staged (a lease or auth change counted no change yet): make sure a
            // batch is open so the hook runs at the next commit.
            try batch(changes: 0) { _ throws(BackendError) in }
        }
    }

    /// The `key` bucket of the open batch, looked up once per batch.
    func keyBucket(_ tx: any BackendWriteTx) throws(BackendError) -> any BackendBucket {
        if let cached = cachedKeyBucket, cached.tx === tx { return cached.bucket }
        let bucket = try tx.bucket(KVStore.keyBucket)
        cachedKeyBucket = (tx, bucket)
        return bucket
    }

    private func applyPut(_ p: Etcdserverpb_PutRequest, _ w: inout WriteTxn) throws(MVCCError) -> Etcdserverpb_PutResponse {
        let key = [UInt8](p.key)
        var value = [UInt8](p.value)
        var lease = p.lease
        var response = Etcdserverpb_PutResponse()
        var previous: Mvccpb_KeyValue?
        if p.ignoreValue || p.ignoreLease || p.prevKv {
            previous = try rangeKeys(key, nil, rev: w.readRev, limit: 0, countOnly: false).kvs.first
        }
        if p.prevKv, let previous { response.prevKv = previous }
        if p.ignoreValue || p.ignoreLease {
            guard let previous else { throw MVCCError.keyNotFound }
            if p.ignoreValue { value = [UInt8](previous.value) }
            if p.ignoreLease { lease = previous.lease }
        } else if lease != 0 {
            guard try leaseExists(lease) else { throw MVCCError.leaseNotFound }
        }
        try putKey(key, value, lease: lease, &w)
        response.header.revision = w.beginRev + 1
        return response
    }

    private func applyDelete(_ d: Etcdserverpb_DeleteRangeRequest, _ w: inout WriteTxn) throws(MVCCError) -> Etcdserverpb_DeleteRangeResponse {
        var response = Etcdserverpb_DeleteRangeResponse()
        let key = [UInt8](d.key)
        let end: [UInt8]? = d.rangeEnd.isEmpty ? nil : gteRange([UInt8](d.rangeEnd))
        if d.prevKv { response.prevKvs = try rangeKeys(key, end, rev: w.readRev, limit: 0, countOnly: false).kvs }
        var keys: [[UInt8]] = []
        let rev = w.readRev
        if let end {
            index.forEach(from: key, to: end.isEmpty ? nil : end) { ki in
                if ki.get(atRev: rev) != nil { keys.append(ki.key) }
                return true
            }
        } else if let ki = index.get(key), ki.get(atRev: rev) != nil {
            keys.append(key)
        }
        for k in keys { try deleteKey(k, &w) }
        response.deleted = Int64(keys.count)
        response.header.revision = w.changes > 0 ? w.beginRev + 1 : w.beginRev
        return response
    }

    private func applyTxn(_ t: Etcdserverpb_TxnRequest, path: [Bool], cursor: inout Int, _ w: inout WriteTxn) throws(MVCCError) -> Etcdserverpb_TxnResponse {
        let succeeded = path[cursor]
        cursor += 1
        var response = Etcdserverpb_TxnResponse()
        response.succeeded = succeeded
        for op in succeeded ? t.success : t.failure {
            var out = Etcdserverpb_ResponseOp()
            switch op.request {
            // Each op's header carries only a revision, as etcd's applier sets it: a range the
            // revision it read at, a put the txn's new revision, a delete the new revision if
            // the txn changed anything so far (else the old one). A nested txn's is empty.
            case let .requestRange(r)?:
                var rr = try rangeLocked(r, at: w.readRev)
                rr.header = Etcdserverpb_ResponseHeader()
                rr.header.revision = w.readRev
                out.response = .responseRange(rr)
            case let .requestPut(p)?:
                var pr = try applyPut(p, &w)
                pr.header = Etcdserverpb_ResponseHeader()
                pr.header.revision = w.beginRev + 1
                out.response = .responsePut(pr)
            case let .requestDeleteRange(d)?:
                var dr = try applyDelete(d, &w)
                dr.header = Etcdserverpb_ResponseHeader()
                dr.header.revision = w.readRev
                out.response = .responseDeleteRange(dr)
            case let .requestTxn(inner)?:
                var tr = try applyTxn(inner, path: path, cursor: &cursor, &w)
                tr.header = Etcdserverpb_ResponseHeader()
                out.response = .responseTxn(tr)
            case nil:
                break
            }
            response.responses.append(out)
        }
        return response
    }

    /// etcd's compare: over every key in the range at the txn's read revision; a missing key
    /// compares as zero values, except that a VALUE compare on it fails.
    private func compare(_ c: Etcdserverpb_Compare, at rev: Int64) throws(MVCCError) -> Bool {
        let end: [UInt8]? = c.rangeEnd.isEmpty ? nil : gteRange([UInt8](c.rangeEnd))
        let kvs = try rangeKeys([UInt8](c.key), end, rev: rev, limit: 0, countOnly: false).kvs
        if kvs.isEmpty {
            if c.target == .value { return false }
            return compareKV(c, Mvccpb_KeyValue())
        }
        return kvs.allSatisfy { compareKV(c, $0) }
    }

    private func compareKV(_ c: Etcdserverpb_Compare, _ kv: Mvccpb_KeyValue) -> Bool {
        let result: Int
        func cmp(_ a: Int64, _ b: Int64) -> Int { a < b ? -1 : (a > b ? 1 : 0) }
        switch c.target {
        case .value:
            var v: [UInt8] = []
            if case let .value(d)? = c.targetUnion { v = [UInt8](d) }
            result = compareBytes([UInt8](kv.value), v)
        case .create:
            if case let .createRevision(r)? = c.targetUnion { result = cmp(kv.createRevision, r) } else { result = cmp(kv.createRevision, 0) }
        case .mod:
            if case let .modRevision(r)? = c.targetUnion { result = cmp(kv.modRevision, r) } else { result = cmp(kv.modRevision, 0) }
        case .version:
            if case let .version(r)? = c.targetUnion { result = cmp(kv.version, r) } else { result = cmp(kv.version, 0) }
        case .lease:
            if case let .lease(r)? = c.targetUnion { result = cmp(kv.lease, r) } else { result = cmp(kv.lease, 0) }
        case .UNRECOGNIZED:
            return true
        }
        switch c.result {
        case .equal: return result == 0
        case .notEqual: return result != 0
        case .greater: return result > 0
        case .less: return result < 0
        case .UNRECOGNIZED: return true
        }
    }

    /// Writes one put at the txn's next sub-revision.
    private func putKey(_ key: [UInt8], _ value: [UInt8], lease: Int64, _ w: inout WriteTxn) throws(MVCCError) {
        let rev = w.beginRev + 1
        var created = rev
        var version: Int64 = 0
        let ki = index.get(key)
        if let state = ki?.get(atRev: rev) {
            created = state.created.main
            version = state.version
        }
        let previousLease = ki?.get(atRev: rev) != nil ? ki!.lease : 0
        let revision = Revision(main: rev, sub: Int64(w.changes))
        var kv = Mvccpb_KeyValue()
        kv.key = Data(key)
        kv.value = Data(value)
        kv.createRevision = created
        kv.modRevision = rev
        kv.version = version + 1
        kv.lease = lease
        let bytes = [UInt8](try! kv.serializedBytes() as [UInt8])
        let revisionKey = revision.bytes()
        try batch(changes: 1) { tx throws(BackendError) in try keyBucket(tx).putSequential(revisionKey, bytes) }
        uncommitted[revisionKey] = bytes
        let entry = ki ?? index.getOrInsert(key)
        entry.put(revision)
        entry.lease = lease
        attach(key, lease: lease, previous: previousLease)
        w.changes += 1
        if !watchers.isEmpty {
            var event = Mvccpb_Event()
            event.type = .put
            event.kv = kv
            txnEvents.append(event)
        }
    }

    /// Writes one tombstone at the txn's next sub-revision.
    func deleteKey(_ key: [UInt8], _ w: inout WriteTxn) throws(MVCCError) {
        if let ki = index.get(key), ki.get(atRev: w.readRev) != nil {
            detach(key, lease: ki.lease)
            ki.lease = 0
        }
        let revision = Revision(main: w.beginRev + 1, sub: Int64(w.changes))
        var kv = Mvccpb_KeyValue()
        kv.key = Data(key)
        let bytes = [UInt8](try! kv.serializedBytes() as [UInt8])
        let revisionKey = revision.bytes(tombstone: true)
        try batch(changes: 1) { tx throws(BackendError) in try keyBucket(tx).putSequential(revisionKey, bytes) }
        uncommitted[revisionKey] = bytes
        index.get(key)?.tombstone(revision)
        w.changes += 1
        if !watchers.isEmpty {
            var event = Mvccpb_Event()
            event.type = .delete
            event.kv = kv
            event.kv.modRevision = revision.main
            txnEvents.append(event)
        }
    }

    private func leaseExists(_ id: Int64) throws(MVCCError) -> Bool {
        if options.leases { return leases[id] != nil }
        return try backendCall { () throws(BackendError) in
            let read = try backend.beginRead()
            defer { read.end() }
            guard let bucket = try? read.bucket(KVStore.leaseBucket) else { return false }
            return try bucket.get(bigEndianBytes(UInt64(bitPattern: id))) != nil
        }
    }

    // MARK: Compaction

    /// etcd's Compact: persists the scheduled revision (committed at once), compacts the index,
    /// then deletes every revision it no longer needs, `compactionBatchLimit` per commit, and
    /// records the finished revision. Returns when the deletes are done (etcd's `physical`).
    /// - Throws: `.compacted` when `rev` ≤ the compacted revision, `.futureRevision` above the current.
    public func compact(_ rev: Int64, index raftIndex: UInt64 = 0) throws(MVCCError) -> Etcdserverpb_CompactionResponse {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            if rev <= compacted { throw MVCCError.compacted }
            if rev > current { throw MVCCError.futureRevision }
            try compactLocked(rev, resumed: false)
            var response = Etcdserverpb_CompactionResponse()
            response.header.revision = current
            return response
        }
    }

    private func compactLocked(_ rev: Int64, resumed: Bool) throws(MVCCError) {
        compacted = rev
        if !resumed {
            try batch(changes: 0) { tx throws(BackendError) in
                try tx.bucket(KVStore.metaBucket).put(KVStore.scheduledCompactKey, Revision(main: rev).bytes())
            }
        }
        try forceCommitLocked()
        var keep = Set<Revision>()
        var emptied: [[UInt8]] = []
        index.all { ki in
            ki.compact(atRev: rev, available: &keep)
            if ki.isEmpty { emptied.append(ki.key) }
        }
        for key in emptied { index.remove(key) }
        let end = Array(bigEndianBytes(UInt64(rev + 1)))
        var from = [UInt8](repeating: 0, count: 17)
        while true {
            let keys = try backendCall { () throws(BackendError) -> [[UInt8]] in
                let read = try backend.beginRead()
                defer { read.end() }
                return try read.bucket(KVStore.keyBucket).entries(from: from, to: end, limit: options.compactionBatchLimit).map(\.key)
            }
            var deletes: [[UInt8]] = []
            for key in keys {
                let (revision, _) = try Revision.decode(key)
                if !keep.contains(revision) { deletes.append(key) }
            }
            let done = keys.count < options.compactionBatchLimit
            try batch(changes: deletes.count) { tx throws(BackendError) in
                let bucket = try tx.bucket(KVStore.keyBucket)
                for key in deletes { try bucket.delete(key) }
                if done { try tx.bucket(KVStore.metaBucket).put(KVStore.finishedCompactKey, Revision(main: rev).bytes()) }
            }
            try forceCommitLocked()
            if done { return }
            if let last = keys.last, let (r, _) = try? Revision.decode(last) {
                from = Revision(main: r.main, sub: r.sub + 1).bytes()
            }
        }
    }

    // MARK: Hashes

    /// etcd's HashKV (`HashByRev`): CRC-32C over "key" and then every `key` bucket entry with
    /// main ≤ `rev` that a compaction at `rev` would keep. `rev` 0 means current.
    public func hashKV(_ rev: Int64 = 0) throws(MVCCError) -> (hash: UInt32, currentRevision: Int64, compactRevision: Int64) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            if rev > 0 && rev <= compacted { throw MVCCError.compacted }
            if rev > current { throw MVCCError.futureRevision }
            let at = rev == 0 ? current : rev
            var keep = Set<Revision>()
            index.all { $0.keep(atRev: at, available: &keep) }
            try forceCommitLocked()
            let upper = Revision(main: at + 1)
            let lower = Revision(main: compacted + 1)
            var crc = CRC32C.update(0, Array("key".utf8))
            try backendCall { () throws(BackendError) in
                let read = try backend.beginRead()
                defer { read.end() }
                let bucket = try read.bucket(KVStore.keyBucket)
                try bucket.range(from: UnsafeRawBufferPointer(start: nil, count: 0), to: nil, limit: 0, reverse: false) { k, v throws(BackendError) in
                    guard let (r, _) = try? Revision.decode(Array(k)) else { return true }
                    if !(r < upper) { return true }
                    if r < lower && !keep.isEmpty && !keep.contains(r) { return true }
                    crc = CRC32C.update(crc, k)
                    crc = CRC32C.update(crc, v)
                    return true
                }
            }
            return (crc, current, compacted)
        }
    }

    /// etcd's Hash RPC: the backend hash without `meta/consistent_index`, after a commit.
    public func hash() throws(MVCCError) -> UInt32 {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try forceCommitLocked()
            return try backendCall { () throws(BackendError) in
                let read = try backend.beginRead()
                defer { read.end() }
                return try backendHash(read, skip: [KVStore.metaBucket + [KVStore.consistentIndexKey]])
            }
        }
    }

    // MARK: Batch

    /// Commits the batch when its interval has passed (call it from a timer).
    public func commitIfDue() throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try writerCall { () throws(BackendError) in try writer.commitIfDue() }
        }
    }

    /// Commits the batch now (snapshots, hashes, compaction, close).
    public func forceCommit() throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            try forceCommitLocked()
        }
    }

    func forceCommitLocked() throws(MVCCError) {
        try writerCall { () throws(BackendError) in try writer.forceCommit() }
    }

    /// Commits and stops; the backend stays open (its owner closes it).
    public func close() throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            if failure == nil { try forceCommitLocked() }
            failure = failure ?? "closed"
        }
    }

    func batch(changes: Int, _ body: (any BackendWriteTx) throws(BackendError) -> Void) throws(MVCCError) {
        try writerCall { () throws(BackendError) in try writer.write(changes: changes, body) }
    }

    /// Calls the batch writer; clears the read-your-writes buffer after a commit; a lost batch
    /// stops the store (its index has changes the backend no longer holds).
    private func writerCall(_ body: () throws(BackendError) -> Void) throws(MVCCError) {
        do throws(BackendError) {
            try body()
        } catch {
            failure = "the backend lost a batch (\(error)); reopen the store to recover from the backend and the WAL"
            cachedKeyBucket = nil
            throw MVCCError.backend(error.description)
        }
        let commits = writer.counters.commits
        if commits != commitsSeen {
            commitsSeen = commits
            uncommitted.removeAll(keepingCapacity: true)
            authPending.removeAll()
            cachedKeyBucket = nil
        }
    }

    func checkOpen() throws(MVCCError) {
        if let failure { throw failure == "closed" ? MVCCError.closed : MVCCError.backend(failure) }
    }

    func backendCall<T>(_ body: () throws(BackendError) -> T) throws(MVCCError) -> T {
        do throws(BackendError) { return try body() } catch { throw MVCCError.backend(error.description) }
    }
}

/// etcd's `mkGteRange`: a range end of "\0" means every key ≥ the start (an empty end here).
func gteRange(_ end: [UInt8]) -> [UInt8] { end == [0] ? [] : end }
