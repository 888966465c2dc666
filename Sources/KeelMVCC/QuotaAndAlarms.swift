import Foundation
import KeelBackend
import KeelProto

/// etcd's backend quota and alarms: a write whose cost would take the backend to the quota
/// raises NOSPACE (persisted in `alarm`); while NOSPACE is active, puts, txns with puts and
/// lease grants fail with "mvcc: database space exceeded"; deletes and reads go on; `disarm`
/// clears it.
extension KVStore {
    /// etcd's default quota, 2 GiB.
    public static let defaultQuotaBytes: Int64 = 2 << 30
    /// Bytes a put costs beyond its key and value (etcd's `kvOverhead`).
    public static let putOverhead = 256
    /// Bytes a lease grant costs (etcd's `leaseOverhead`).
    public static let leaseOverhead = 64

    /// etcd's cost of a put.
    public static func cost(_ p: Etcdserverpb_PutRequest) -> Int { putOverhead + p.key.count + p.value.count }

    /// etcd's cost of a txn: the costlier of its two branches' top-level puts.
    public static func cost(_ t: Etcdserverpb_TxnRequest) -> Int {
        func branch(_ ops: [Etcdserverpb_RequestOp]) -> Int {
            ops.reduce(0) { sum, op in if case let .requestPut(p)? = op.request { return sum + cost(p) }; return sum }
        }
        return max(branch(t.success), branch(t.failure))
    }

    /// The quota in force: `options.quotaBytes`, 0 meaning etcd's default, negative none.
    public var quotaBytes: Int64? {
        options.quotaBytes < 0 ? nil : (options.quotaBytes == 0 ? KVStore.defaultQuotaBytes : options.quotaBytes)
    }

    /// Refuses a write of `cost` bytes: NOSPACE active, or the backend would reach the quota
    /// (which raises NOSPACE for this member). Called with the lock held.
    func checkSpace(cost: Int) throws(MVCCError) {
        // A txn without puts costs nothing and is never capped (etcd's applierV3Capped).
        guard cost > 0 else { return }
        if alarms.contains(where: { $0.alarm == .nospace }) { throw MVCCError.noSpace }
        guard let quota = quotaBytes else { return }
        let size = try backendCall { () throws(BackendError) in try backend.size() }
        if size + Int64(cost) >= quota {
            try activateLocked(memberID: options.memberID, alarm: .nospace)
            throw MVCCError.noSpace
        }
    }

    /// The active alarms, as etcd lists them (by member, then type).
    public func alarmList() -> [Etcdserverpb_AlarmMember] {
        withLock { alarms.sorted { ($0.memberID, $0.alarm.rawValue) < ($1.memberID, $1.alarm.rawValue) } }
    }

    /// Activates an alarm (persisted). False when it was already active.
    @discardableResult
    public func activateAlarm(memberID: UInt64, alarm: Etcdserverpb_AlarmType) throws(MVCCError) -> Bool {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            return try activateLocked(memberID: memberID, alarm: alarm)
        }
    }

    /// Deactivates an alarm (etcdctl `alarm disarm`). False when it was not active.
    @discardableResult
    public func deactivateAlarm(memberID: UInt64, alarm: Etcdserverpb_AlarmType) throws(MVCCError) -> Bool {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            guard let i = alarms.firstIndex(where: { $0.memberID == memberID && $0.alarm == alarm }) else { return false }
            let key = KVStore.alarmKey(alarms[i])
            try batch(changes: 1) { tx throws(BackendError) in try tx.bucket(KVStore.alarmBucket).delete(key) }
            alarms.remove(at: i)
            return true
        }
    }

    @discardableResult
    func activateLocked(memberID: UInt64, alarm: Etcdserverpb_AlarmType) throws(MVCCError) -> Bool {
        if alarms.contains(where: { $0.memberID == memberID && $0.alarm == alarm }) { return false }
        var member = Etcdserverpb_AlarmMember()
        member.memberID = memberID
        member.alarm = alarm
        let key = KVStore.alarmKey(member)
        try batch(changes: 1) { tx throws(BackendError) in
            if (try? tx.bucket(KVStore.alarmBucket)) == nil { try tx.createBucket(KVStore.alarmBucket) }
            try tx.bucket(KVStore.alarmBucket).put(key, [])
        }
        alarms.append(member)
        try forceCommitLocked()
        return true
    }

    static func alarmKey(_ member: Etcdserverpb_AlarmMember) -> [UInt8] { [UInt8](try! member.serializedBytes() as [UInt8]) }

    /// Loads the `alarm` bucket, if there is one.
    func restoreAlarms() throws(MVCCError) {
        let records = try backendCall { () throws(BackendError) -> [[UInt8]] in
            let read = try backend.beginRead()
            defer { read.end() }
            guard try read.buckets(in: []).contains(KVStore.alarmBucket[0]) else { return [] }
            return try read.bucket(KVStore.alarmBucket).entries().map(\.key)
        }
        alarms = []
        for key in records {
            guard let member = try? Etcdserverpb_AlarmMember(serializedBytes: key) else {
                throw MVCCError.corrupt("alarm bucket key \(key) is not an AlarmMember")
            }
            alarms.append(member)
        }
    }
}
