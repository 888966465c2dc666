import KeelBolt
import KeelIO
import XCTest

/// Crash and fault tests on the simulated file system: a crash at every I/O step of a series of
/// commits, and EIO on writes and syncs.
final class CrashTests: XCTestCase {
    /// One deterministic workload: `commits` transactions of puts, deletes, large values and
    /// nested buckets; `models[j]` is the state after j commits.
    struct Workload {
        typealias Operation = (bucket: [UInt8], nested: Bool, key: [UInt8], value: [UInt8]?)
        var transactions: [[Operation]] = []
        var models: [MBucket] = [MBucket()]

        init(seed: UInt64, commits: Int, pageSize: Int) {
            var rng = SplitMix64(seed: seed)
            var model = MBucket()
            for _ in 0..<commits {
                var ops: [Operation] = []
                for _ in 0..<(1 + Int(rng.next() % 40)) {
                    let bucket = b("bucket-\(rng.next() % 3)")
                    let nested = rng.next() % 4 == 0
                    let key = b("key-\(rng.next() % 200)")
                    let size = rng.next() % 10 == 0 ? pageSize * 2 + Int(rng.next() % 100) : Int(rng.next() % 120)
                    let value: [UInt8]? = rng.next() % 4 == 0 ? nil : (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    ops.append((bucket, nested, key, value))
                    let top = model.buckets[bucket] ?? { let m = MBucket(); model.buckets[bucket] = m; return m }()
                    let target = nested ? (top.buckets[b("nested")] ?? { let m = MBucket(); top.buckets[b("nested")] = m; return m }()) : top
                    target.values[key] = value
                }
                transactions.append(ops)
                models.append(model.copy())
            }
        }

        /// Runs the workload; `acknowledged` counts commits that returned.
        func run(_ db: DB, acknowledged: inout Int) throws {
            for ops in transactions {
                try db.update { tx throws(BoltError) in
                    for op in ops {
                        let top = try tx.createBucketIfNotExists(op.bucket)
                        let target = op.nested ? try top.createBucketIfNotExists(b("nested")) : top
                        if let value = op.value { try target.put(op.key, value) } else { try target.delete(op.key) }
                    }
                }
                acknowledged += 1
            }
        }
    }

    func options(_ fs: SimulatedFileSystem, pageSize: Int, noFreelistSync: Bool) -> Options {
        simOptions(fs, pageSize: pageSize) { $0.noFreelistSync = noFreelistSync }
    }

    func crashAtEveryStep(pageSize: Int, noFreelistSync: Bool) throws {
        let seed = testSeed("crash pageSize=\(pageSize) noFreelistSync=\(noFreelistSync)")
        let workload = Workload(seed: seed, commits: 20, pageSize: pageSize)
        // Count the mutating operations of a clean run.
        let probe = SimulatedFileSystem(seed: seed)
        try probe.makeDirectory("/data", intermediate: true)
        var acked = 0
        let db = try DB.open(path: "/data/crash.db", options: options(probe, pageSize: pageSize, noFreelistSync: noFreelistSync))
        try workload.run(db, acknowledged: &acked)
        try db.close()
        let total = probe.mutatingOperations
        XCTAssertGreaterThan(total, 12 * 4)

        var rng = SplitMix64(seed: seed)
        for point in 1...total {
            let mode = SimulatedFileSystem.CrashMode.allCases[Int(rng.next() % UInt64(SimulatedFileSystem.CrashMode.allCases.count))]
            let fs = SimulatedFileSystem(seed: seed &+ UInt64(point))
            try fs.makeDirectory("/data", intermediate: true)
            fs.crash(afterOperations: point)
            var acknowledged = 0
            do {
                let db = try DB.open(path: "/data/crash.db", options: options(fs, pageSize: pageSize, noFreelistSync: noFreelistSync))
                try workload.run(db, acknowledged: &acknowledged)
                XCTFail("crash point \(point) of \(total) was not reached")
            } catch {
                XCTAssertTrue(fs.isCrashed, "point \(point): unexpected error \(error)")
            }
            fs.restart(mode: mode)
            let context = "seed \(seed) crash point \(point)/\(total) mode \(mode) after \(acknowledged) acknowledged commits"
            let reopened: DB
            do {
                reopened = try DB.open(path: "/data/crash.db", options: options(fs, pageSize: pageSize, noFreelistSync: noFreelistSync))
            } catch {
                XCTFail("\(context): reopen failed: \(error)")
                return
            }
            let now = try reopened.view { tx throws(BoltError) in
                (try difference(tx.rootBucket, workload.models[acknowledged]),
                 acknowledged + 1 < workload.models.count ? try difference(tx.rootBucket, workload.models[acknowledged + 1]) : "none")
            }
            XCTAssertTrue(now.0 == nil || now.1 == nil, "\(context): state is neither the last acknowledged commit (\(now.0 ?? "")) nor the next (\(now.1 ?? ""))")
            assertConsistent(reopened, context)
            // The recovered file keeps working.
            try reopened.update { tx throws(BoltError) in try tx.createBucketIfNotExists(b("after")).put(b("k"), b("v")) }
            assertConsistent(reopened, context + " then one more commit")
            try reopened.close()
            if now.0 != nil && now.1 != nil { return }
        }
    }

