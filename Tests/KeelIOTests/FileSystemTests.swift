import Foundation
@testable import KeelIO
import XCTest

final class SimulatedFileSystemTests: XCTestCase {
    func testUnsyncedWritesAreDroppedAtCrash() throws {
        let fs = SimulatedFileSystem(seed: 1)
        let f = try fs.open("/a", options: .createReadWrite)
        try fs.syncDirectory("/")
        try f.write(Array(repeating: 1, count: 100), at: 0)
        try f.sync()
        try f.write(Array(repeating: 2, count: 100), at: 100)
        XCTAssertEqual(try f.size(), 200)
        fs.restart(mode: .dropUnsynced)
        XCTAssertEqual(fs.contents(of: "/a"), Array(repeating: 1, count: 100))
        XCTAssertThrowsError(try f.size(), "handles from before the crash are dead")
    }

    func testTornWriteKeepsWholeSectors() throws {
        for seed in 0..<20 as Range<UInt64> {
            let fs = SimulatedFileSystem(seed: seed)
            let f = try fs.open("/a", options: .createReadWrite)
            try fs.syncDirectory("/")
            try f.write(Array(repeating: 0, count: 4096), at: 0)
            try f.sync()
            try f.write(Array(repeating: 9, count: 4096), at: 0)
            fs.restart(mode: .tearWrite)
            let bytes = fs.contents(of: "/a")!
            XCTAssertEqual(bytes.count, 4096)
            let nines = bytes.prefix { $0 == 9 }.count
            XCTAssertEqual(nines % 512, 0, "seed \(seed): torn at \(nines)")
            XCTAssertTrue(bytes.dropFirst(nines).allSatisfy { $0 == 0 })
        }
    }

    func testRenameWithoutDirectorySyncCanBeLost() throws {
        var lost = 0
        var kept = 0
        for seed in 0..<40 as Range<UInt64> {
            let fs = SimulatedFileSystem(seed: seed)
            try fs.makeDirectoryDurably("/d")
            let f = try fs.open("/d/tmp", options: .createReadWrite)
            try f.write([1, 2, 3], at: 0)
            try f.sync()
            try fs.syncDirectory("/d")
            try fs.rename("/d/tmp", to: "/d/final")
            fs.restart(mode: .random)
            if fs.exists("/d/final") { kept += 1 } else { lost += 1; XCTAssertTrue(fs.exists("/d/tmp")) }
        }
        XCTAssertGreaterThan(lost, 0)
        XCTAssertGreaterThan(kept, 0)
        // With the directory synced, the rename always survives.
        let fs = SimulatedFileSystem(seed: 1)
        let f = try fs.open("/tmp2", options: .createReadWrite)
        try f.sync()
        try fs.rename("/tmp2", to: "/final2")
        try fs.syncDirectory("/")
        fs.restart(mode: .dropUnsynced)
        XCTAssertTrue(fs.exists("/final2"))
        XCTAssertFalse(fs.exists("/tmp2"))
    }

    func testFailedSyncIsStickyAndLosesTheData() throws {
        let fs = SimulatedFileSystem(seed: 3)
        let f = try fs.open("/a", options: .createReadWrite)
        try fs.syncDirectory("/")
        try f.write([1], at: 0)
        fs.failSync(after: 1)
        XCTAssertThrowsError(try f.sync()) { XCTAssertEqual(($0 as? IOError)?.errno, EIO) }
        XCTAssertThrowsError(try f.write([2], at: 1)) { error in
            guard case .fileLost? = error as? IOError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try f.sync())
        fs.restart(mode: .keepPrefix)
        XCTAssertEqual(fs.contents(of: "/a"), [], "the data of a failed sync is not on disk")
    }

    func testCrashPointStopsEverything() throws {
        let fs = SimulatedFileSystem(seed: 4)
        let f = try fs.open("/a", options: .createReadWrite)
        fs.crash(afterOperations: 2)
        try f.write([1], at: 0)
        XCTAssertThrowsError(try f.write([2], at: 1)) { error in
            guard case .simulatedCrash? = error as? IOError else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(fs.isCrashed)
        XCTAssertThrowsError(try fs.open("/b", options: .createReadWrite))
    }

    func testLocks() throws {
        let fs = SimulatedFileSystem(seed: 5)
        let a = try fs.open("/a", options: .createReadWrite)
        let b = try fs.open("/a", options: .readWrite)
        try a.lock(.exclusive, timeoutSeconds: 0)
        XCTAssertThrowsError(try b.lock(.shared, timeoutSeconds: 0)) { XCTAssertEqual($0 as? IOError, .lockTimeout(path: "/a")) }
        a.unlock()
        try b.lock(.shared, timeoutSeconds: 0)
        try a.lock(.shared, timeoutSeconds: 0)
        XCTAssertThrowsError(try a.lock(.exclusive, timeoutSeconds: 0))
    }

    func testMapSeesLaterWrites() throws {
        let fs = SimulatedFileSystem(seed: 6)
        let f = try fs.open("/a", options: .createReadWrite)
        try f.write([1, 2, 3, 4], at: 0)
        let region = try f.map(length: 1 << 20)
        try f.write([9], at: 2)
        XCTAssertEqual(region.base.load(fromByteOffset: 2, as: UInt8.self), 9)
    }
}

final class POSIXFileSystemTests: XCTestCase {
    func testReadWriteSyncMapAndLock() throws {
        let dir = NSTemporaryDirectory() + "keel-io-\(UUID().uuidString)"
        let fs = POSIXFileSystem(syncLatency: LatencyHistogram())
        try fs.makeDirectory(dir + "/sub", intermediate: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/sub/f"
        let f = try fs.open(path, options: .createReadWrite)
        try f.write(Array(repeating: 7, count: 8192), at: 0)
        try f.sync()
        XCTAssertEqual(fs.syncLatency.snapshot().total, 1)
        XCTAssertEqual(try f.read(count: 3, at: 100), [7, 7, 7])
        XCTAssertThrowsError(try f.read(count: 10, at: 8190)) { error in
            guard case .shortTransfer? = error as? IOError else { return XCTFail("\(error)") }
        }
        let region = try f.map(length: 1 << 30)
        try f.write([1, 2], at: 4096)
        XCTAssertEqual(region.base.load(fromByteOffset: 4097, as: UInt8.self), 2)
        try f.preallocate(offset: 0, length: 1 << 20, keepSize: true)
        XCTAssertEqual(try f.size(), 8192)
        try f.truncate(to: 100)
        XCTAssertEqual(try f.size(), 100)
        try f.lock(.exclusive, timeoutSeconds: 0)
        let g = try fs.open(path, options: .readWrite)
        XCTAssertThrowsError(try g.lock(.exclusive, timeoutSeconds: 0.1)) { XCTAssertEqual($0 as? IOError, .lockTimeout(path: path)) }
        f.close()
        try g.lock(.exclusive, timeoutSeconds: 0)
        try fs.rename(path, to: dir + "/sub/g")
        try fs.syncDirectory(dir + "/sub")
        XCTAssertEqual(try fs.listDirectory(dir + "/sub"), ["g"])
        XCTAssertThrowsError(try fs.open(dir + "/missing", options: .readOnly)) { XCTAssertEqual(($0 as? IOError)?.errno, ENOENT) }
        XCTAssertTrue((try? fs.open(dir + "/missing", options: .readOnly)) == nil)
        XCTAssertTrue(IOError.system(operation: "open", path: "/x", errno: ENOENT).description.contains("ENOENT"))
    }
}
