import Foundation
import KeelBackend
import KeelBench
import KeelBolt
import KeelIO
import KeelLMDB
@_exported import KeelTestSupport
import XCTest

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

func openPair(_ dir: String, pageSize: Int = 4096, mapSize: Int = 1 << 30) throws(BackendError) -> CrossCheckedBackend {
    var boltOptions = Options()
    boltOptions.pageSize = pageSize
    boltOptions.noSync = true
    var lmdbOptions = LMDBOptions()
    lmdbOptions.mapSize = mapSize
    lmdbOptions.noSync = true
    return CrossCheckedBackend(primary: try BoltBackend(path: dir + "/bolt.db", options: boltOptions),
                               secondary: try LMDBBackend(path: dir + "/lmdb", options: lmdbOptions))
}

final class CrossCheckTests: XCTestCase {
    /// Many seeds of random workloads (nested buckets, values crossing the page size, reopens):
    /// the two engines never disagree.
    func testRandomWorkloadsNeverDiverge() throws {
        let base = testSeed()
        for i in 0..<6 as Range<UInt64> {
            let dir = try temporaryDirectory(self)
            let seed = base &+ i
            let pageSize = i % 2 == 0 ? 4096 : 1024
            let check = CrossCheck(operations: 3000, seed: seed, valueSizeMax: pageSize * 3) { () throws(BackendError) in
                try openPair(dir, pageSize: pageSize, mapSize: 1 << 20)
            }
            do {
                let report = try check.run()
                XCTAssertGreaterThan(report.comparisons, 3000)
                XCTAssertGreaterThan(report.reopens + report.commits, 10)
                print("seed \(seed): OK \(report)")
            } catch {
                XCTFail("seed \(seed): \(error)")
            }
        }
    }

    /// A deliberately different engine is caught at the first difference, with the operation log.
    func testDivergenceIsReportedWithTheOperationLog() throws {
        let dir = try temporaryDirectory(self)
        let pair = try openPair(dir)
        let tx = try pair.beginWrite()
        try tx.createBucket([b("x")])
        try tx.bucket([b("x")]).put(b("k"), b("v"))
        try tx.commit()
        // Change the secondary behind the cross-check's back.
        let sneaky = try pair.secondary.beginWrite()
        try sneaky.bucket([b("x")]).put(b("k"), b("other"))
        try sneaky.commit()
        let reader = try pair.beginRead()
        XCTAssertThrowsError(try reader.bucket([b("x")]).get(b("k"))) { error in
            guard case let .divergence(message)? = error as? BackendError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("get("), message)
            XCTAssertTrue(message.contains("put("), "the log shows the operations before it: \(message)")
        }
        XCTAssertThrowsError(try pair.beginRead(), "a diverged cross-check refuses further work")
        reader.end()
        try pair.close()
    }

    func testHashIsTheSameOnBothEngines() throws {
        let dir = try temporaryDirectory(self)
        let pair = try openPair(dir)
        let tx = try pair.beginWrite()
        for name in ["key", "meta", "lease"] {
            try tx.createBucket([b(name)])
            for i in 0..<100 { try tx.bucket([b(name)]).put(b("\(name)-\(i)"), b("value \(i)")) }
        }
        try tx.createBucket([b("key"), b("nested")])
        try tx.commit()
        let ra = try pair.primary.beginRead()
        let rb = try pair.secondary.beginRead()
        let ha = try backendHash(ra)
        XCTAssertEqual(ha, try backendHash(rb))
        XCTAssertNotEqual(ha, try backendHash(ra, skip: [[b("meta"), b("meta-1")]]))
        ra.end()
        rb.end()
        try pair.close()
    }
}

final class BackendBehaviourTests: XCTestCase {
    func backends(_ dir: String) throws -> [any Backend] {
        [try BoltBackend(path: dir + "/b.db"), try LMDBBackend(path: dir + "/l")]
    }

