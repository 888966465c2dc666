import Foundation
import KeelBackend
import KeelBolt
import KeelLMDB
import KeelIO
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

/// Seeded random operation sequences against `MVCCModel`, on every backend: every response,
/// error and revision compared; compaction, reopen and HashKV stability included.
final class MVCCModelTests: XCTestCase {
    enum Engine: String, CaseIterable { case bolt, lmdb, crosscheck }

    func makeBackend(_ engine: Engine, _ dir: String) throws -> any Backend {
        var boltOptions = KeelBolt.Options()
        boltOptions.noSync = true
        var lmdbOptions = LMDBOptions()
        lmdbOptions.noSync = true
        lmdbOptions.mapSize = 1 << 20
        switch engine {
        case .bolt: return try BoltBackend(path: dir + "/db", options: boltOptions)
        case .lmdb: return try LMDBBackend(path: dir + "/lmdb", options: lmdbOptions)
        case .crosscheck:
            return CrossCheckedBackend(primary: try BoltBackend(path: dir + "/db", options: boltOptions),
                                       secondary: try LMDBBackend(path: dir + "/lmdb", options: lmdbOptions))
        }
    }

    struct Gen {
        var rng: SplitMix64
        mutating func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        mutating func chance(_ percent: Int) -> Bool { int(100) < percent }
        static let keys = ["a", "b", "c", "d", "foo", "foo/1", "foo/2", "foo/3", "zz", "k\u{0}x"]
        mutating func key() -> [UInt8] { Array(Gen.keys[int(Gen.keys.count)].utf8) }
        mutating func value() -> Data { Data((0..<int(12)).map { _ in UInt8(97 + int(26)) }) }
        /// A range end: none, a bound, a prefix end, or "\0" (everything from the key on).
        mutating func rangeEnd(for key: [UInt8]) -> Data {
            switch int(5) {
            case 0, 1: return Data()
            case 2: return Data([0])
            case 3: return Data(key.dropLast() + [key.last! &+ 1])
            default: return Data(self.key())
            }
        }
    }

    func rangeRequest(_ g: inout Gen, _ model: MVCCModel) -> Etcdserverpb_RangeRequest {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data(g.key())
        r.rangeEnd = g.rangeEnd(for: [UInt8](r.key))
        if g.chance(30) { r.revision = Int64(g.int(Int(model.current) + 2)) }
        if g.chance(30) { r.limit = Int64(g.int(4)) }
        if g.chance(25) {
            r.sortOrder = [.none, .ascend, .descend][g.int(3)]
            r.sortTarget = [.key, .version, .create, .mod, .value][g.int(5)]
        }
        r.keysOnly = g.chance(10)
        r.countOnly = g.chance(10)
        if g.chance(10) { r.minModRevision = Int64(g.int(Int(model.current) + 1)) }
        if g.chance(10) { r.maxCreateRevision = Int64(g.int(Int(model.current) + 1)) }
        return r
    }

    /// `ignoreValue` only outside txns: inside one, a delete followed by an ignore_value put of
    /// the same key passes etcd's pre-check and then fails mid-apply (etcd panics there; the
    /// store stops, see testIgnoreValueAfterDeleteInOneTxnStopsTheStore).
    func putRequest(_ g: inout Gen, inTxn: Bool = false) -> Etcdserverpb_PutRequest {
        var p = Etcdserverpb_PutRequest()
        p.key = Data(g.key())
        p.prevKv = g.chance(30)
        if !inTxn && g.chance(8) { p.ignoreValue = true } else { p.value = g.value() }
        return p
    }

    func deleteRequest(_ g: inout Gen) -> Etcdserverpb_DeleteRangeRequest {
        var d = Etcdserverpb_DeleteRangeRequest()
        d.key = Data(g.key())
        d.rangeEnd = g.rangeEnd(for: [UInt8](d.key))
        d.prevKv = g.chance(40)
        return d
    }

    func txnRequest(_ g: inout Gen, _ model: MVCCModel, depth: Int = 0) -> Etcdserverpb_TxnRequest {
        var t = Etcdserverpb_TxnRequest()
        for _ in 0..<g.int(3) {
            var c = Etcdserverpb_Compare()
            c.key = Data(g.key())
            if g.chance(20) { c.rangeEnd = g.rangeEnd(for: [UInt8](c.key)) }
            c.result = [.equal, .notEqual, .greater, .less][g.int(4)]
            switch g.int(5) {
            case 0: c.target = .version; c.version = Int64(g.int(4))
            case 1: c.target = .create; c.createRevision = Int64(g.int(Int(model.current) + 1))
            case 2: c.target = .mod; c.modRevision = Int64(g.int(Int(model.current) + 1))
            case 3: c.target = .value; c.value = g.value()
            default: c.target = .lease; c.lease = 0
            }
            t.compare.append(c)
        }
        func ops(_ g: inout Gen) -> [Etcdserverpb_RequestOp] {
            (0..<g.int(4)).map { _ in
                var op = Etcdserverpb_RequestOp()
                switch g.int(depth < 1 ? 4 : 3) {
                case 0: op.request = .requestRange(rangeRequest(&g, model))
                case 1: op.request = .requestPut(putRequest(&g, inTxn: true))
                case 2: op.request = .requestDeleteRange(deleteRequest(&g))
                default: op.request = .requestTxn(txnRequest(&g, model, depth: depth + 1))
                }
                return op
            }
        }
        t.success = ops(&g)
        t.failure = ops(&g)
        return t
    }

