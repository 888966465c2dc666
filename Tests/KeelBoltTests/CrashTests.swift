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

        init(transactions: [[Operation]]) { self.transactions = transactions }

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

        /// Runs the workload; `acknowledged` counts commits that returned. With `holdReader`,
        /// a read transaction begun before commit `lowerBound` stays open until `upperBound`,
        /// so the pages freed meanwhile stay pending across those commits, and its snapshot is
        /// checked to stay the same.
        func run(_ db: DB, acknowledged: inout Int, holdReader: Range<Int>? = nil) throws {
            var reader: Tx?
            defer { reader?.rollback() }
            for (i, ops) in transactions.enumerated() {
                if let hold = holdReader {
                    if i == hold.lowerBound { reader = try db.beginRead() }
                    if i == hold.upperBound, let r = reader {
                        XCTAssertNil(try difference(r.rootBucket, models[hold.lowerBound]), "held reader's snapshot changed")
                        r.rollback()
                        reader = nil
                    }
                }
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

    func options(_ fs: SimulatedFileSystem, pageSize: Int, noFreelistSync: Bool, freelist: FreelistType = .array) -> Options {
        simOptions(fs, pageSize: pageSize) {
            $0.noFreelistSync = noFreelistSync
            $0.freelistType = freelist
        }
    }

    /// The crash modes tried at every crash point (`.random` only mixes these).
    static let crashModes: [SimulatedFileSystem.CrashMode] = [.dropUnsynced, .keepRandomSubset, .keepPrefix, .tearWrite]

    /// Crashes the workload at each of up to `maxPoints` I/O steps (all of them when there are
    /// fewer; otherwise a seeded sample), and at each point tries every crash mode.
    func crashAtEveryStep(pageSize: Int, noFreelistSync: Bool, freelist: FreelistType = .array,
                          holdReader: Range<Int>? = nil, maxPoints: Int = 200) throws {
        let seed = testSeed("crash pageSize=\(pageSize) noFreelistSync=\(noFreelistSync) freelist=\(freelist) holdReader=\(String(describing: holdReader))")
        let workload = Workload(seed: seed, commits: 20, pageSize: pageSize)
        let opts = { (fs: SimulatedFileSystem) in self.options(fs, pageSize: pageSize, noFreelistSync: noFreelistSync, freelist: freelist) }
        // Count the mutating operations of a clean run.
        let probe = SimulatedFileSystem(seed: seed)
        try probe.makeDirectoryDurably("/data")
        let before = probe.mutatingOperations
        var acked = 0
        let db = try DB.open(path: "/data/crash.db", options: opts(probe))
        try workload.run(db, acknowledged: &acked, holdReader: holdReader)
        try db.close()
        let total = probe.mutatingOperations - before
        XCTAssertGreaterThan(total, 12 * 4)

        var rng = SplitMix64(seed: seed)
        var points = Array(1...total)
        if points.count > maxPoints {
            for i in stride(from: points.count - 1, to: 0, by: -1) { points.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            points = Array(points.prefix(maxPoints)).sorted()
        }
        for point in points {
          for mode in Self.crashModes {
            let fs = SimulatedFileSystem(seed: seed &+ UInt64(point))
            try fs.makeDirectoryDurably("/data")
            fs.crash(afterOperations: point)
            var acknowledged = 0
            do {
                let db = try DB.open(path: "/data/crash.db", options: opts(fs))
                try workload.run(db, acknowledged: &acknowledged, holdReader: holdReader)
                XCTFail("crash point \(point) of \(total) was not reached")
            } catch {
                XCTAssertTrue(fs.isCrashed, "point \(point): unexpected error \(error)")
            }
            fs.restart(mode: mode)
            let context = "seed \(seed) crash point \(point)/\(total) mode \(mode) after \(acknowledged) acknowledged commits"
            let reopened: DB
            do {
                reopened = try DB.open(path: "/data/crash.db", options: opts(fs))
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
        print("crash test \(seed): \(points.count) of \(total) points x \(Self.crashModes.count) modes")
    }

    func testCrashAtEveryStep4096() throws { try crashAtEveryStep(pageSize: 4096, noFreelistSync: false) }
    func testCrashAtEveryStep512() throws { try crashAtEveryStep(pageSize: 512, noFreelistSync: false) }
    func testCrashAtEveryStepNoFreelistSync() throws { try crashAtEveryStep(pageSize: 1024, noFreelistSync: true) }
    func testCrashAtEveryStepHashmapFreelist() throws { try crashAtEveryStep(pageSize: 1024, noFreelistSync: false, freelist: .hashmap) }
    /// A reader open across commits 4..<14 keeps the pages those commits free pending.
    func testCrashAtEveryStepWithReaderHoldingPendingPages() throws {
        try crashAtEveryStep(pageSize: 1024, noFreelistSync: false, holdReader: 4..<14)
    }
    func testCrashAtEveryStepHashmapNoFreelistSyncWithReader() throws {
        try crashAtEveryStep(pageSize: 512, noFreelistSync: true, freelist: .hashmap, holdReader: 2..<16)
    }

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
        var metaFailures = 0
        for n in 1...10 {
            let fs = SimulatedFileSystem(seed: seed)
            let db = try DB.open(path: "/eio.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
            fs.failWrite(after: n)
            var acknowledged = 0
            XCTAssertThrowsError(try workload.run(db, acknowledged: &acknowledged))
            XCTAssertNil(try db.view { tx throws(BoltError) in try difference(tx.rootBucket, workload.models[acknowledged]) })
            if let failure = db.writeFailure {
                // The failed write was a meta page: that commit may be on disk, so no more writes.
                XCTAssertTrue(failure.contains("pwrite"), failure)
                XCTAssertThrowsError(try db.update { tx throws(BoltError) in try tx.createBucketIfNotExists(b("after")).put(b("k"), b("v")) }) { error in
                    guard case .writesDisabled = error as? BoltError else { return XCTFail("expected writesDisabled, got \(error)") }
                }
                metaFailures += 1
                try db.close()
                continue
            }
            try db.update { tx throws(BoltError) in try tx.createBucketIfNotExists(b("after")).put(b("k"), b("v")) }
            assertConsistent(db, "write failure \(n)")
            try db.close()
        }
        print("write failures on a meta page: \(metaFailures) of 10 (testMetaWriteFailureDisablesWrites covers every commit)")
    }

    /// A new file's directory entry must be durable before the file is used: a failed
    /// directory fsync fails the open (it used to be ignored), and a crash before it leaves no
    /// half-made database behind that a later open would mistake for the committed one.
    func testDirectorySyncFailureFailsCreation() throws {
        let probe = SimulatedFileSystem(seed: 40)
        try probe.makeDirectoryDurably("/data")
        let before = probe.mutatingOperations
        try DB.open(path: "/data/new.db", options: options(probe, pageSize: 4096, noFreelistSync: false)).close()
        let steps = probe.mutatingOperations - before
        var sawDirectorySync = false
        for step in 1...steps {
            let fs = SimulatedFileSystem(seed: 40)
            try fs.makeDirectoryDurably("/data")
            fs.failOperation(after: step)
            do {
                let db = try DB.open(path: "/data/new.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
                try db.close()
                XCTFail("EIO at step \(step) of \(steps) of creating a database was not reported")
            } catch let error as BoltError {
                guard case let .io(ioError) = error else { return XCTFail("\(error)") }
                if ioError.description.contains("fsync directory") { sawDirectorySync = true }
            }
        }
        XCTAssertTrue(sawDirectorySync, "one of the steps is the directory fsync")
        // A crash after open returned keeps the file.
        let fs = SimulatedFileSystem(seed: 41)
        try fs.makeDirectoryDurably("/data")
        let db = try DB.open(path: "/data/new.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
        try db.update { tx throws(BoltError) in try tx.createBucket(b("b")).put(b("k"), b("v")) }
        try db.close()
        fs.restart(mode: .dropUnsynced)
        let reopened = try DB.open(path: "/data/new.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
        XCTAssertEqual(try reopened.view { tx throws(BoltError) in try tx.bucket(b("b"))?.get(b("k"))?.bytes }, b("v"))
        try reopened.close()
    }

    /// EIO on the meta page write of each commit in turn: writes are disabled for good (the
    /// meta may have landed, so the pages that commit wrote must never be reused), reads go on,
    /// and after a restart the file holds the commit before or the one that failed.
    func testMetaWriteFailureDisablesWrites() throws {
        let seed = testSeed()
        let workload = Workload(seed: seed, commits: 6, pageSize: 4096)
        for commit in 0..<workload.transactions.count {
            let fs = SimulatedFileSystem(seed: seed)
            let db = try DB.open(path: "/meta.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
            var acknowledged = 0
            let prefix = Workload(transactions: Array(workload.transactions.prefix(commit)))
            try prefix.run(db, acknowledged: &acknowledged)
            // Count the writes of the next commit on a copy, then fail its last one (the meta).
            let countingFS = SimulatedFileSystem(seed: seed)
            let counting = try DB.open(path: "/meta.db", options: options(countingFS, pageSize: 4096, noFreelistSync: false))
            var ignored = 0
            try prefix.run(counting, acknowledged: &ignored)
            let writesBefore = countingFS.mutatingOperations
            try Workload(transactions: [workload.transactions[commit]]).run(counting, acknowledged: &ignored)
            // The commit's operations end with: meta pwrite, fdatasync.
            let metaWrite = countingFS.mutatingOperations - writesBefore - 1
            try counting.close()
            fs.failOperation(after: metaWrite)
            XCTAssertThrowsError(try Workload(transactions: [workload.transactions[commit]]).run(db, acknowledged: &ignored))
            XCTAssertNotNil(db.writeFailure, "commit \(commit)")
            XCTAssertThrowsError(try db.update { tx throws(BoltError) in try tx.createBucketIfNotExists(b("x")).put(b("k"), b("v")) }) { error in
                guard case .writesDisabled = error as? BoltError else { return XCTFail("commit \(commit): expected writesDisabled, got \(error)") }
            }
            XCTAssertNil(try db.view { tx throws(BoltError) in try difference(tx.rootBucket, workload.models[commit]) })
            try db.close()
            fs.restart(mode: .keepRandomSubset)
            let reopened = try DB.open(path: "/meta.db", options: options(fs, pageSize: 4096, noFreelistSync: false))
            let state = try reopened.view { tx throws(BoltError) in
                (try difference(tx.rootBucket, workload.models[commit]), try difference(tx.rootBucket, workload.models[commit + 1]))
            }
            XCTAssertTrue(state.0 == nil || state.1 == nil, "commit \(commit): neither the state before nor after")
            assertConsistent(reopened)
            try reopened.close()
        }
    }
}
