import Foundation
import KeelBackend
import KeelIO
import KeelProto

/// One lease: its granted TTL, the keys attached to it, and when it expires (only while the
/// store is primary; otherwise never).
struct Lease {
    let id: Int64
    var ttl: Int64
    /// A checkpointed remaining TTL (0: none), as etcd persists it.
    var remainingTTL: Int64 = 0
    var keys: Set<[UInt8]> = []
    /// Seconds on the store's clock; nil for "never" (not primary).
    var expiry: Double?

    /// The TTL a refresh counts from.
    var effectiveTTL: Int64 { remainingTTL > 0 ? remainingTTL : ttl }
}

/// Lease errors with etcd's messages.
extension MVCCError {
    /// Grant of an ID that exists.
    public static let leaseExists = MVCCError.lease("lease already exists")
    /// A TTL over etcd's maximum (9,000,000,000 s).
    public static let leaseTTLTooLarge = MVCCError.lease("too large lease TTL")
    /// Renew while not primary (the server forwards it to the leader).
    public static let notPrimary = MVCCError.lease("not a primary lessor")
}

/// What `leaseTimeToLive` reports.
public struct LeaseStatus: Sendable, Equatable {
    public var id: Int64
    /// The TTL granted.
    public var grantedTTL: Int64
    /// Seconds left (rounded as etcd rounds them); the granted TTL while not primary.
    public var remaining: Int64
    /// Attached keys, sorted, when asked for.
    public var keys: [[UInt8]]
}

extension KVStore {
    /// etcd's maximum lease TTL in seconds.
    public static let maxLeaseTTL: Int64 = 9_000_000_000

    /// etcd's LeaseGrant: an `id` of 0 gets one from etcd's generator (`LeaseIDGenerator` with
    /// `options.memberID`); a TTL below `minLeaseTTL` is raised. Persisted in `lease` in the
    /// batch with `index`. A replicated server picks the ID before proposing (as etcd does), so
    /// every member applies the same one.
    public func grantLease(id requested: Int64, ttl: Int64, index raftIndex: UInt64 = 0) throws(MVCCError) -> (id: Int64, ttl: Int64) {
        try withLockedLeases { () throws(MVCCError) in
            var id = requested
            if id == 0 {
                repeat { id = leaseIDGenerator.next() } while leases[id] != nil
            }
            if ttl > KVStore.maxLeaseTTL { throw MVCCError.leaseTTLTooLarge }
            if leases[id] != nil { throw MVCCError.leaseExists }
            try checkSpace(cost: KVStore.leaseOverhead)
            var lease = Lease(id: id, ttl: max(ttl, options.minLeaseTTL))
            lease.expiry = primary ? clockNow() + Double(lease.effectiveTTL) : nil
            leases[id] = lease
            try persist(lease)
            try saveConsistentIndex(raftIndex)
            return (id, lease.ttl)
        }
    }

    /// etcd's LeaseRevoke: deletes the attached keys (sorted, one write txn: one revision) and
    /// the `lease` entry, in the same batch. Returns the revision after it.
    public func revokeLease(id: Int64, index raftIndex: UInt64 = 0) throws(MVCCError) -> Int64 {
        try withLockedLeases { () throws(MVCCError) in
            guard let lease = leases[id] else { throw MVCCError.leaseNotFound }
            var w = WriteTxn(beginRev: current)
            txnEvents = []
            do throws(MVCCError) {
                for key in lease.keys.sorted(by: { compareBytes($0, $1) < 0 }) where index.get(key)?.get(atRev: w.readRev) != nil {
                    try deleteKey(key, &w)
                }
                let leaseKey = bigEndianBytes(UInt64(bitPattern: id))
                try batch(changes: 1) { tx throws(BackendError) in try tx.bucket(KVStore.leaseBucket).delete(leaseKey) }
            } catch {
                failure = "revoking lease \(id) failed halfway (\(error)); reopen the store"
                writer.abort(because: failure!)
                cachedKeyBucket = nil
                throw error
            }
            leases[id] = nil
            if w.changes > 0 {
                current += 1
                let events = txnEvents
                txnEvents = []
                notify(revision: current, events: events)
            }
            try saveConsistentIndex(raftIndex)
            return current
        }
    }

    /// etcd's keep-alive: restarts the lease's countdown from its TTL; only while primary.
    public func renewLease(id: Int64) throws(MVCCError) -> Int64 {
        try withLockedLeases { () throws(MVCCError) in
            guard primary else { throw MVCCError.notPrimary }
            guard var lease = leases[id] else { throw MVCCError.leaseNotFound }
            if let expiry = lease.expiry, expiry <= clockNow() { throw MVCCError.leaseNotFound }
            lease.remainingTTL = 0
            lease.expiry = clockNow() + Double(lease.ttl)
            leases[id] = lease
            return lease.ttl
        }
    }

    /// etcd's LeaseTimeToLive; nil for an unknown lease (the server answers TTL -1).
    public func leaseTimeToLive(id: Int64, keys: Bool = false) -> LeaseStatus? {
        withLock {
            guard let lease = leases[id] else { return nil }
            var remaining = lease.effectiveTTL
            if let expiry = lease.expiry { remaining = Int64((expiry - clockNow()).rounded()) }
            return LeaseStatus(id: id, grantedTTL: lease.ttl, remaining: max(remaining, 0),
                               keys: keys ? lease.keys.sorted { compareBytes($0, $1) < 0 } : [])
        }
    }

