import Foundation
import KeelIO
import KeelProto
import KeelTestSupport
@testable import KeelWAL
import XCTest

/// Crashes at every step of appends, rollovers, snapshot records and repair: no entry whose
/// save returned (synced) is ever lost, and a torn tail is repaired.
final class WALCrashTests: XCTestCase {
    /// The workload: saves of 1–5 entries, a snapshot record, small segments so it rolls over.
    func runWorkload(_ fs: SimulatedFileSystem, acknowledged: inout UInt64) throws {
        let wal = try WAL.create(fileSystem: fs, directory: "/data/wal", metadata: [9, 9], segmentSize: 4096)
        var index: UInt64 = 0
        for round in 0..<30 {
            let n = UInt64(1 + round % 5)
            try wal.save(hardState: HardState(term: 1, vote: 1, commit: index), entries: entries((index + 1)...(index + n), size: 150))
            index += n
            acknowledged = index
            if round == 12 { try wal.saveSnapshot(WALSnapshot(index: 10, term: 1)) }
        }
        try wal.close()
    }

    func testCrashAtEveryStep() throws {
        let seed = testSeed()
        let probe = SimulatedFileSystem(seed: seed)
        try probe.makeDirectory("/data", intermediate: true)
        var acked: UInt64 = 0
        try runWorkload(probe, acknowledged: &acked)
        let total = probe.mutatingOperations
        XCTAssertGreaterThan(total, 60)
        var rng = SplitMix64(seed: seed)
        var repaired = 0
        for point in 1...total {
            let mode = SimulatedFileSystem.CrashMode.allCases[Int(rng.next() % 5)]
            let fs = SimulatedFileSystem(seed: seed &+ UInt64(point))
            try fs.makeDirectory("/data", intermediate: true)
            fs.crash(afterOperations: point)
            var acknowledged: UInt64 = 0
            XCTAssertThrowsError(try runWorkload(fs, acknowledged: &acknowledged))
            fs.restart(mode: mode)
            let context = "seed \(seed) point \(point)/\(total) mode \(mode), \(acknowledged) entries acknowledged"
            // No WAL at all is fine only if nothing was acknowledged (creation never finished).
            guard fs.exists("/data/wal"), (try? WAL.segmentNames(fs, "/data/wal")) != nil else {
                XCTAssertEqual(acknowledged, 0, context)
                continue
            }
            var contents: WAL.Contents
            do {
                contents = try WAL.open(fileSystem: fs, directory: "/data/wal", forWriting: false).readAll()
            } catch WALError.tornTail {
                XCTAssertTrue(try WAL.repair(fileSystem: fs, directory: "/data/wal"), context)
                repaired += 1
                contents = try WAL.open(fileSystem: fs, directory: "/data/wal", forWriting: false).readAll()
            } catch {
                XCTFail("\(context): \(error)")
                continue
            }
            let indexes = contents.entries.map(\.index)
            XCTAssertEqual(indexes, indexes.isEmpty ? [] : Array(1...UInt64(indexes.count)), context)
            XCTAssertGreaterThanOrEqual(UInt64(indexes.count), acknowledged, "\(context): a synced entry was lost")
            // The recovered WAL takes appends again.
            let wal = try WAL.open(fileSystem: fs, directory: "/data/wal")
            let read = try wal.readAll()
            let next = (read.entries.last?.index ?? 0) + 1
            try wal.save(hardState: HardState(term: 2, vote: 1, commit: next), entries: entries(next...next, term: 2))
            try wal.close()
            XCTAssertEqual(try WAL.open(fileSystem: fs, directory: "/data/wal", forWriting: false).readAll().entries.last?.index, next, context)
        }
        print("crash points: \(total), torn tails repaired: \(repaired)")
    }
}

/// A crash at every step of `repair` itself: the log is afterwards either still torn (and a
/// second repair fixes it) or repaired, and every synced entry is still there.
final class WALRepairCrashTests: XCTestCase {
    func tornLog(_ fs: SimulatedFileSystem) throws -> UInt64 {
        try fs.makeDirectory("/data", intermediate: true)
        let wal = try WAL.create(fileSystem: fs, directory: "/data/wal", metadata: [5], segmentSize: 1 << 20)
        try wal.save(hardState: HardState(term: 1, vote: 1), entries: entries(1...40, size: 300))
        try wal.close()
        // Tear the last record: zero its final sector-aligned bytes.
        let name = "/data/wal/" + (try WAL.segmentNames(fs, "/data/wal")).last!
        var bytes = fs.contents(of: name)!
        let end = bytes.lastIndex { $0 != 0 }!
        for i in ((end - 100) / 512 * 512)...end { bytes[i] = 0 }
        fs.setContents(of: name, bytes)
        return 38
    }

