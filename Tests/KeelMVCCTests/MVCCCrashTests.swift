import Foundation
import KeelBackend
import KeelBolt
import KeelIO
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

/// A crash at every I/O step (seeded sample) of batched commits and a compaction, under every
/// crash mode: the reopened store equals the model after the operations up to its stored
/// consistent index, and a finished-or-resumed compaction.
final class MVCCCrashTests: XCTestCase {
    static let modes: [SimulatedFileSystem.CrashMode] = [.dropUnsynced, .keepRandomSubset, .keepPrefix, .tearWrite]

    struct Op {
        var put: Etcdserverpb_PutRequest?
        var delete: Etcdserverpb_DeleteRangeRequest?
    }

    func workload(seed: UInt64) -> [Op] {
        var rng = SplitMix64(seed: seed)
        return (0..<60).map { i in
            let key = Data("k\(rng.next() % 12)".utf8)
            if rng.next() % 4 == 0 {
                var d = Etcdserverpb_DeleteRangeRequest()
                d.key = key
                return Op(put: nil, delete: d)
            }
            var p = Etcdserverpb_PutRequest()
            p.key = key
            p.value = Data("v\(i)-".utf8 + [UInt8](repeating: UInt8(i), count: Int(rng.next() % 300)))
            return Op(put: p, delete: nil)
        }
    }

    static let compactAfter = 30
    static let compactAt: Int64 = 15

    /// Runs the ops (raft index = position + 1), committing every 7 ops, compacting after op 30.
    func run(_ store: KVStore, _ ops: [Op]) throws {
        for (i, op) in ops.enumerated() {
            if let p = op.put { _ = try store.put(p, index: UInt64(i + 1)) }
            if let d = op.delete { _ = try store.deleteRange(d, index: UInt64(i + 1)) }
            if i % 7 == 6 { try store.forceCommit() }
            if i + 1 == MVCCCrashTests.compactAfter { _ = try store.compact(MVCCCrashTests.compactAt) }
        }
        try store.forceCommit()
    }

    func model(_ ops: [Op], upTo count: Int) throws -> MVCCModel {
        let m = MVCCModel()
        for op in ops.prefix(count) {
            m.begin()
            if let p = op.put { _ = try m.applyPut(p) }
            if let d = op.delete { _ = m.applyDelete(d) }
            m.end()
        }
        return m
    }

    func open(_ fs: SimulatedFileSystem) throws -> (BoltBackend, KVStore) {
        var options = KeelBolt.Options()
        options.fileSystem = fs
        options.pageSize = 1024
        options.strictMode = true
        let backend = try BoltBackend(path: "/data/member.db", options: options)
        var storeOptions = KVStore.Options()
        storeOptions.compactionBatchLimit = 4
        return (backend, try KVStore(backend: backend, options: storeOptions))
    }

    func testCrashAtEveryStepOfBatchCommitsAndCompaction() throws {
        let seed = testSeed()
        let ops = workload(seed: seed)
        let probe = SimulatedFileSystem(seed: seed)
        try probe.makeDirectoryDurably("/data")
        let start = probe.mutatingOperations
        let (b0, s0) = try open(probe)
        try run(s0, ops)
        try s0.close()
        try b0.close()
        let total = probe.mutatingOperations - start
        var rng = SplitMix64(seed: seed)
        var points = Array(1...total)
        for i in stride(from: points.count - 1, to: 0, by: -1) { points.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        points = Array(points.prefix(200)).sorted()
        var recovered: [UInt64] = []
        for point in points {
            for mode in MVCCCrashTests.modes {
                let fs = SimulatedFileSystem(seed: seed &+ UInt64(point))
                try fs.makeDirectoryDurably("/data")
                fs.crash(afterOperations: point)
                do {
                    let (b, s) = try open(fs)
                    try run(s, ops)
                    XCTFail("crash point \(point) not reached")
                    _ = b
                } catch {}
                fs.restart(mode: mode)
                let context = "seed \(seed) point \(point)/\(total) mode \(mode)"
                let (backend, store) = try open(fs)
                let index = store.consistentIndex
                recovered.append(index)
                let m = try model(ops, upTo: Int(index))
                XCTAssertEqual(store.currentRevision, m.current, context)
                if index >= UInt64(MVCCCrashTests.compactAfter) {
                    XCTAssertEqual(store.compactRevision, MVCCCrashTests.compactAt, "\(context): the compaction was committed before later changes")
                }
                var all = Etcdserverpb_RangeRequest()
                all.key = Data([0])
                all.rangeEnd = Data([0])
                XCTAssertEqual(try store.range(all).kvs, try m.range(all).kvs, context)
                // The recovered store takes writes again.
                var p = Etcdserverpb_PutRequest()
                p.key = Data("after".utf8)
                _ = try store.put(p, index: index + 1)
                try store.close()
                try backend.close()
            }
        }
        print("crash points \(points.count) of \(total) x \(MVCCCrashTests.modes.count) modes; recovered consistent indexes \(Set(recovered).sorted())")
        XCTAssertGreaterThan(Set(recovered).count, 5, "crashes land in many different batches")
    }
}