    /// etcd's lease checkpoint (applied through raft): records a lease's remaining TTL, persisted,
    /// so a new leader counts from it instead of the full TTL.
    public func checkpointLease(id: Int64, remainingTTL: Int64, index raftIndex: UInt64 = 0) throws(MVCCError) {
        try withLockedLeases { () throws(MVCCError) in
            guard var lease = leases[id] else { throw MVCCError.leaseNotFound }
            lease.remainingTTL = remainingTTL
            leases[id] = lease
            try persist(lease)
            try saveConsistentIndex(raftIndex)
        }
    }

    /// Every lease ID, ascending.
    public func leaseIDs() -> [Int64] { withLock { leases.keys.sorted() } }

    /// Becoming primary (leader): every lease expires `extend` seconds after its TTL from now,
    /// as etcd's `Promote` does.
    public func promote(extend: Double) {
        withLock {
            primary = true
            let now = clockNow()
            for id in leases.keys { leases[id]!.expiry = now + extend + Double(leases[id]!.effectiveTTL) }
        }
    }

    /// No longer primary: leases stop expiring.
    public func demote() {
        withLock {
            primary = false
            for id in leases.keys { leases[id]!.expiry = nil }
        }
    }

    /// Whether leases expire here (the leader's store).
    public var isPrimary: Bool { withLock { primary } }

    /// Up to `limit` expired leases, earliest first, for the caller to revoke (through raft).
    public func expiredLeases(limit: Int = 500) -> [Int64] {
        withLock {
            let now = clockNow()
            var expired: [(id: Int64, at: Double)] = []
            for lease in leases.values {
                if let expiry = lease.expiry, expiry <= now { expired.append((lease.id, expiry)) }
            }
            expired.sort { a, b in a.at != b.at ? a.at < b.at : a.id < b.id }
            return expired.prefix(limit).map { $0.id }
        }
    }

    // MARK: Internals (called with the lock held)

    private func withLockedLeases<T>(_ body: () throws(MVCCError) -> T) throws(MVCCError) -> T {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            guard options.leases else { throw MVCCError.lease("leases are disabled in this store's options") }
            return try body()
        }
    }

    func persist(_ lease: Lease) throws(MVCCError) {
        var record = Leasepb_Lease()
        record.id = lease.id
        record.ttl = lease.ttl
        record.remainingTtl = lease.remainingTTL
        let bytes = [UInt8](try! record.serializedBytes() as [UInt8])
        let key = bigEndianBytes(UInt64(bitPattern: lease.id))
        try batch(changes: 1) { tx throws(BackendError) in try tx.bucket(KVStore.leaseBucket).put(key, bytes) }
    }

    /// Loads the `lease` bucket (creating it) and attaches every live key's lease.
    func restoreLeases() throws(MVCCError) {
        let exists = try backendCall { () throws(BackendError) -> Bool in
            let read = try backend.beginRead()
            defer { read.end() }
            return try read.buckets(in: []).contains(KVStore.leaseBucket[0])
        }
        if !exists {
            try backendCall { () throws(BackendError) in
                let tx = try backend.beginWrite()
                try tx.createBucket(KVStore.leaseBucket)
                try tx.commit()
            }
        }
        let records = try backendCall { () throws(BackendError) in
            let read = try backend.beginRead()
            defer { read.end() }
            return try read.bucket(KVStore.leaseBucket).entries()
        }
        for record in records {
            guard let l = try? Leasepb_Lease(serializedBytes: record.value) else {
                throw MVCCError.corrupt("lease bucket value for key \(record.key) is not a leasepb.Lease")
            }
            leases[l.id] = Lease(id: l.id, ttl: max(l.ttl, options.minLeaseTTL), remainingTTL: l.remainingTtl, expiry: nil)
        }
        // Attach keys: the lease of each live key's latest value (kept in the index).
        index.all { ki in
            if ki.lease != 0, ki.get(atRev: current) != nil { leases[ki.lease]?.keys.insert(ki.key) }
        }
    }

    func attach(_ key: [UInt8], lease: Int64, previous: Int64) {
        guard options.leases else { return }
        if previous != 0 && previous != lease { leases[previous]?.keys.remove(key) }
        if lease != 0 { leases[lease]?.keys.insert(key) }
    }

    func detach(_ key: [UInt8], lease: Int64) {
        guard options.leases, lease != 0 else { return }
        leases[lease]?.keys.remove(key)
    }

    func clockNow() -> Double { options.clock() }
}

/// etcd's lease ID generator (`pkg/idutil`): the low 16 bits of the member ID, then the low 40
/// bits of the Unix time in milliseconds, then an 8-bit counter; IDs handed out are masked to
/// be positive (`& (2^63-1)`).
public struct LeaseIDGenerator: Sendable {
    private var prefix: UInt64
    private var suffix: UInt64

    public init(memberID: UInt64, unixMilliseconds: UInt64 = UInt64(Date().timeIntervalSince1970 * 1000)) {
        prefix = (memberID & 0xFFFF) << 48
        suffix = (unixMilliseconds & ((1 << 40) - 1)) << 8
    }

    /// The next ID: never 0, never negative.
    public mutating func next() -> Int64 {
        suffix = (suffix + 1) & ((1 << 48) - 1)
        let id = Int64(bitPattern: (prefix | suffix) & UInt64(Int64.max))
        return id == 0 ? next() : id
    }
}