    func testCrashDuringRepair() throws {
        let probe = SimulatedFileSystem(seed: 9)
        let safe = try tornLog(probe)
        let before = probe.mutatingOperations
        XCTAssertTrue(try WAL.repair(fileSystem: probe, directory: "/data/wal"))
        let steps = probe.mutatingOperations - before
        XCTAssertGreaterThan(steps, 2)
        for point in 1...steps {
            for mode in SimulatedFileSystem.CrashMode.allCases {
                let fs = SimulatedFileSystem(seed: UInt64(point))
                _ = try tornLog(fs)
                fs.crash(afterOperations: point)
                XCTAssertThrowsError(try WAL.repair(fileSystem: fs, directory: "/data/wal"))
                fs.restart(mode: mode)
                let context = "repair crash point \(point)/\(steps) mode \(mode)"
                XCTAssertTrue(try WAL.repair(fileSystem: fs, directory: "/data/wal"), context)
                let contents = try WAL.open(fileSystem: fs, directory: "/data/wal", forWriting: false).readAll()
                XCTAssertGreaterThanOrEqual(UInt64(contents.entries.count), safe, context)
            }
        }
    }
}

/// Damaged logs: typed errors naming the segment and offset, never a trap or a hang.
final class WALBadInputTests: XCTestCase {
    func makeLog(_ fs: SimulatedFileSystem) throws -> [String] {
        let wal = try WAL.create(fileSystem: fs, directory: "/wal", metadata: [1, 2, 3], segmentSize: 8192)
        for i in stride(from: UInt64(1), through: 200, by: 10) {
            try wal.save(hardState: HardState(term: 1, commit: i), entries: entries(i...(i + 9), size: 100))
        }
        try wal.close()
        return try WAL.segmentNames(fs, "/wal")
    }

    func read(_ fs: SimulatedFileSystem) throws -> WAL.Contents {
        try WAL.open(fileSystem: fs, directory: "/wal", forWriting: false).readAll()
    }

    func testFlippedBitMidFileIsCorruptionNotATornTail() throws {
        let fs = SimulatedFileSystem(seed: 1)
        let names = try makeLog(fs)
        XCTAssertGreaterThan(names.count, 2)
        var bytes = fs.contents(of: "/wal/" + names[1])!
        bytes[700] ^= 0x10
        fs.setContents(of: "/wal/" + names[1], bytes)
        XCTAssertThrowsError(try read(fs)) { error in
            switch error as? WALError {
            case let .crcMismatch(segment, offset, _, _)?:
                XCTAssertEqual(segment, names[1])
                XCTAssertLessThanOrEqual(offset, 700)
            case let .corruptRecord(segment, _, _)?:
                XCTAssertEqual(segment, names[1])
            default: XCTFail("expected corruption in \(names[1]), got \(error)")
            }
        }
        XCTAssertFalse(try WAL.repair(fileSystem: fs, directory: "/wal"), "mid-log corruption is not silently truncated")
    }