    /// Runs `body` on the store and the model; both must succeed with equal responses or fail
    /// with the same error.
    func same<T: Equatable>(_ what: String, _ store: () throws -> T, _ model: () throws -> T, _ context: String) {
        let a = Result { try store() }
        let b = Result { try model() }
        switch (a, b) {
        case let (.success(x), .success(y)):
            XCTAssertEqual(x, y, "\(context): \(what)")
        case let (.failure(x), .failure(y)):
            let expected: MVCCError
            switch y as? MVCCModel.Failure {
            case .compacted?: expected = .compacted
            case .future?: expected = .futureRevision
            case .keyNotFound?: expected = .keyNotFound
            case nil: expected = .corrupt("model: \(y)")
            }
            XCTAssertEqual(x as? MVCCError, expected, "\(context): \(what)")
        case let (.success(x), .failure(y)):
            XCTFail("\(context): \(what): store returned \(x), model failed with \(y)")
        case let (.failure(x), .success(y)):
            XCTFail("\(context): \(what): store failed with \(x), model returned \(y)")
        }
    }

    func run(engine: Engine, seed: UInt64, operations: Int) throws {
        let dir = try temporaryDirectory(self)
        var backend = try makeBackend(engine, dir)
        var options = KVStore.Options()
        options.batchLimit = 7 + Int(seed % 50)
        options.compactionBatchLimit = 3
        var store = try KVStore(backend: backend, options: options)
        let model = MVCCModel()
        var g = Gen(rng: SplitMix64(seed: seed))
        var hashes: [Int64: UInt32] = [:]
        var raftIndex: UInt64 = 0
        var counts: [String: Int] = [:]
        for step in 0..<operations {
            let context = "\(engine) seed \(seed) step \(step)"
            let choice = g.int(100)
            raftIndex += 1
            switch choice {
            case 0..<28:
                let p = putRequest(&g)
                counts["put", default: 0] += 1
                same("put", { try store.put(p, index: raftIndex) }, {
                    model.begin(); defer { model.end() }
                    return try model.applyPut(p)
                }, context)
            case 28..<38:
                let d = deleteRequest(&g)
                counts["delete", default: 0] += 1
                same("delete", { try store.deleteRange(d, index: raftIndex) }, {
                    model.begin(); defer { model.end() }
                    return model.applyDelete(d)
                }, context)
            case 38..<68:
                let r = rangeRequest(&g, model)
                counts["range", default: 0] += 1
                same("range \(r)", { try store.range(r) }, { try model.range(r) }, context)
            case 68..<85:
                let t = txnRequest(&g, model)
                guard (try? KVStore.validate(t, maxOps: 128)) != nil else { counts["txn refused", default: 0] += 1; continue }
                counts["txn", default: 0] += 1
                same("txn \(t)", { try store.txn(t, index: raftIndex) }, {
                    model.begin()
                    do {
                        var response = try model.txn(t)
                        response.header.revision = model.changes > 0 ? model.current + 1 : model.current
                        model.end()
                        return response
                    } catch {
                        // Neither side may have changed anything (a key-not-found is found before any write in these tests).
                        model.end()
                        throw error
                    }
                }, context)
            case 85..<90:
                // Compaction at a random revision (sometimes an invalid one).
                let rev = Int64(g.int(Int(model.current) + 2))
                counts["compact", default: 0] += 1
                let wasCompacted = model.compacted
                same("compact \(rev)", { try store.compact(rev).header.revision }, {
                    if rev <= model.compacted { throw MVCCModel.Failure.compacted }
                    if rev > model.current { throw MVCCModel.Failure.future }
                    model.compacted = rev
                    return model.current
                }, context)
                // A compaction changes which entries HashKV covers below it; hashes are compared
                // again from here on (across writes and reopens).
                if model.compacted != wasCompacted { hashes = [:] }
            case 90..<95:
                let rev = Int64(max(1, Int(model.current) - g.int(4)))
                if rev > model.compacted {
                    let h = try store.hashKV(rev)
                    if let known = hashes[rev] { XCTAssertEqual(h.hash, known, "\(context): HashKV(\(rev)) changed") }
                    hashes[rev] = h.hash
                    XCTAssertEqual(h.currentRevision, model.current, context)
                    XCTAssertEqual(h.compactRevision, model.compacted, context)
                }
            default:
                // Reopen: the index is rebuilt from the backend, the revision and compaction kept.
                counts["reopen", default: 0] += 1
                try store.close()
                if g.chance(50) {
                    try backend.close()
                    backend = try makeBackend(engine, dir)
                }
                store = try KVStore(backend: backend, options: options)
                XCTAssertEqual(store.currentRevision, model.current, "\(context): revision after reopen")
                XCTAssertEqual(store.compactRevision, model.compacted, "\(context): compaction after reopen")
                XCTAssertEqual(store.consistentIndex, raftIndexOfLastChange(store), context)
            }
            XCTAssertEqual(store.currentRevision, model.current, "\(context): revision")
        }
        print("\(engine) seed \(seed): \(counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")), revision \(model.current), compacted \(model.compacted)")
        try store.close()
        try backend.close()
    }

    /// The index stored with the last change is what the store reports (checked as a read).
    func raftIndexOfLastChange(_ store: KVStore) -> UInt64 { store.consistentIndex }

    func testModelBolt() throws {
        let seed = testSeed()
        for s in 0..<3 { try run(engine: .bolt, seed: seed &+ UInt64(s), operations: 1500) }
    }

    func testModelLMDB() throws {
        let seed = testSeed()
        for s in 0..<2 { try run(engine: .lmdb, seed: seed &+ UInt64(s), operations: 1200) }
    }

    func testModelCrossChecked() throws {
        try run(engine: .crosscheck, seed: testSeed(), operations: 1200)
    }
}
