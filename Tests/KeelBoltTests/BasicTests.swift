import KeelBolt
import KeelIO
import XCTest

final class BasicTests: XCTestCase {
    func testNewFileHasBboltInitialLayout() throws {
        let fs = SimulatedFileSystem(seed: 1)
        let db = try DB.open(path: "/a.db", options: simOptions(fs))
        try db.close()
        let bytes = fs.contents(of: "/a.db")!
        XCTAssertEqual(bytes.count, 16384)
        // meta 0 checksum as bbolt 1.3.6 writes it for a 4096-byte page file.
        let checksum = bytes[0x48..<0x50].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(checksum, 0x07516e114689fdee)
        let checksum1 = bytes[4096 + 0x48..<4096 + 0x50].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(checksum1, 0x264c351a5179480f)
        XCTAssertEqual(Array(bytes[0x2000..<0x2010]), [2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(bytes[0x3000..<0x3010]), [3, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0])
    }

    func testPutGetDeleteAcrossReopen() throws {
        let fs = SimulatedFileSystem(seed: 2)
        var db = try DB.open(path: "/a.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("widgets"))
            try bucket.put(b("foo"), b("bar"))
            try bucket.put(b("empty"), [UInt8]())
        }
        XCTAssertEqual(try db.view { tx throws(BoltError) in try tx.bucket(b("widgets"))?.get(b("foo"))?.bytes }, b("bar"))
        try db.close()
        db = try DB.open(path: "/a.db", options: simOptions(fs))
        try db.view { tx throws(BoltError) in
            guard let bucket = try tx.bucket(b("widgets")) else { return XCTFail("no bucket") }
            XCTAssertEqual(try bucket.get(b("foo"))?.bytes, b("bar"))
            let empty = try bucket.get(b("empty"))
            XCTAssertNotNil(empty, "an empty value reads back as empty, not nil")
            XCTAssertEqual(empty?.count, 0)
            XCTAssertNil(try bucket.get(b("missing")))
        }
        try db.update { tx throws(BoltError) in try tx.bucket(b("widgets"))!.delete(b("foo")) }
        XCTAssertNil(try db.view { tx throws(BoltError) in try tx.bucket(b("widgets"))?.get(b("foo")) })
        assertConsistent(db)
        // The file after the first commit is 32 KiB, as bbolt's.
        try db.close()
    }

    func testFirstCommitLayoutMatchesBbolt() throws {
        let fs = SimulatedFileSystem(seed: 3)
        let db = try DB.open(path: "/a.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in _ = try tx.createBucket(b("ab")) }
        let meta = db.currentMeta
        XCTAssertEqual(meta.txid, 2)
        XCTAssertEqual(meta.root, 4)
        XCTAssertEqual(meta.freelist, 5)
        XCTAssertEqual(meta.pgid, 6)
        XCTAssertEqual(fs.contents(of: "/a.db")!.count, 32768)
        try db.close()
    }

    func testBucketRules() throws {
        let fs = SimulatedFileSystem(seed: 4)
        let db = try DB.open(path: "/a.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in
            let top = try tx.createBucket(b("top"))
            XCTAssertThrowsError(try tx.createBucket(b("top"))) { XCTAssertEqual($0 as? BoltError, .bucketExists) }
            XCTAssertThrowsError(try tx.createBucket([UInt8]())) { XCTAssertEqual($0 as? BoltError, .bucketNameRequired) }
            try top.put(b("plain"), b("v"))
            XCTAssertThrowsError(try top.createBucket(b("plain"))) { XCTAssertEqual($0 as? BoltError, .incompatibleValue) }
            let child = try top.createBucket(b("child"))
            try child.put(b("k"), b("v"))
            XCTAssertThrowsError(try top.put(b("child"), b("x"))) { XCTAssertEqual($0 as? BoltError, .incompatibleValue) }
            XCTAssertThrowsError(try top.delete(b("child"))) { XCTAssertEqual($0 as? BoltError, .incompatibleValue) }
            XCTAssertNil(try top.get(b("child")), "get of a bucket name returns nil")
            XCTAssertThrowsError(try top.put([UInt8](), b("x"))) { XCTAssertEqual($0 as? BoltError, .keyRequired) }
            XCTAssertThrowsError(try top.put([UInt8](repeating: 1, count: 32769), b("x"))) {
                XCTAssertEqual($0 as? BoltError, .keyTooLarge(size: 32769))
            }
            try top.put([UInt8](repeating: 1, count: 32768), b("max key"))
            XCTAssertEqual(try top.nextSequence(), 1)
            XCTAssertEqual(try top.nextSequence(), 2)
            try child.setSequence(42)
        }
        try db.view { tx throws(BoltError) in
            let top = try tx.bucket(b("top"))!
            XCTAssertEqual(top.sequence, 2)
            XCTAssertEqual(try top.bucket(b("child"))?.sequence, 42)
            XCTAssertEqual(try top.bucket(b("child"))?.get(b("k"))?.bytes, b("v"))
            XCTAssertThrowsError(try top.put(b("x"), b("y"))) { XCTAssertEqual($0 as? BoltError, .readOnly) }
        }
        try db.update { tx throws(BoltError) in
            try tx.deleteBucket(b("top"))
            XCTAssertThrowsError(try tx.deleteBucket(b("top"))) { XCTAssertEqual($0 as? BoltError, .bucketNotFound) }
        }
        XCTAssertEqual(try db.view { tx throws(BoltError) in try tx.bucketNames() }, [])
        assertConsistent(db)
        try db.close()
    }

    func testInlineRuleAtQuarterPage() throws {
        // 16 + (16 + 1 + 991) = 1024 = pageSize/4 inlines; one more byte does not.
        let fs = SimulatedFileSystem(seed: 5)
        let db = try DB.open(path: "/a.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in
            try tx.createBucket(b("in")).put(b("k"), [UInt8](repeating: 7, count: 991))
            try tx.createBucket(b("out")).put(b("k"), [UInt8](repeating: 7, count: 992))
        }
        try db.view { tx throws(BoltError) in
            let c = tx.rootBucket.cursor()
            var sizes: [String: Int] = [:]
            var entry = try c.first()
            while let e = entry {
                sizes[e.key.description] = 0
                entry = try c.next()
            }
            XCTAssertEqual(Set(sizes.keys), ["in", "out"])
        }
        let stats = try db.view { tx throws(BoltError) in try tx.rootBucket.stats() }
        XCTAssertEqual(stats.inlineBucketN, 1)
        XCTAssertEqual(stats.bucketN, 3)
        assertConsistent(db)
        try db.close()
    }

    func testOverflowValuesAndCursorDirections() throws {
        let fs = SimulatedFileSystem(seed: 6)
        let db = try DB.open(path: "/a.db", options: simOptions(fs))
        let big = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<200 { try bucket.put(b(String(format: "key%05d", i)), b("value \(i)")) }
            try bucket.put(b("zbig"), big)
        }
        try db.view { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            XCTAssertEqual(try bucket.get(b("zbig"))?.bytes, big)
            let c = bucket.cursor()
            var forward: [String] = []
            var e = try c.first()
            while let entry = e { forward.append(entry.key.description); e = try c.next() }
            XCTAssertEqual(forward.count, 201)
            XCTAssertEqual(forward, forward.sorted())
            var backward: [String] = []
            e = try c.last()
            while let entry = e { backward.append(entry.key.description); e = try c.prev() }
            XCTAssertEqual(backward, forward.reversed())
            XCTAssertEqual(try c.seek(b("key00100x"))?.key.description, "key00101")
            XCTAssertEqual(try c.seek(b("key00100"))?.key.description, "key00100")
            XCTAssertNil(try c.seek(b("zzz")))
            XCTAssertEqual(try c.seek(b("a"))?.key.description, "key00000")
        }
        assertConsistent(db)
        try db.close()
    }

    func testCursorDeleteAndEmptyBucketAfterDeletes() throws {
        let fs = SimulatedFileSystem(seed: 7)
        let db = try DB.open(path: "/a.db", options: simOptions(fs, pageSize: 512))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<2000 { try bucket.put(b(String(format: "k%06d", i)), b("v")) }
        }
        assertConsistent(db)
        try db.update { tx throws(BoltError) in
            let c = try tx.bucket(b("b"))!.cursor()
            while let entry = try c.first() {
                _ = entry
                try c.delete()
            }
        }
        try db.view { tx throws(BoltError) in XCTAssertNil(try tx.bucket(b("b"))!.cursor().first()) }
        assertConsistent(db)
        try db.close()
    }