    func testRangeSemantics() throws {
        for backend in try backends(try temporaryDirectory(self)) {
            let tx = try backend.beginWrite()
            try tx.createBucket([b("r")])
            let bucket = try tx.bucket([b("r")])
            for k in ["a", "b", "c", "d", "e"] { try bucket.put(b(k), b(k.uppercased())) }
            try tx.createBucket([b("r"), b("cc")])
            XCTAssertEqual(try bucket.entries(from: b("b"), to: b("d")).map(\.key), [b("b"), b("c")], backend.kind)
            XCTAssertEqual(try bucket.entries(from: b("b"), to: b("d"), reverse: true).map(\.key), [b("c"), b("b")], backend.kind)
            XCTAssertEqual(try bucket.entries(from: [], to: nil, reverse: true).map(\.key), [b("e"), b("d"), b("c"), b("b"), b("a")], backend.kind)
            XCTAssertEqual(try bucket.entries(from: b("a"), to: nil, limit: 2).map(\.key), [b("a"), b("b")], backend.kind)
            XCTAssertEqual(try bucket.entries(from: b("zz")).count, 0, backend.kind)
            XCTAssertEqual(try tx.buckets(in: [b("r")]), [b("cc")], backend.kind)
            XCTAssertThrowsError(try bucket.put(b("cc"), b("x"))) { XCTAssertEqual(($0 as? BackendError)?.category, "incompatibleValue", backend.kind) }
            XCTAssertThrowsError(try tx.createBucket([b("r"), b("a")])) { XCTAssertEqual(($0 as? BackendError)?.category, "incompatibleValue", backend.kind) }
            XCTAssertThrowsError(try tx.createBucket([b("r")])) { XCTAssertEqual(($0 as? BackendError)?.category, "bucketExists", backend.kind) }
            XCTAssertThrowsError(try tx.createBucket([b("missing"), b("x")])) { XCTAssertEqual(($0 as? BackendError)?.category, "bucketNotFound", backend.kind) }
            XCTAssertThrowsError(try bucket.put([], b("x"))) { XCTAssertEqual(($0 as? BackendError)?.category, "keyRequired", backend.kind) }
            try tx.commit()
            XCTAssertGreaterThan(try backend.size(), 0)
            XCTAssertGreaterThan(try backend.sizeInUse(), 0)
            try backend.close()
        }
    }

    func testBackupAndDefragmentKeepTheData() throws {
        let dir = try temporaryDirectory(self)
        for backend in try backends(dir) {
            let tx = try backend.beginWrite()
            try tx.createBucket([b("d")])
            for i in 0..<3000 { try tx.bucket([b("d")]).put(b(String(format: "key-%05d", i)), [UInt8](repeating: UInt8(i % 200), count: 200)) }
            try tx.commit()
            let del = try backend.beginWrite()
            for i in 0..<2900 { try del.bucket([b("d")]).delete(b(String(format: "key-%05d", i))) }
            try del.commit()
            let before = try backend.beginRead()
            let hashBefore = try backendHash(before)
            before.end()
            // Backup stream: a file of the same engine with the same content.
            var image: [UInt8] = []
            let streamed = try backend.backup { piece throws(BackendError) in image += piece }
            XCTAssertEqual(Int64(image.count), streamed)
            let copyPath: String
            if backend is BoltBackend {
                copyPath = dir + "/copy.db"
                FileManager.default.createFile(atPath: copyPath, contents: Data(image))
                let copy = try BoltBackend(path: copyPath)
                let r = try copy.beginRead()
                XCTAssertEqual(try backendHash(r), hashBefore)
                r.end()
                try copy.close()
            } else {
                copyPath = dir + "/copy-lmdb"
                try FileManager.default.createDirectory(atPath: copyPath, withIntermediateDirectories: true)
                FileManager.default.createFile(atPath: copyPath + "/data.mdb", contents: Data(image))
                let copy = try LMDBBackend(path: copyPath)
                let r = try copy.beginRead()
                XCTAssertEqual(try backendHash(r), hashBefore)
                r.end()
                copy.close()
            }
            let sizeBefore = try backend.size()
            try backend.defragment()
            XCTAssertLessThan(try backend.size(), sizeBefore, "\(backend.kind): defragment shrinks the file")
            let after = try backend.beginRead()
            XCTAssertEqual(try backendHash(after), hashBefore, backend.kind)
            after.end()
            try backend.close()
        }
    }

    func testBatchedWriterCommitsByCountAndTime() throws {
        let dir = try temporaryDirectory(self)
        let backend = try BoltBackend(path: dir + "/batch.db")
        let writer = BatchedWriter(backend: backend, batchLimit: 100, intervalSeconds: 0.05)
        try writer.write { tx throws(BackendError) in try tx.createBucket([b("k")]) }
        for i in 0..<250 {
            try writer.write { tx throws(BackendError) in try tx.bucket([b("k")]).put(b("\(i)"), b("v")) }
        }
        XCTAssertEqual(writer.counters.commits, 2)
        XCTAssertEqual(writer.counters.pending, 51)
        try writer.commitIfDue()
        XCTAssertEqual(writer.counters.commits, 2, "not due yet")
        usleep(60_000)
        try writer.commitIfDue()
        XCTAssertEqual(writer.counters.commits, 3)
        let r = try backend.beginRead()
        XCTAssertEqual(try r.bucket([b("k")]).entries().count, 250)
        r.end()
        try backend.close()
    }