    func testTruncatedLastSegmentIsRepaired() throws {
        let fs = SimulatedFileSystem(seed: 2)
        let names = try makeLog(fs)
        let last = "/wal/" + names.last!
        var bytes = fs.contents(of: last)!
        // Zero the data from a sector boundary on, as a torn write leaves it.
        let dataEnd = bytes.lastIndex { $0 != 0 }!
        for i in ((dataEnd - 300) / 512 * 512)...dataEnd { bytes[i] = 0 }
        fs.setContents(of: last, bytes)
        XCTAssertThrowsError(try read(fs)) { error in
            guard case .tornTail? = error as? WALError else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(try WAL.repair(fileSystem: fs, directory: "/wal"))
        XCTAssertTrue(fs.exists(last + ".broken"))
        let contents = try read(fs)
        XCTAssertGreaterThan(contents.entries.count, 150)
    }

    func testLengthWordPastTheEnd() throws {
        let fs = SimulatedFileSystem(seed: 3)
        let names = try makeLog(fs)
        var bytes = fs.contents(of: "/wal/" + names[0])!
        // The first frame's length word (crc record) now claims 9 MiB.
        withUnsafeBytes(of: UInt64(9 << 20).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        fs.setContents(of: "/wal/" + names[0], bytes)
        XCTAssertThrowsError(try read(fs)) { error in
            guard case let .corruptRecord(segment, offset, _)? = error as? WALError else { return XCTFail("\(error)") }
            XCTAssertEqual(segment, names[0])
            XCTAssertEqual(offset, 0)
        }
    }

    func testHugeRecord() throws {
        let fs = SimulatedFileSystem(seed: 4)
        let names = try makeLog(fs)
        var bytes = fs.contents(of: "/wal/" + names[0])!
        withUnsafeBytes(of: UInt64(11 << 20).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        fs.setContents(of: "/wal/" + names[0], bytes)
        XCTAssertThrowsError(try read(fs)) { error in
            XCTAssertEqual(error as? WALError, .recordTooLarge(segment: names[0], offset: 0, length: 11 << 20))
        }
    }

    func testGapInSegments() throws {
        let fs = SimulatedFileSystem(seed: 5)
        let names = try makeLog(fs)
        try fs.remove("/wal/" + names[1])
        XCTAssertThrowsError(try read(fs)) { error in
            XCTAssertEqual(error as? WALError, .segmentGap(after: names[0], next: names[2]))
        }
    }

    func testGarbageSegmentsNeverTrap() throws {
        let fs = SimulatedFileSystem(seed: 6)
        let names = try makeLog(fs)
        let original = names.map { fs.contents(of: "/wal/" + $0)! }
        var rng = SplitMix64(seed: 6)
        var errors = 0
        for _ in 0..<300 {
            for (name, bytes) in zip(names, original) { fs.setContents(of: "/wal/" + name, bytes) }
            let victim = Int(rng.next() % UInt64(names.count))
            var bytes = original[victim]
            for _ in 0..<(1 + Int(rng.next() % 6)) {
                bytes[Int(rng.next() % UInt64(min(bytes.count, 6000)))] = UInt8(truncatingIfNeeded: rng.next())
            }
            fs.setContents(of: "/wal/" + names[victim], bytes)
            do { _ = try read(fs) } catch is WALError { errors += 1 }
        }
        XCTAssertGreaterThan(errors, 200)
    }
}

/// A WAL written by a real etcd 3.4 (started briefly on loopback) is read completely.
final class EtcdWALFileTests: XCTestCase {
    func testRealEtcdWALAndSnap() throws {
        let dir = try temporaryDirectory(self)
        // A tiny snapshot count so etcd also writes a .snap file and a snapshot record.
        let etcd = try EtcdServer(dataDir: dir + "/etcd", extraArguments: ["--snapshot-count", "20"])
        for i in 0..<60 { try etcd.ctl(["put", "/walkey/\(i)", "value-\(i)"]) }
        etcd.stop()

        let fs = POSIXFileSystem()
        let walDir = dir + "/etcd/member/wal"
        let contents = try WAL.open(fileSystem: fs, directory: walDir, forWriting: false).readAll()
        XCTAssertFalse(contents.metadata.isEmpty)
        let metadata = try Etcdserverpb_Metadata(serializedBytes: contents.metadata)
        XCTAssertNotEqual(metadata.nodeID, 0)
        let indexes = contents.entries.map(\.index)
        XCTAssertEqual(indexes, Array(1...UInt64(indexes.count)), "every entry index, contiguous")
        XCTAssertGreaterThanOrEqual(indexes.count, 60)
        // Every put is in the log, decoded.
        var puts = 0
        for e in contents.entries where e.type == 0 && !e.data.isEmpty {
            if let request = try? Etcdserverpb_InternalRaftRequest(serializedBytes: e.data), request.hasPut { puts += 1 }
        }
        XCTAssertEqual(puts, 60)
        XCTAssertEqual(contents.hardState.commit, indexes.last)
        // And the .snap files etcd wrote.
        let snapper = Snapshotter(fileSystem: fs, directory: dir + "/etcd/member/snap")
        let snapshot = try snapper.loadNewest()
        XCTAssertGreaterThan(snapshot.metadata.index, 0)
        XCTAssertTrue(String(decoding: snapshot.data, as: UTF8.self).contains("\"Root\""))
        // Reading from that snapshot gives the entries after it.
        let after = try WAL.open(fileSystem: fs, directory: walDir,
                                 snapshot: WALSnapshot(index: snapshot.metadata.index, term: snapshot.metadata.term), forWriting: false).readAll()
        XCTAssertEqual(after.entries.first?.index, snapshot.metadata.index + 1)
    }
}
