import Foundation
import KeelProto

/// A small, obviously correct model of etcd's MVCC semantics: the full history of every key,
/// and reads answered by scanning it. Slow and simple on purpose.
final class MVCCModel {
    struct Record {
        var main: Int64
        var value: [UInt8]
        var created: Int64
        var version: Int64
        var lease: Int64
        var tombstone: Bool
    }

    var history: [[UInt8]: [Record]] = [:]
    var current: Int64 = 1
    var compacted: Int64 = -1

    /// The key's state at `rev`, if it exists then.
    func state(_ key: [UInt8], at rev: Int64) -> Record? {
        guard let last = history[key]?.last(where: { $0.main <= rev }), !last.tombstone else { return nil }
        return last
    }

    func kv(_ key: [UInt8], _ r: Record) -> Mvccpb_KeyValue {
        var kv = Mvccpb_KeyValue()
        kv.key = Data(key)
        kv.value = Data(r.value)
        kv.createRevision = r.created
        kv.modRevision = r.main
        kv.version = r.version
        kv.lease = r.lease
        return kv
    }

    func keys(_ key: [UInt8], _ rangeEnd: [UInt8], at rev: Int64) -> [[UInt8]] {
        if rangeEnd.isEmpty { return state(key, at: rev) == nil ? [] : [key] }
        let end: [UInt8]? = rangeEnd == [0] ? nil : rangeEnd
        return history.keys.filter { k in
            !k.lexicographicallyPrecedes(key) && (end == nil || k.lexicographicallyPrecedes(end!)) && state(k, at: rev) != nil
        }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    enum Failure: Error, Equatable { case compacted, future, keyNotFound }

    func range(_ r: Etcdserverpb_RangeRequest, readRev: Int64? = nil) throws -> Etcdserverpb_RangeResponse {
        let readRev = readRev ?? current
        let rev = r.revision <= 0 ? readRev : r.revision
        if rev > readRev { throw Failure.future }
        if rev < compacted { throw Failure.compacted }
        let ks = keys([UInt8](r.key), [UInt8](r.rangeEnd), at: rev)
        var kvs = ks.map { kv($0, state($0, at: rev)!) }
        let count = kvs.count
        if r.countOnly { kvs = [] }
        // etcd quirk: with no sort order and no filters, only limit+1 keys (in key order) are
        // fetched, even when a non-key sort target will sort them afterwards.
        let filters = r.minModRevision != 0 || r.maxModRevision != 0 || r.minCreateRevision != 0 || r.maxCreateRevision != 0
        if r.sortOrder == .none && !filters && r.limit > 0 { kvs = Array(kvs.prefix(Int(r.limit) + 1)) }
        if r.maxModRevision != 0 { kvs.removeAll { $0.modRevision > r.maxModRevision } }
        if r.minModRevision != 0 { kvs.removeAll { $0.modRevision < r.minModRevision } }
        if r.maxCreateRevision != 0 { kvs.removeAll { $0.createRevision > r.maxCreateRevision } }
        if r.minCreateRevision != 0 { kvs.removeAll { $0.createRevision < r.minCreateRevision } }
        var order = r.sortOrder
        if r.sortTarget != .key && order == .none { order = .ascend }
        if order != .none {
            func keyOf(_ kv: Mvccpb_KeyValue) -> [Int64] {
                switch r.sortTarget {
                case .version: return [kv.version]
                case .create: return [kv.createRevision]
                case .mod: return [kv.modRevision]
                default: return []
                }
            }
            func less(_ a: Mvccpb_KeyValue, _ b: Mvccpb_KeyValue) -> Bool {
                switch r.sortTarget {
                case .value: return [UInt8](a.value).lexicographicallyPrecedes([UInt8](b.value))
                case .key: return [UInt8](a.key).lexicographicallyPrecedes([UInt8](b.key))
                default: return keyOf(a)[0] < keyOf(b)[0]
                }
            }
            // Stable: ties keep key order.
            var indexed = Array(kvs.enumerated())
            indexed.sort { x, y in
                let (a, b) = order == .descend ? (y.element, x.element) : (x.element, y.element)
                if less(a, b) { return true }
                if less(b, a) { return false }
                return x.offset < y.offset
            }
            kvs = indexed.map(\.element)
        }
        var response = Etcdserverpb_RangeResponse()
        if r.limit > 0 && kvs.count > Int(r.limit) {
            kvs = Array(kvs.prefix(Int(r.limit)))
            response.more = true
        }
        if r.keysOnly { for i in kvs.indices { kvs[i].value = Data() } }
        response.kvs = kvs
        response.count = Int64(count)
        response.header.revision = readRev
        return response
    }

    // Writes inside one txn: `changes` counts them; all share main current+1.
    var changes = 0
    var writeRev: Int64 { current + 1 }
    var readRev: Int64 { changes > 0 ? current + 1 : current }

    func put(_ key: [UInt8], _ value: [UInt8], lease: Int64) {
        let previous = state(key, at: readRev)
        history[key, default: []].append(Record(main: writeRev, value: value, created: previous?.created ?? writeRev,
                                                version: (previous?.version ?? 0) + 1, lease: lease, tombstone: false))
        changes += 1
    }

    func delete(_ key: [UInt8]) {
        history[key, default: []].append(Record(main: writeRev, value: [], created: 0, version: 0, lease: 0, tombstone: true))
        changes += 1
    }

    func begin() { changes = 0 }
    func end() { if changes > 0 { current += 1 }; changes = 0 }

    func applyPut(_ p: Etcdserverpb_PutRequest) throws -> Etcdserverpb_PutResponse {
        var response = Etcdserverpb_PutResponse()
        let key = [UInt8](p.key)
        let previous = state(key, at: readRev)
        if p.prevKv, let previous { response.prevKv = kv(key, previous) }
        var value = [UInt8](p.value)
        var lease = p.lease
        if p.ignoreValue || p.ignoreLease {
            guard let previous else { throw Failure.keyNotFound }
            if p.ignoreValue { value = previous.value }
            if p.ignoreLease { lease = previous.lease }
        }
        put(key, value, lease: lease)
        response.header.revision = writeRev
        return response
    }

    func applyDelete(_ d: Etcdserverpb_DeleteRangeRequest) -> Etcdserverpb_DeleteRangeResponse {
        var response = Etcdserverpb_DeleteRangeResponse()
        let ks = keys([UInt8](d.key), [UInt8](d.rangeEnd), at: readRev)
        if d.prevKv { response.prevKvs = ks.map { kv($0, state($0, at: readRev)!) } }
        for k in ks { delete(k) }
        response.deleted = Int64(ks.count)
        response.header.revision = changes > 0 ? writeRev : current
        return response
    }

    func compare(_ c: Etcdserverpb_Compare) -> Bool {
        let ks = keys([UInt8](c.key), [UInt8](c.rangeEnd), at: readRev)
        func check(_ kv: Mvccpb_KeyValue) -> Bool {
            let result: Int
            switch c.target {
            case .value:
                let v = [UInt8](kv.value), t = [UInt8](c.value)
                result = v == t ? 0 : (v.lexicographicallyPrecedes(t) ? -1 : 1)
            case .create: result = kv.createRevision == c.createRevision ? 0 : (kv.createRevision < c.createRevision ? -1 : 1)
            case .mod: result = kv.modRevision == c.modRevision ? 0 : (kv.modRevision < c.modRevision ? -1 : 1)
            case .version: result = kv.version == c.version ? 0 : (kv.version < c.version ? -1 : 1)
            default: result = kv.lease == c.lease ? 0 : (kv.lease < c.lease ? -1 : 1)
            }
            switch c.result {
            case .equal: return result == 0
            case .notEqual: return result != 0
            case .greater: return result > 0
            default: return result < 0
            }
        }
        if ks.isEmpty { return c.target == .value ? false : check(Mvccpb_KeyValue()) }
        return ks.allSatisfy { check(kv($0, state($0, at: readRev)!)) }
    }

    /// A whole txn as etcd applies it: every branch decided first against the state before it,
    /// the chosen ops checked, then applied.
    func txn(_ t: Etcdserverpb_TxnRequest) throws -> Etcdserverpb_TxnResponse {
        var path: [Bool] = []
        func decide(_ t: Etcdserverpb_TxnRequest) {
            let ok = t.compare.allSatisfy(compare)
            path.append(ok)
            for op in ok ? t.success : t.failure { if case let .requestTxn(inner)? = op.request { decide(inner) } }
        }
        decide(t)
        var cursor = 0
        func check(_ t: Etcdserverpb_TxnRequest) throws {
            let ok = path[cursor]
            cursor += 1
            for op in ok ? t.success : t.failure {
                switch op.request {
                case let .requestPut(p)?:
                    if (p.ignoreValue || p.ignoreLease) && state([UInt8](p.key), at: current) == nil { throw Failure.keyNotFound }
                case let .requestRange(r)?:
                    if r.revision > current { throw Failure.future }
                    if r.revision != 0 && r.revision < compacted { throw Failure.compacted }
                case let .requestTxn(inner)?: try check(inner)
                default: break
                }
            }
        }
        try check(t)
        cursor = 0
        return try applyTxn(t, path: path, cursor: &cursor)
    }

    func applyTxn(_ t: Etcdserverpb_TxnRequest, path: [Bool], cursor: inout Int) throws -> Etcdserverpb_TxnResponse {
        var response = Etcdserverpb_TxnResponse()
        response.succeeded = path[cursor]
        cursor += 1
        for op in response.succeeded ? t.success : t.failure {
            var out = Etcdserverpb_ResponseOp()
            switch op.request {
            case let .requestRange(r)?:
                var rr = try range(r, readRev: readRev)
                rr.header = Etcdserverpb_ResponseHeader()
                rr.header.revision = readRev
                out.response = .responseRange(rr)
            case let .requestPut(p)?:
                var pr = try applyPut(p)
                pr.header = Etcdserverpb_ResponseHeader()
                pr.header.revision = writeRev
                out.response = .responsePut(pr)
            case let .requestDeleteRange(d)?:
                var dr = applyDelete(d)
                dr.header = Etcdserverpb_ResponseHeader()
                dr.header.revision = readRev
                out.response = .responseDeleteRange(dr)
            case let .requestTxn(inner)?:
                var tr = try applyTxn(inner, path: path, cursor: &cursor)
                tr.header = Etcdserverpb_ResponseHeader()
                out.response = .responseTxn(tr)
            case nil: break
            }
            response.responses.append(out)
        }
        return response
    }
}
