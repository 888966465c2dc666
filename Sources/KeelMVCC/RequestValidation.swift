import KeelProto

/// etcd's checks of write requests before they are proposed (`v3rpc/key.go`): empty keys,
/// `ignore_value`/`ignore_lease` misuse, the txn operation limit, and the duplicate-key rule.
/// The server calls these before raft; the store calls them too, so embedded callers get the
/// same errors.
extension KVStore {
    public static func validate(_ p: Etcdserverpb_PutRequest) throws(MVCCError) {
        if p.key.isEmpty { throw MVCCError.emptyKey }
        if p.ignoreValue && !p.value.isEmpty { throw MVCCError.valueProvided }
        if p.ignoreLease && p.lease != 0 { throw MVCCError.leaseProvided }
    }

    public static func validate(_ t: Etcdserverpb_TxnRequest, maxOps: Int) throws(MVCCError) {
        if max(t.compare.count, t.success.count, t.failure.count) > maxOps { throw MVCCError.tooManyOperations }
        for c in t.compare where c.key.isEmpty { throw MVCCError.emptyKey }
        for op in t.success + t.failure {
            switch op.request {
            case let .requestRange(r)?: if r.key.isEmpty { throw MVCCError.emptyKey }
            case let .requestPut(p)?: try validate(p)
            case let .requestDeleteRange(d)?: if d.key.isEmpty { throw MVCCError.emptyKey }
            case let .requestTxn(inner)?: try validate(inner, maxOps: maxOps)
            case nil: break
            }
        }
        _ = try checkIntervals(t.success)
        _ = try checkIntervals(t.failure)
    }

    /// A key range as etcd's interval tree sees it: `[begin, end)`, where an empty end is
    /// "infinity" and a missing end is the single key.
    struct KeyInterval {
        let begin: [UInt8]
        let end: [UInt8]?

        /// Whether the single key `k` lies inside (etcd's affine string comparison).
        func contains(_ k: [UInt8]) -> Bool {
            guard let end else { return k == begin }
            if compareBytes(begin, k) > 0 { return false }
            if end.isEmpty { return true }
            return compareBytes(k, end) < 0
        }
    }

    /// etcd's `checkIntervals`: a key may be put at most once in a branch (nested txns
    /// included; the then and else branches of one nested txn may put the same key), and
    /// never both put and deleted.
    static func checkIntervals(_ ops: [Etcdserverpb_RequestOp]) throws(MVCCError) -> (puts: Set<[UInt8]>, deletes: [KeyInterval]) {
        var deletes: [KeyInterval] = []
        for op in ops {
            guard case let .requestDeleteRange(d)? = op.request else { continue }
            deletes.append(KeyInterval(begin: [UInt8](d.key), end: d.rangeEnd.isEmpty ? nil : [UInt8](d.rangeEnd)))
        }
        var puts = Set<[UInt8]>()
        for op in ops {
            guard case let .requestTxn(inner)? = op.request else { continue }
            let (putsThen, deletesThen) = try checkIntervals(inner.success)
            let (putsElse, deletesElse) = try checkIntervals(inner.failure)
            for k in putsThen {
                if puts.contains(k) || deletes.contains(where: { $0.contains(k) }) { throw MVCCError.duplicateKey }
                puts.insert(k)
            }
            for k in putsElse {
                if puts.contains(k) && !putsThen.contains(k) { throw MVCCError.duplicateKey }
                if deletes.contains(where: { $0.contains(k) }) { throw MVCCError.duplicateKey }
                puts.insert(k)
            }
            deletes += deletesThen + deletesElse
        }
        for op in ops {
            guard case let .requestPut(p)? = op.request else { continue }
            let k = [UInt8](p.key)
            if puts.contains(k) || deletes.contains(where: { $0.contains(k) }) { throw MVCCError.duplicateKey }
            puts.insert(k)
        }
        return (puts, deletes)
    }
}