    func testCrashAtEveryStep4096() throws { try crashAtEveryStep(pageSize: 4096, noFreelistSync: false) }
    func testCrashAtEveryStep512() throws { try crashAtEveryStep(pageSize: 512, noFreelistSync: false) }
    func testCrashAtEveryStepNoFreelistSync() throws { try crashAtEveryStep(pageSize: 1024, noFreelistSync: true) }

    /// EIO on the n-th fsync, for every n: the commit fails, writes are refused for good, reads
    /// still see the last committed state, and after a restart that state is on disk.
    func testSyncFailureDisablesWrites() throws {
        let seed = testSeed()
        let workload = Workload(seed: seed, commits: 6, pageSize: 4096)
        for n in 1...14 {
            let fs = SimulatedFileSystem(seed: seed)
            let db = try DB.open(path: "/eio.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
            fs.failSync(after: n)
            var acknowledged = 0
            do {
                try workload.run(db, acknowledged: &acknowledged)
                XCTFail("sync \(n) did not fail")
            } catch let error as BoltError {
                guard case let .io(ioError) = error, ioError.errno == EIO else { return XCTFail("unexpected \(error)") }
            }
            XCTAssertNotNil(db.writeFailure)
            XCTAssertThrowsError(try db.update { tx throws(BoltError) in _ = try tx.createBucket(b("x")) }) { error in
                guard case .writesDisabled = error as? BoltError else { return XCTFail("expected writesDisabled, got \(error)") }
            }
            XCTAssertNil(try db.view { tx throws(BoltError) in try difference(tx.rootBucket, workload.models[acknowledged]) })
            try db.close()
            fs.restart(mode: .random)
            let reopened = try DB.open(path: "/eio.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
            XCTAssertNil(try reopened.view { tx throws(BoltError) in try difference(tx.rootBucket, workload.models[acknowledged]) }, "sync \(n)")
            assertConsistent(reopened)
            try reopened.close()
        }
    }

    /// EIO on a page write: the commit fails and rolls back, and the database goes on.
    func testWriteFailureRollsBack() throws {
        let seed = testSeed()
        let workload = Workload(seed: seed, commits: 6, pageSize: 4096)
        for n in 1...10 {
            let fs = SimulatedFileSystem(seed: seed)
            let db = try DB.open(path: "/eio.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
            fs.failWrite(after: n)
            var acknowledged = 0
            XCTAssertThrowsError(try workload.run(db, acknowledged: &acknowledged))
            XCTAssertNil(db.writeFailure)
            XCTAssertNil(try db.view { tx throws(BoltError) in try difference(tx.rootBucket, workload.models[acknowledged]) })
            try db.update { tx throws(BoltError) in try tx.createBucketIfNotExists(b("after")).put(b("k"), b("v")) }
            assertConsistent(db, "write failure \(n)")
            try db.close()
        }
    }
}
