import Foundation
import KeelIO
import KeelProto
import KeelTestSupport
@testable import KeelWAL
import XCTest

let etcdWAL = GoProgram(name: "etcdwal", requiredPath: "/usr/share/gocode/src/go.etcd.io/etcd/wal/wal.go",
                        installHint: "golang-etcd-server-dev")

func entries(_ range: ClosedRange<UInt64>, term: UInt64 = 1, size: Int = 0) -> [Entry] {
    range.map { i in
        Entry(term: term, index: i, data: size == 0 ? Array("data-\(i)".utf8) : [UInt8](repeating: UInt8(i % 251), count: size))
    }
}

final class WALTests: XCTestCase {
    func testCreateSaveReadBack() throws {
        let fs = SimulatedFileSystem(seed: 1)
        try fs.makeDirectoryDurably("/d")
        let meta = encodeMetadata(nodeID: 1, clusterID: 2)
        let wal = try WAL.create(fileSystem: fs, directory: "/d/wal", metadata: meta)
        try wal.save(hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...10))
        try wal.save(hardState: HardState(term: 1, vote: 1, commit: 10), entries: [])
        try wal.saveSnapshot(WALSnapshot(index: 5, term: 1))
        try wal.save(hardState: HardState(term: 2, vote: 1, commit: 10), entries: entries(11...12, term: 2))
        try wal.close()
        XCTAssertFalse(fs.exists("/d/wal.tmp"))

        let fromZero = try WAL.open(fileSystem: fs, directory: "/d/wal", snapshot: WALSnapshot(), forWriting: false)
        let all = try fromZero.readAll()
        XCTAssertEqual(all.metadata, meta)
        XCTAssertEqual(all.hardState, HardState(term: 2, vote: 1, commit: 10))
        XCTAssertEqual(all.entries.map(\.index), Array(1...12))
        try fromZero.close()