    func testRollbackLeavesNoTrace() throws {
        let fs = SimulatedFileSystem(seed: 8)
        let db = try DB.open(path: "/a.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in try tx.createBucket(b("b")).put(b("a"), b("1")) }
        let before = fs.contents(of: "/a.db")
        let tx = try db.beginWrite()
        try tx.bucket(b("b"))!.put(b("a"), b("2"))
        for i in 0..<500 { try tx.bucket(b("b"))!.put(b("x\(i)"), [UInt8](repeating: 1, count: 100)) }
        tx.rollback()
        XCTAssertEqual(fs.contents(of: "/a.db"), before)
        XCTAssertEqual(try db.view { tx throws(BoltError) in try tx.bucket(b("b"))?.get(b("a"))?.bytes }, b("1"))
        // Freelist accounting survives the rollback: a later commit is still consistent.
        try db.update { tx throws(BoltError) in try tx.bucket(b("b"))!.put(b("c"), b("3")) }
        assertConsistent(db)
        XCTAssertThrowsError(try tx.commit()) { XCTAssertEqual($0 as? BoltError, .txClosed) }
        try db.close()
    }

    func testNoFreelistSyncWritesNoFreelistAndRebuildsOnOpen() throws {
        let fs = SimulatedFileSystem(seed: 9)
        var db = try DB.open(path: "/a.db", options: simOptions(fs) { $0.noFreelistSync = true })
        for round in 0..<5 {
            try db.update { tx throws(BoltError) in
                let bucket = try tx.createBucketIfNotExists(b("b"))
                for i in 0..<300 { try bucket.put(b("k\(i)"), b("round \(round)")) }
            }
        }
        XCTAssertEqual(db.currentMeta.freelist, PageLayout.noFreelist)
        assertConsistent(db)
        try db.close()
        db = try DB.open(path: "/a.db", options: simOptions(fs) { $0.noFreelistSync = true })
        XCTAssertGreaterThan(db.freelistCounts().free, 0, "free pages rebuilt by scanning")
        try db.close()
        // Opening without the option writes a freelist at once.
        db = try DB.open(path: "/a.db", options: simOptions(fs))
        XCTAssertNotEqual(db.currentMeta.freelist, PageLayout.noFreelist)
        assertConsistent(db)
        XCTAssertEqual(try db.view { tx throws(BoltError) in try tx.bucket(b("b"))?.get(b("k5"))?.bytes }, b("round 4"))
        try db.close()
    }

    /// A view kept past its transaction is caught in debug builds (`isAlive` is false, and a
    /// read would stop with a message) instead of reading reused memory silently.
    func testViewKeptPastItsTransactionIsCaught() throws {
        let fs = SimulatedFileSystem(seed: 30)
        let db = try DB.open(path: "/life.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in try tx.createBucket(b("b")).put(b("k"), b("v")) }
        var kept: ByteView?
        var keptKey: ByteView?
        try db.view { tx throws(BoltError) in
            kept = try tx.bucket(b("b"))!.get(b("k"))
            keptKey = try tx.bucket(b("b"))!.cursor().first()?.key
            XCTAssertTrue(kept!.isAlive)
        }
        var keptWrite: ByteView?
        try db.update { tx throws(BoltError) in
            try tx.bucket(b("b"))!.put(b("k2"), b("v2"))
            keptWrite = try tx.bucket(b("b"))!.get(b("k2"))
        }
        #if DEBUG
        XCTAssertFalse(kept!.isAlive)
        XCTAssertFalse(keptKey!.isAlive)
        XCTAssertFalse(keptWrite!.isAlive, "the writer's arena is reused by the next write transaction")
        #endif
        // Copies taken inside the transaction stay good.
        let copy = try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.get(b("k"))!.bytes }
        XCTAssertEqual(copy, b("v"))
        try db.close()
    }

    /// close() on the thread holding the write transaction would wait for itself for ever: an
    /// error instead, and the same for beginning a second write transaction there.
    func testCloseOnTheWriterThreadIsAnError() throws {
        let fs = SimulatedFileSystem(seed: 31)
        let db = try DB.open(path: "/close.db", options: simOptions(fs))
        let tx = try db.beginWrite()
        XCTAssertThrowsError(try db.close()) { XCTAssertEqual($0 as? BoltError, .closeInWriteTransaction) }
        XCTAssertThrowsError(try db.beginWrite()) { XCTAssertEqual($0 as? BoltError, .writeTransactionOpen) }
        try tx.createBucket(b("b"))
        try tx.commit()
        try db.close()
        XCTAssertThrowsError(try db.view { _ throws(BoltError) in }) { XCTAssertEqual($0 as? BoltError, .databaseClosed) }
    }
}
