@testable import KeelBolt
import KeelIO
import XCTest

/// Damaged and hostile files: a typed error naming the page, never a trap or a hang.
final class BadInputTests: XCTestCase {
    let pageSize = 4096

    /// A database with bucket "b" deep enough to have a branch root, plus an overflow value.
    func makeFile() throws -> (bytes: [UInt8], bucketRoot: UInt64) {
        let fs = SimulatedFileSystem(seed: 1)
        let db = try DB.open(path: "/src.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<1000 { try bucket.put(b(String(format: "key-%05d", i)), [UInt8](repeating: UInt8(i % 200), count: 60)) }
            try bucket.put(b("zz-big"), [UInt8](repeating: 9, count: 20000))
        }
        try db.update { tx throws(BoltError) in try tx.bucket(b("b"))!.put(b("key-00001"), b("again")) }
        let root = try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.root }
        try db.close()
        return (fs.contents(of: "/src.db")!, root)
    }

    func open(_ bytes: [UInt8], readOnly: Bool = false) throws -> DB {
        let fs = SimulatedFileSystem(seed: 2)
        fs.setContents(of: "/bad.db", bytes)
        return try DB.open(path: "/bad.db", options: simOptions(fs) { $0.readOnly = readOnly })
    }

    func u64(_ bytes: [UInt8], _ offset: Int) -> UInt64 { bytes[offset..<offset + 8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
    func setU64(_ bytes: inout [UInt8], _ offset: Int, _ v: UInt64) { withUnsafeBytes(of: v) { bytes.replaceSubrange(offset..<offset + 8, with: $0) } }
    func setU32(_ bytes: inout [UInt8], _ offset: Int, _ v: UInt32) { withUnsafeBytes(of: v) { bytes.replaceSubrange(offset..<offset + 4, with: $0) } }
    func setU16(_ bytes: inout [UInt8], _ offset: Int, _ v: UInt16) { withUnsafeBytes(of: v) { bytes.replaceSubrange(offset..<offset + 2, with: $0) } }

    /// Rewrites both metas' field at `offset` (from the page start) with a fresh checksum.
    func rewriteMetas(_ bytes: inout [UInt8], _ change: (inout Meta) -> Void) {
        for i in 0..<2 {
            bytes.withUnsafeMutableBytes { raw in
                var meta = Meta(page: PageView(base: raw.baseAddress! + i * pageSize, capacity: pageSize))
                change(&meta)
                meta.write(into: raw.baseAddress! + i * pageSize, pageID: UInt64(i))
            }
        }
    }

    /// Reads every key through the public API; returns the first error.
    func readAll(_ db: DB) -> BoltError? {
        do {
            try db.view { tx throws(BoltError) in
                for name in try tx.bucketNames() {
                    guard let bucket = try tx.bucket(name) else { continue }
                    let c = bucket.cursor()
                    var e = try c.first()
                    while e != nil { e = try c.next() }
                    e = try c.last()
                    while e != nil { e = try c.prev() }
                    _ = try bucket.get(b("key-00500"))
                }
            }
            return nil
        } catch {
            return error
        }
    }

    func testEmptyFile() throws {
        XCTAssertThrowsError(try open([], readOnly: true)) { error in
            guard case .fileTooSmall = error as? BoltError else { return XCTFail("\(error)") }
        }
        // Read-write: an empty file becomes a new database, as in bbolt.
        let db = try open([])
        assertConsistent(db)
        try db.close()
    }

    func testTruncatedFile() throws {
        let (bytes, _) = try makeFile()
        for length in [10, 100, 4096, 6000, 8192, 20000, bytes.count / 2] {
            XCTAssertThrowsError(try open(Array(bytes.prefix(length)), readOnly: true), "length \(length)") { error in
                switch error as? BoltError {
                case .fileTooSmall?, .invalidMetaPages?: break
                default: XCTFail("length \(length): \(error)")
                }
            }
        }
    }

    func testGarbage() throws {
        var rng = SplitMix64(seed: 3)
        let garbage = (0..<65536).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        XCTAssertThrowsError(try open(garbage, readOnly: true)) { error in
            guard case let .invalidMetaPages(_, m0, m1)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertTrue(m0.contains("magic") && m1.contains("magic"), "\(m0) / \(m1)")
        }
    }

    func testOneCorruptMetaFallsBackToTheOther() throws {
        var (bytes, _) = try makeFile()
        let newest = u64(bytes, 0x40) > u64(bytes, pageSize + 0x40) ? 0 : 1
        bytes[newest * pageSize + 0x30] ^= 0xFF  // freelist field: checksum now wrong
        let db = try open(bytes, readOnly: true)
        XCTAssertEqual(db.currentMeta.txid, 2, "fell back to the older commit")
        XCTAssertEqual(try db.view { tx throws(BoltError) in try tx.bucket(b("b"))?.get(b("key-00001"))?.bytes },
                       [UInt8](repeating: 1, count: 60))
        try db.close()
    }

    func testBothMetasCorrupt() throws {
        var (bytes, _) = try makeFile()
        bytes[0x38] ^= 1
        bytes[pageSize + 0x38] ^= 1
        XCTAssertThrowsError(try open(bytes, readOnly: true)) { error in
            guard case let .invalidMetaPages(_, m0, m1)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertTrue(m0.contains("checksum") && m1.contains("checksum"))
        }
    }

    func testHighWaterMarkPastEndOfFile() throws {
        var (bytes, _) = try makeFile()
        rewriteMetas(&bytes) { $0.pgid = 1_000_000 }
        XCTAssertThrowsError(try open(bytes, readOnly: true)) { error in
            guard case let .invalidMetaPages(_, m0, _)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertTrue(m0.contains("past the end of the file"), m0)
        }
    }

    func testBranchChildOutOfRange() throws {
        var (bytes, root) = try makeFile()
        let page = Int(root) * pageSize
        XCTAssertEqual(bytes[page + 8], 0x01, "bucket root is a branch")
        setU64(&bytes, page + 16 + 8, 999_999)  // first child
        let db = try open(bytes, readOnly: true)
        XCTAssertEqual(readAll(db), .pageOutOfBounds(id: 999_999, highWaterMark: db.currentMeta.pgid))
        let issues = try db.view { tx throws(BoltError) in tx.check() }
        XCTAssertTrue(issues.contains { $0.page == 999_999 && $0.message.contains("out of bounds") }, "\(issues)")
        try db.close()
        // A read-write open with a stored freelist does not walk the tree; writing into the
        // broken part fails with the same typed error and leaves the file as it was.
        let writable = try open(bytes)
        XCTAssertThrowsError(try writable.update { tx throws(BoltError) in try tx.bucket(b("b"))!.put(b("key-00000"), b("x")) }) { error in
            XCTAssertEqual(error as? BoltError, .pageOutOfBounds(id: 999_999, highWaterMark: writable.currentMeta.pgid))
        }
        try writable.close()
    }

    func testBranchChildPointingAtItself() throws {
        var (bytes, root) = try makeFile()
        setU64(&bytes, Int(root) * pageSize + 16 + 8, root)
        let db = try open(bytes, readOnly: true)
        guard case .corruptPage? = readAll(db) else { return XCTFail("expected a corrupt page error") }
        let issues = try db.view { tx throws(BoltError) in tx.check() }
        XCTAssertTrue(issues.contains { $0.page == root && $0.message == "multiple references" }, "\(issues)")
        try db.close()
    }

    func testWrongPageFlags() throws {
        var (bytes, root) = try makeFile()
        let child = u64(bytes, Int(root) * pageSize + 16 + 8)
        setU16(&bytes, Int(child) * pageSize + 8, 0x40)
        let db = try open(bytes, readOnly: true)
        XCTAssertEqual(readAll(db), .corruptPage(id: child, reason: "invalid page type unknown<40> where a branch or leaf was expected"))
        XCTAssertTrue(try db.view { tx throws(BoltError) in tx.check() }.contains { $0.page == child && $0.message.contains("invalid type") })
        try db.close()
    }

    func testElementPointingPastThePage() throws {
        var (bytes, root) = try makeFile()
        let child = Int(u64(bytes, Int(root) * pageSize + 16 + 8))
        setU32(&bytes, child * pageSize + 16 + 4, 1_000_000)  // pos of leaf element 0
        let db = try open(bytes, readOnly: true)
        guard case let .corruptPage(id, reason)? = readAll(db) else { return XCTFail("expected a corrupt page error") }
        XCTAssertEqual(id, UInt64(child))
        XCTAssertTrue(reason.contains("past the page end"), reason)
        XCTAssertFalse(try db.view { tx throws(BoltError) in tx.check() }.isEmpty)
        try db.close()
    }

    func testHugeOverflowAndCount() throws {
        var (bytes, root) = try makeFile()
        let child = Int(u64(bytes, Int(root) * pageSize + 16 + 8))
        var a = bytes
        setU32(&a, child * pageSize + 12, 0xFFFF_FFFF)
        var db = try open(a, readOnly: true)
        XCTAssertNotNil(readAll(db))
        try db.close()
        setU16(&bytes, child * pageSize + 10, 0xFFF0)
        db = try open(bytes, readOnly: true)
        guard case .corruptPage? = readAll(db) else { return XCTFail("expected corrupt page") }
        try db.close()
    }

    func testFreelistListingOutOfRangeIDs() throws {
        var (bytes, _) = try makeFile()
        let meta = u64(bytes, 0x40) > u64(bytes, pageSize + 0x40) ? 0 : pageSize
        let freelist = Int(u64(bytes, meta + 0x30))
        setU16(&bytes, freelist * pageSize + 10, 1)
        setU64(&bytes, freelist * pageSize + 16, 123_456_789)
        XCTAssertThrowsError(try open(bytes)) { error in
            guard case let .corruptPage(id, reason)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertEqual(id, UInt64(freelist))
            XCTAssertTrue(reason.contains("123456789"), reason)
        }
        let db = try open(bytes, readOnly: true)
        XCTAssertTrue(try db.view { tx throws(BoltError) in tx.check() }.contains { $0.message.contains("123456789") })
        try db.close()
    }

    /// Random byte flips anywhere in the file: whatever happens is a typed error or success.
    /// An empty branch page as a bucket root: every path into it (sequence calls, puts, gets,
    /// cursors, stats) reports the page instead of indexing into no elements.
    func testEmptyBranchAsBucketRoot() throws {
        var (bytes, root) = try makeFile()
        let page = Int(root) * pageSize
        XCTAssertEqual(bytes[page + 8], 0x01, "bucket root is a branch")
        setU16(&bytes, page + 10, 0)
        let db = try open(bytes)
        let empty = BoltError.corruptPage(id: root, reason: "branch page with no elements")
        for (name, body) in [
            ("nextSequence", { (bucket: Bucket) throws(BoltError) in _ = try bucket.nextSequence() }),
            ("setSequence", { (bucket: Bucket) throws(BoltError) in try bucket.setSequence(9) }),
            ("put", { (bucket: Bucket) throws(BoltError) in try bucket.put(b("key-00001"), b("x")) }),
            ("delete", { (bucket: Bucket) throws(BoltError) in try bucket.delete(b("key-00001")) }),
            ("get", { (bucket: Bucket) throws(BoltError) in _ = try bucket.get(b("key-00001")) }),
            ("first", { (bucket: Bucket) throws(BoltError) in _ = try bucket.cursor().first() }),
            ("last", { (bucket: Bucket) throws(BoltError) in _ = try bucket.cursor().last() }),
            ("seek", { (bucket: Bucket) throws(BoltError) in _ = try bucket.cursor().seek(b("key-005")) }),
            ("stats", { (bucket: Bucket) throws(BoltError) in _ = try bucket.stats() }),
            ("createBucket", { (bucket: Bucket) throws(BoltError) in try bucket.createBucket(b("nested")) }),
        ] {
            XCTAssertThrowsError(try db.update { tx throws(BoltError) in try body(tx.bucket(b("b"))!) }, name) { error in
                XCTAssertEqual(error as? BoltError, empty, name)
            }
        }
        try db.close()
    }

    /// A file whose branch pages all point at their first child (a DAG): walks, stats and
    /// compaction stop at once with a typed error instead of walking shared subtrees again and
    /// again (exponential in the depth).
    func testBranchesSharingChildrenAreRefused() throws {
        let fs = SimulatedFileSystem(seed: 3)
        let db = try DB.open(path: "/dag.db", options: simOptions(fs, pageSize: 512))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<3000 { try bucket.put(b(String(format: "key-%06d", i * 10)), [UInt8](repeating: 1, count: 40)) }
        }
        let root = try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.root }
        try db.close()
        var bytes = fs.contents(of: "/dag.db")!
        // Every branch page reachable from the root: point all its elements at element 0's child.
        var queue = [root]
        var branches = 0
        while let id = queue.popLast() {
            let page = Int(id) * 512
            guard bytes[page + 8] == 0x01 else { continue }
            branches += 1
            let count = Int(bytes[page + 10]) | Int(bytes[page + 11]) << 8
            let first = u64(bytes, page + 16 + 8)
            for e in 1..<count { setU64(&bytes, page + 16 + e * 16 + 8, first) }
            queue.append(first)
        }
        XCTAssertGreaterThanOrEqual(branches, 3, "a tree of depth 4 at least")
        let damaged = SimulatedFileSystem(seed: 4)
        damaged.setContents(of: "/dag.db", bytes)
        let reopened = try DB.open(path: "/dag.db", options: simOptions(damaged, pageSize: 512) { $0.readOnly = true })
        let start = monotonicNanoseconds()
        XCTAssertThrowsError(try reopened.view { tx throws(BoltError) in
            let c = try tx.bucket(b("b"))!.cursor()
            var e = try c.first()
            while e != nil { e = try c.next() }
        }) { error in
            guard case let .corruptPage(_, reason)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("separator"), reason)
        }
        XCTAssertThrowsError(try reopened.view { tx throws(BoltError) in
            let c = try tx.bucket(b("b"))!.cursor()
            var e = try c.last()
            while e != nil { e = try c.prev() }
        })
        XCTAssertThrowsError(try reopened.view { tx throws(BoltError) in _ = try tx.bucket(b("b"))!.stats() }) { error in
            guard case let .corruptPage(_, reason)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("referenced more than once"), reason)
        }
        let copyFS = SimulatedFileSystem(seed: 5)
        let destination = try DB.open(path: "/copy.db", options: simOptions(copyFS, pageSize: 512))
        XCTAssertThrowsError(try DB.compact(from: reopened, into: destination))
        XCTAssertLessThan(Double(monotonicNanoseconds() - start) / 1e9, 5, "no exponential walk")
        try destination.close()
        try reopened.close()
        // A put descends through nodes, not a cursor: it too refuses a child outside its range,
        // and the file is left as it was.
        let writableFS = SimulatedFileSystem(seed: 6)
        writableFS.setContents(of: "/dag.db", bytes)
        let writable = try DB.open(path: "/dag.db", options: simOptions(writableFS, pageSize: 512))
        XCTAssertThrowsError(try writable.update { tx throws(BoltError) in try tx.bucket(b("b"))!.put(b("key-015000"), b("x")) }) { error in
            guard case let .corruptPage(_, reason)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("separator"), reason)
        }
        try writable.close()
        XCTAssertEqual(writableFS.contents(of: "/dag.db"), bytes)
    }

    /// A freelist page listing one page twice would hand that page out twice (two live trees
    /// on one page): refused at open.
    func testDuplicateFreelistIDsAreRefused() throws {
        let fs = SimulatedFileSystem(seed: 6)
        let db = try DB.open(path: "/dup.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<500 { try bucket.put(b(String(format: "key-%05d", i)), [UInt8](repeating: 1, count: 100)) }
        }
        try db.update { tx throws(BoltError) in
            let bucket = try tx.bucket(b("b"))!
            for i in 0..<400 { try bucket.delete(b(String(format: "key-%05d", i))) }
        }
        try db.update { _ throws(BoltError) in }
        let freelist = db.currentMeta.freelist
        try db.close()
        var bytes = fs.contents(of: "/dup.db")!
        let page = Int(freelist) * pageSize
        let count = Int(bytes[page + 10]) | Int(bytes[page + 11]) << 8
        XCTAssertGreaterThan(count, 2, "some pages are free")
        setU64(&bytes, page + 16 + 8, u64(bytes, page + 16))  // the second id repeats the first
        XCTAssertThrowsError(try open(bytes)) { error in
            guard case let .corruptPage(id, reason)? = error as? BoltError else { return XCTFail("\(error)") }
            XCTAssertEqual(id, freelist)
            XCTAssertTrue(reason.contains("more than once"), reason)
        }
        // Read-only opens do not use the freelist and still read the data.
        let readOnly = try open(bytes, readOnly: true)
        XCTAssertNil(readAll(readOnly))
        try readOnly.close()
    }

    /// A separator that differs from its child's first key (but still bounds it): a write into
    /// that child must replace the separator, not add a second one that points at the freed page.
    func testSeparatorDifferentFromChildsFirstKey() throws {
        let fs = SimulatedFileSystem(seed: 7)
        let db = try DB.open(path: "/sep.db", options: simOptions(fs))
        try db.update { tx throws(BoltError) in
            let bucket = try tx.createBucket(b("b"))
            for i in 0..<1000 { try bucket.put(b(String(format: "key-%05d", i * 10)), [UInt8](repeating: 1, count: 60)) }
        }
        let root = try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.root }
        try db.close()
        var bytes = fs.contents(of: "/sep.db")!
        let page = Int(root) * pageSize
        XCTAssertEqual(bytes[page + 8], 0x01)
        // Separator 1 ("key-0NNN0") becomes "key-0NNN5"... lower: last digit 0 -> 5 of the key
        // before it is not possible in place, so lower the separator's tens digit by one and set
        // its last digit to 5: still above child 0's last key, below child 1's first.
        let e = page + 16 + 16
        let pos = Int(bytes[e]) | Int(bytes[e + 1]) << 8
        let ksize = Int(bytes[e + 4])
        var key = Array(bytes[(e + pos)..<(e + pos + ksize)])
        let original = String(decoding: key, as: UTF8.self)
        key[ksize - 1] = UInt8(ascii: "5")
        key[ksize - 2] -= 1
        bytes.replaceSubrange((e + pos)..<(e + pos + ksize), with: key)
        let damaged = SimulatedFileSystem(seed: 8)
        damaged.setContents(of: "/sep.db", bytes)
        let reopened = try DB.open(path: "/sep.db", options: simOptions(damaged))
        XCTAssertNil(readAll(reopened), "the keys are still in range, so everything reads")
        // Write into child 1 (its first key), then commit without strict mode.
        try reopened.update { tx throws(BoltError) in try tx.bucket(b("b"))!.put(b(original), b("new")) }
        assertConsistent(reopened, "after writing into the child under the changed separator")
        let rootCount = try reopened.view { tx throws(BoltError) -> Int in
            let r = try tx.bucket(b("b"))!.root
            return try tx.page(r).count
        }
        XCTAssertEqual(rootCount, Int(bytes[page + 10]) | Int(bytes[page + 11]) << 8, "no second separator")
        XCTAssertEqual(try reopened.view { tx throws(BoltError) in try tx.bucket(b("b"))!.get(b(original))?.bytes }, b("new"))
        try reopened.close()
    }

    func testRandomDamageNeverTraps() throws {
        let (bytes, _) = try makeFile()
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        var errors = 0
        for _ in 0..<300 {
            var damaged = bytes
            for _ in 0..<(1 + Int(rng.next() % 8)) {
                // Bias toward headers and element arrays, where damage bites.
                let page = Int(rng.next() % UInt64(damaged.count / pageSize))
                let offset = rng.next() % 2 == 0 ? Int(rng.next() % 128) : Int(rng.next() % UInt64(pageSize))
                damaged[page * pageSize + offset] ^= UInt8(truncatingIfNeeded: 1 | rng.next())
            }
            for readOnly in [true, false] {
                do {
                    let db = try open(damaged, readOnly: readOnly)
                    if readAll(db) != nil { errors += 1 }
                    _ = try db.view { tx throws(BoltError) in tx.check() }
                    if !readOnly {
                        try? db.update { tx throws(BoltError) in try tx.createBucketIfNotExists(b("b")).put(b("new"), b("v")) }
                    }
                    try db.close()
                } catch is BoltError {
                    errors += 1
                }
            }
        }
        XCTAssertGreaterThan(errors, 0, "seed \(seed): damage went unnoticed every time")
    }
}