    /// A failed write in a batch rolls back writes whose calls had returned: the writer must
    /// say so to everyone (the failing caller, the next commit, the next writers) instead of
    /// committing the rest as if nothing was lost.
    func testFailedWriteAbortsTheWholeBatchVisibly() throws {
        let dir = try temporaryDirectory(self)
        let backend = try BoltBackend(path: dir + "/abort.db")
        let writer = BatchedWriter(backend: backend, batchLimit: 1000, intervalSeconds: 10)
        try writer.write { tx throws(BackendError) in try tx.createBucket([b("k")]) }
        try writer.forceCommit()
        XCTAssertTrue(writer.isCommitted(1))
        let batch = writer.currentBatch
        try writer.write { tx throws(BackendError) in try tx.bucket([b("k")]).put(b("a"), b("1")) }
        try writer.write { tx throws(BackendError) in try tx.bucket([b("k")]).put(b("b"), b("2")) }
        XCTAssertFalse(writer.isCommitted(batch), "staged, not committed")
        // The third write fails (an empty key).
        XCTAssertThrowsError(try writer.write { tx throws(BackendError) in try tx.bucket([b("k")]).put([], b("3")) }) { error in
            guard case let .batchAborted(message)? = error as? BackendError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("2 staged changes from 2 earlier writes"), message)
        }
        // Every later call says the batch was lost, rather than committing or starting afresh.
        XCTAssertThrowsError(try writer.forceCommit()) { XCTAssertEqual(($0 as? BackendError)?.category, "batchAborted") }
        XCTAssertThrowsError(try writer.commitIfDue()) { XCTAssertEqual(($0 as? BackendError)?.category, "batchAborted") }
        XCTAssertThrowsError(try writer.write { tx throws(BackendError) in try tx.bucket([b("k")]).put(b("c"), b("4")) }) {
            XCTAssertEqual(($0 as? BackendError)?.category, "batchAborted")
        }
        XCTAssertFalse(writer.isCommitted(batch))
        XCTAssertNotNil(writer.failure)
        var r = try backend.beginRead()
        XCTAssertEqual(try r.bucket([b("k")]).entries().count, 0, "nothing of the lost batch is visible")
        r.end()
        // After reset, a new batch works and the lost one stays lost.
        writer.reset()
        let next = writer.currentBatch
        try writer.write { tx throws(BackendError) in try tx.bucket([b("k")]).put(b("d"), b("5")) }
        try writer.forceCommit()
        XCTAssertTrue(writer.isCommitted(next))
        XCTAssertFalse(writer.isCommitted(batch))
        r = try backend.beginRead()
        XCTAssertEqual(try r.bucket([b("k")]).entries().map(\.key), [b("d")])
        r.end()
        try backend.close()
    }

    /// etcd's SizeInUse: high-water mark × page size − free pages × page size (pending pages
    /// count as used); answered without waiting for the writer, even on the writer's thread.
    func testBoltSizeInUseIsEtcdsDefinition() throws {
        let dir = try temporaryDirectory(self)
        let backend = try BoltBackend(path: dir + "/size.db")
        let tx = try backend.beginWrite()
        try tx.createBucket([b("k")])
        for i in 0..<3000 { try tx.bucket([b("k")]).put(b("key-\(i)"), [UInt8](repeating: 7, count: 100)) }
        try tx.commit()
        let del = try backend.beginWrite()
        for i in 0..<2500 { try del.bucket([b("k")]).delete(b("key-\(i)")) }
        // Called while this thread holds the write transaction: must not wait for it.
        let during = try backend.sizeInUse()
        try del.commit()
        let after = try backend.sizeInUse()
        let meta = backend.db.currentMeta
        let (free, _) = backend.db.freelistCounts()
        XCTAssertEqual(after, (Int64(meta.pgid) - Int64(free)) * Int64(backend.db.pageSize))
        XCTAssertLessThanOrEqual(after, Int64(meta.pgid) * Int64(backend.db.pageSize))
        XCTAssertGreaterThan(during, 0)
        try backend.close()
    }
}
