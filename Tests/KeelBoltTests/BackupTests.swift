import KeelBolt
import KeelIO
import XCTest

final class BackupTests: XCTestCase {
    func fill(_ db: DB, seed: UInt64) throws -> MBucket {
        var rng = SplitMix64(seed: seed)
        let model = MBucket()
        for _ in 0..<20 {
            try db.update { tx throws(BoltError) in
                for _ in 0..<80 { try randomOperation(tx, model, &rng, maxValue: 1500) }
            }
        }
        return model
    }

    func testHotBackupIsAValidCopyWhileWritesContinue() throws {
        let seed = testSeed()
        let fs = SimulatedFileSystem(seed: seed)
        let db = try DB.open(path: "/src.db", options: simOptions(fs))
        let model = try fill(db, seed: seed)
        let snapshot = model.copy()
        let tx = try db.beginRead()
        // Writes go on while the backup runs.
        var rng = SplitMix64(seed: seed &+ 1)
        try db.update { w throws(BoltError) in for _ in 0..<200 { try randomOperation(w, model, &rng, maxValue: 1500) } }
        let size = try tx.copyFile(to: "/backup.db")
        XCTAssertEqual(size, tx.size)
        tx.rollback()
        let backup = try DB.open(path: "/backup.db", options: simOptions(fs))
        XCTAssertNil(try backup.view { t throws(BoltError) in try difference(t.rootBucket, snapshot) })
        assertConsistent(backup)
        XCTAssertFalse(fs.exists("/backup.db.tmp"))
        try backup.close()
        try db.close()
    }

    func testCompactKeepsDataAndShrinks() throws {
        let seed = testSeed()
        let fs = SimulatedFileSystem(seed: seed)
        let db = try DB.open(path: "/src.db", options: simOptions(fs))
        let model = try fill(db, seed: seed)
        let dst = try DB.open(path: "/dst.db", options: simOptions(fs))
        try DB.compact(from: db, into: dst, txMaxSize: 4096)
        XCTAssertNil(try dst.view { t throws(BoltError) in try difference(t.rootBucket, model) })
        assertConsistent(dst)
        XCTAssertLessThanOrEqual(dst.currentMeta.pgid, db.currentMeta.pgid)
        try dst.close()
        try db.close()
    }
}