        let fromSnap = try WAL.open(fileSystem: fs, directory: "/d/wal", snapshot: WALSnapshot(index: 5, term: 1))
        XCTAssertEqual(try fromSnap.readAll().entries.map(\.index), Array(6...12))
        // Appending after reading continues the CRC chain.
        try fromSnap.save(hardState: HardState(term: 2, vote: 1, commit: 12), entries: entries(13...13, term: 2))
        try fromSnap.close()
        let again = try WAL.open(fileSystem: fs, directory: "/d/wal", snapshot: WALSnapshot(index: 5, term: 1), forWriting: false)
        XCTAssertEqual(try again.readAll().entries.last?.index, 13)
        XCTAssertThrowsError(try WAL.open(fileSystem: fs, directory: "/d/wal", snapshot: WALSnapshot(index: 7, term: 1)).readAll()) { error in
            XCTAssertEqual(error as? WALError, .snapshotNotFound(index: 7, term: 1))
        }
    }

    func testLaterEntryReplacesTheTail() throws {
        let fs = SimulatedFileSystem(seed: 2)
        let wal = try WAL.create(fileSystem: fs, directory: "/wal", metadata: [1])
        try wal.save(hardState: HardState(term: 1), entries: entries(1...5))
        try wal.save(hardState: HardState(term: 2), entries: entries(3...4, term: 2))
        try wal.close()
        let read = try WAL.open(fileSystem: fs, directory: "/wal", forWriting: false).readAll()
        XCTAssertEqual(read.entries.map(\.index), [1, 2, 3, 4])
        XCTAssertEqual(read.entries.map(\.term), [1, 1, 2, 2])
    }

    func testSegmentsRollOverAndLocksRelease() throws {
        let fs = SimulatedFileSystem(seed: 3)
        let wal = try WAL.create(fileSystem: fs, directory: "/wal", metadata: [7], segmentSize: 16 << 10)
        for i in stride(from: UInt64(1), through: 400, by: 10) {
            try wal.save(hardState: HardState(term: 1, commit: i), entries: entries(i...(i + 9), size: 200))
        }
        let segments = try WAL.segmentNames(fs, "/wal")
        XCTAssertGreaterThan(segments.count, 3)
        XCTAssertEqual(SegmentName.parse(segments[1])?.sequence, 1)
        XCTAssertEqual(wal.lockedSegments.count, segments.count)
        wal.releaseLock(to: 300)
        XCTAssertLessThan(wal.lockedSegments.count, segments.count)
        try wal.close()
        let read = try WAL.open(fileSystem: fs, directory: "/wal", forWriting: false).readAll()
        XCTAssertEqual(read.entries.count, 400)
        XCTAssertEqual(read.hardState.commit, 391)
    }

    /// Segments are locked with OFD locks, as etcd locks them, so a second writer (Keel's or
    /// etcd's) is kept out.
    func testSegmentsAreLockedAgainstASecondWriter() throws {
        let dir = try temporaryDirectory(self)
        let fs = POSIXFileSystem()
        let wal = try WAL.create(fileSystem: fs, directory: dir + "/wal", metadata: [1])
        try wal.save(hardState: HardState(term: 1), entries: entries(1...3))
        XCTAssertThrowsError(try WAL.open(fileSystem: fs, directory: dir + "/wal")) { error in
            guard case .io(.lockTimeout)? = error as? WALError else { return XCTFail("\(error)") }
        }
        XCTAssertNoThrow(try WAL.open(fileSystem: fs, directory: dir + "/wal", forWriting: false).readAll())
        try wal.close()
        let again = try WAL.open(fileSystem: fs, directory: dir + "/wal")
        XCTAssertEqual(try again.readAll().entries.count, 3)
        try again.close()
    }

    func testSyncFailureDisablesAppends() throws {
        let fs = SimulatedFileSystem(seed: 4)
        let wal = try WAL.create(fileSystem: fs, directory: "/wal", metadata: [7])
        fs.failSync(after: 1)
        XCTAssertThrowsError(try wal.save(hardState: HardState(term: 1), entries: entries(1...3)))
        XCTAssertThrowsError(try wal.save(hardState: HardState(term: 1), entries: entries(4...4))) { error in
            guard case .writesDisabled? = error as? WALError else { return XCTFail("\(error)") }
        }
    }

    func testGroupCommitSharesSyncs() throws {
        let dir = try temporaryDirectory(self)
        let wal = try WAL.create(fileSystem: SlowSyncFileSystem(), directory: dir + "/wal", metadata: [1])
        let log = GroupCommitLog(wal: wal)
        let group = DispatchGroup()
        let writers = 16
        let perWriter = 50
        let failures = TestLocked(0)
        // Plain threads: the dispatch pool would run only as many writers as cores.
        for w in 0..<writers {
            group.enter()
            Thread.detachNewThread {
                for i in 0..<perWriter {
                    do { try log.append(term: 1, data: Array("w\(w)-\(i)".utf8)) } catch { failures.withLock { $0 += 1 } }
                }
                group.leave()
            }
        }
        group.wait()
        XCTAssertEqual(failures.withLock { $0 }, 0)
        XCTAssertLessThan(log.syncCount, writers * perWriter / 2, "appends share fdatasyncs")
        try log.close()
        let read = try WAL.open(fileSystem: POSIXFileSystem(), directory: dir + "/wal", forWriting: false).readAll()
        XCTAssertEqual(read.entries.map(\.index), Array(1...UInt64(writers * perWriter)))
    }

    func testSnapshotFiles() throws {
        let fs = SimulatedFileSystem(seed: 5)
        try fs.makeDirectoryDurably("/snap")
        let snapper = Snapshotter(fileSystem: fs, directory: "/snap")
        var snapshot = Raftpb_Snapshot()
        snapshot.data = Data("{\"Root\":{}}".utf8)
        snapshot.metadata.index = 10
        snapshot.metadata.term = 2
        snapshot.metadata.confState.voters = [1]
        try snapper.save(term: 2, index: 10, snapshot: [UInt8](try snapshot.serializedBytes() as [UInt8]))
        snapshot.metadata.index = 20
        try snapper.save(term: 2, index: 20, snapshot: [UInt8](try snapshot.serializedBytes() as [UInt8]))
        XCTAssertEqual(try snapper.loadNewest().metadata.index, 20)
        // Damage the newest: it is renamed .broken and the older one is used.
        var bytes = fs.contents(of: "/snap/" + Snapshotter.fileName(term: 2, index: 20))!
        bytes[bytes.count - 3] ^= 0xFF
        fs.setContents(of: "/snap/" + Snapshotter.fileName(term: 2, index: 20), bytes)
        XCTAssertEqual(try snapper.loadNewest().metadata.index, 10)
        XCTAssertTrue(fs.exists("/snap/" + Snapshotter.fileName(term: 2, index: 20) + ".broken"))
    }

    /// A .snap that cannot be *read* (EACCES, EMFILE, EIO) says nothing about its bytes: the
    /// error is reported and the file is left in place, never renamed .broken.
    func testUnreadableSnapshotIsReportedNotSetAside() throws {
        let fs = SimulatedFileSystem(seed: 6)
        try fs.makeDirectoryDurably("/snap")
        let snapper = Snapshotter(fileSystem: fs, directory: "/snap")
        var snapshot = Raftpb_Snapshot()
        snapshot.data = Data("{\"Root\":{}}".utf8)
        for index in [10, 20] as [UInt64] {
            snapshot.metadata.index = index
            snapshot.metadata.term = 2
            try snapper.save(term: 2, index: index, snapshot: [UInt8](try snapshot.serializedBytes() as [UInt8]))
        }
        let newest = "/snap/" + Snapshotter.fileName(term: 2, index: 20)
        for code in [EACCES, EMFILE, EIO] {
            fs.failReads(of: newest, errno: code)
            XCTAssertThrowsError(try snapper.loadNewest()) { error in
                guard case let .io(ioError)? = error as? WALError else { return XCTFail("\(error)") }
                XCTAssertEqual(ioError.errno, code)
            }
            XCTAssertTrue(fs.exists(newest), "errno \(code): the snapshot stays where it is")
            XCTAssertFalse(fs.exists(newest + ".broken"))
        }
        fs.clearReadFaults()
        XCTAssertEqual(try snapper.loadNewest().metadata.index, 20)
        // A saved snapshot survives a crash right after save returned (temp file, rename, directory fsync).
        fs.restart(mode: .dropUnsynced)
        XCTAssertEqual(try snapper.loadNewest().metadata.index, 20)
        XCTAssertFalse(try fs.listDirectory("/snap").contains { $0.hasSuffix(".tmp") })
    }
}

final class WALInteropTests: XCTestCase {
    /// Our record bytes equal etcd's for the same input: etcd writes a WAL, we write the same
    /// records, and the segments match byte for byte.
    func testRecordBytesEqualEtcds() throws {
        let dir = try temporaryDirectory(self)
        try etcdWAL.run(["write", dir + "/etcd", "20", "1000000"])
        let fs = POSIXFileSystem()
        let wal = try WAL.create(fileSystem: fs, directory: dir + "/keel", metadata: Array("keel-metadata".utf8), segmentSize: 1_000_000)
        var batch: [Entry] = []
        for i in UInt64(1)...20 {
            batch.append(Entry(term: 1 + i / 50, index: i, data: Array("data-\(i)".utf8)))
            if batch.count == 7 || i == 20 {
                try wal.save(hardState: HardState(term: 1 + i / 50, vote: 1, commit: i), entries: batch)
                batch = []
            }
            if i == 10 { try wal.saveSnapshot(WALSnapshot(index: i, term: 1 + i / 50)) }
        }
        try wal.close()
        let name = SegmentName.make(sequence: 0, index: 0)
        let theirs = try Data(contentsOf: URL(fileURLWithPath: dir + "/etcd/" + name))
        let ours = try Data(contentsOf: URL(fileURLWithPath: dir + "/keel/" + name))
        XCTAssertEqual(theirs.count, ours.count)
        XCTAssertEqual(theirs, ours, "segment bytes differ from etcd's")
    }

    /// etcd's Go wal package reads a multi-segment WAL Keel wrote, with the same entries.
    func testEtcdReadsOurWAL() throws {
        let dir = try temporaryDirectory(self)
        let fs = POSIXFileSystem()
        let meta = encodeMetadata(nodeID: 0x1234, clusterID: 0x5678)
        let wal = try WAL.create(fileSystem: fs, directory: dir + "/wal", metadata: meta, segmentSize: 32 << 10)
        for i in stride(from: UInt64(1), through: 1000, by: 20) {
            try wal.save(hardState: HardState(term: 3, vote: 2, commit: i + 19), entries: entries(i...(i + 19), term: 3, size: 100))
            if i == 501 { try wal.saveSnapshot(WALSnapshot(index: 500, term: 3)) }
        }
        try wal.close()
        XCTAssertGreaterThan(try WAL.segmentNames(fs, dir + "/wal").count, 2)
        let out = try etcdWAL.run(["read", dir + "/wal", "500", "3"]).stdout.split(separator: "\n")
        XCTAssertEqual(out.first.map(String.init), "metadata " + meta.map { String(format: "%02x", $0) }.joined())
        XCTAssertEqual(out.dropFirst().first.map(String.init), "state term=3 vote=2 commit=1000")
        let indexes = out.dropFirst(2).compactMap { line in line.split(separator: " ").dropFirst().first.flatMap { UInt64($0.dropFirst(6)) } }
        XCTAssertEqual(indexes, Array(501...1000))
        XCTAssertTrue(out.last!.hasSuffix(String(repeating: String(format: "%02x", 1000 % 251), count: 100)))
    }

    /// Keel reads a multi-segment WAL etcd's Go package wrote.
    func testWeReadEtcdsWAL() throws {
        let dir = try temporaryDirectory(self)
        try etcdWAL.run(["write", dir + "/wal", "3000", "32768"])
        let fs = POSIXFileSystem()
        XCTAssertGreaterThan(try WAL.segmentNames(fs, dir + "/wal").count, 2)
        let all = try WAL.open(fileSystem: fs, directory: dir + "/wal", forWriting: false).readAll()
        XCTAssertEqual(all.metadata, Array("keel-metadata".utf8))
        XCTAssertEqual(all.entries.map(\.index), Array(1...3000))
        XCTAssertEqual(all.entries[41].data, Array("data-42".utf8))
        XCTAssertEqual(all.hardState, HardState(term: 61, vote: 1, commit: 3000))
        let fromSnap = try WAL.open(fileSystem: fs, directory: dir + "/wal", snapshot: WALSnapshot(index: 1500, term: 31), forWriting: false).readAll()
        XCTAssertEqual(fromSnap.entries.first?.index, 1501)
    }
}
