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

    static let crashModes: [SimulatedFileSystem.CrashMode] = [.dropUnsynced, .keepRandomSubset, .keepPrefix, .tearWrite]

    func testCrashAtEveryStep() throws {
        let seed = testSeed()
        let probe = SimulatedFileSystem(seed: seed)
        try probe.makeDirectoryDurably("/data")
        let before = probe.mutatingOperations
        var acked: UInt64 = 0
        try runWorkload(probe, acknowledged: &acked)
        let total = probe.mutatingOperations - before
        XCTAssertGreaterThan(total, 60)
        var repaired = 0
        // Every point, every crash mode.
        for point in 1...total {
          for mode in Self.crashModes {
            let fs = SimulatedFileSystem(seed: seed &+ UInt64(point))
            try fs.makeDirectoryDurably("/data")
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
            wal.segmentSize = 4096  // keeps the simulated preallocation small
            let read = try wal.readAll()
            let next = (read.entries.last?.index ?? 0) + 1
            try wal.save(hardState: HardState(term: 2, vote: 1, commit: next), entries: entries(next...next, term: 2))
            try wal.close()
            XCTAssertEqual(try WAL.open(fileSystem: fs, directory: "/data/wal", forWriting: false).readAll().entries.last?.index, next, context)
          }
        }
        print("crash points: \(total) x \(Self.crashModes.count) modes, torn tails repaired: \(repaired)")
    }

    /// Reads the log, repairing a torn tail first if there is one.
    func readRepairingTornTail(_ fs: SimulatedFileSystem, _ directory: String, _ context: String) throws -> WAL.Contents {
        do throws(WALError) {
            return try WAL.open(fileSystem: fs, directory: directory, forWriting: false).readAll()
        } catch {
            guard case .tornTail = error else { throw error }
            XCTAssertTrue(try WAL.repair(fileSystem: fs, directory: directory), context)
            return try WAL.open(fileSystem: fs, directory: directory, forWriting: false).readAll()
        }
    }

    /// The operations of one segment rollover (`cut`): the save that fills the segment.
    func cutWindow(seed: UInt64) throws -> (before: Int, steps: Int) {
        let probe = SimulatedFileSystem(seed: seed)
        try probe.makeDirectoryDurably("/data")
        let wal = try WAL.create(fileSystem: probe, directory: "/data/wal", metadata: [7], segmentSize: 4096)
        try wal.save(hardState: HardState(term: 1, vote: 1), entries: entries(1...10, size: 200))
        let before = probe.mutatingOperations
        try wal.save(hardState: HardState(term: 1, vote: 1, commit: 10), entries: entries(11...20, size: 200))
        XCTAssertEqual(wal.lockedSegments.count, 2, "the second save cuts a new segment")
        return (before, probe.mutatingOperations - before)
    }

    /// A crash at every step of a rollover, under every crash mode: entries acknowledged before
    /// it survive, entries of the save that cut survive if it returned, and the log opens.
    func testCrashAtEveryStepOfCut() throws {
        let seed = testSeed()
        let (_, steps) = try cutWindow(seed: seed)
        XCTAssertGreaterThanOrEqual(steps, 8, "write, sync, truncate, sync, create, lock-free steps, rename, dir sync")
        for point in 1...steps {
            for mode in Self.crashModes {
                let fs = SimulatedFileSystem(seed: seed &+ UInt64(point))
                try fs.makeDirectoryDurably("/data")
                let wal = try WAL.create(fileSystem: fs, directory: "/data/wal", metadata: [7], segmentSize: 4096)
                try wal.save(hardState: HardState(term: 1, vote: 1), entries: entries(1...10, size: 200))
                fs.crash(afterOperations: point)
                XCTAssertThrowsError(try wal.save(hardState: HardState(term: 1, vote: 1, commit: 10), entries: entries(11...20, size: 200)))
                fs.restart(mode: mode)
                let context = "cut step \(point)/\(steps) mode \(mode)"
                let contents = try readRepairingTornTail(fs, "/data/wal", context)
                let indexes = contents.entries.map(\.index)
                XCTAssertEqual(indexes, Array(1...UInt64(indexes.count)), context)
                XCTAssertGreaterThanOrEqual(indexes.count, 10, context)
                // The log takes appends again.
                let reopened = try WAL.open(fileSystem: fs, directory: "/data/wal")
                reopened.segmentSize = 4096
                let next = UInt64(try reopened.readAll().entries.count) + 1
                try reopened.save(hardState: HardState(term: 2, vote: 1), entries: entries(next...next, term: 2))
                try reopened.close()
            }
        }
    }

    /// EIO at every step of a rollover: the save fails, every later append is refused (nothing
    /// may be acknowledged into a segment restart might not find), and after a restart the log
    /// holds every entry acknowledged before.
    func testFailureAtEveryStepOfCutIsFatal() throws {
        let seed = testSeed()
        let (_, steps) = try cutWindow(seed: seed)
        for step in 1...steps {
            let fs = SimulatedFileSystem(seed: seed)
            try fs.makeDirectoryDurably("/data")
            let wal = try WAL.create(fileSystem: fs, directory: "/data/wal", metadata: [7], segmentSize: 4096)
            try wal.save(hardState: HardState(term: 1, vote: 1), entries: entries(1...10, size: 200))
            fs.failOperation(after: step)
            let context = "EIO at cut step \(step)/\(steps)"
            XCTAssertThrowsError(try wal.save(hardState: HardState(term: 1, vote: 1, commit: 10), entries: entries(11...20, size: 200)), context)
            XCTAssertThrowsError(try wal.save(hardState: HardState(term: 1, vote: 1, commit: 20), entries: entries(21...21, size: 10)), context) { error in
                guard case .writesDisabled? = error as? WALError else { return XCTFail("\(context): expected writesDisabled, got \(error)") }
            }
            XCTAssertThrowsError(try wal.sync(), context)
            try? wal.close()
            fs.restart(mode: .dropUnsynced)
            let contents = try WAL.open(fileSystem: fs, directory: "/data/wal", forWriting: false).readAll()
            let indexes = contents.entries.map(\.index)
            XCTAssertEqual(indexes, Array(1...UInt64(indexes.count)), context)
            XCTAssertGreaterThanOrEqual(indexes.count, 10, context)
        }
    }
}

/// A crash at every step of `repair` itself: the log is afterwards either still torn (and a
/// second repair fixes it) or repaired, and every synced entry is still there.
final class WALRepairCrashTests: XCTestCase {
    func tornLog(_ fs: SimulatedFileSystem) throws -> UInt64 {
        try fs.makeDirectoryDurably("/data")
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

    /// The reproduction: 200 entries in one (the last) segment, the length word of
    /// entry 97 set to 0xFFFFFF00. That is etcd's hard error, not a torn tail: nothing may be
    /// truncated, since entries 97–200 were synced.
    func testOversizedLengthInTheLastSegmentIsNotATornTail() throws {
        let fs = SimulatedFileSystem(seed: 7)
        let (name, offsets) = try singleSegmentLog(fs)
        let path = "/wal/" + name
        var bytes = fs.contents(of: path)!
        withUnsafeBytes(of: UInt64(0xFFFF_FF00).littleEndian) { bytes.replaceSubrange(offsets[97]!..<(offsets[97]! + 8), with: $0) }
        fs.setContents(of: path, bytes)
        XCTAssertThrowsError(try read(fs)) { error in
            XCTAssertEqual(error as? WALError, .recordTooLarge(segment: name, offset: Int64(offsets[97]!), length: 0xFFFF_FF00))
        }
        XCTAssertFalse(try WAL.repair(fileSystem: fs, directory: "/wal"), "repair must refuse")
        XCTAssertEqual(fs.contents(of: path), bytes, "nothing truncated")
        XCTAssertFalse(fs.exists(path + ".broken"))
    }

    /// A damaged length word that stays under the limit and runs into zeros looks torn by
    /// etcd's rule alone; the records after it chain, so it is corruption and repair refuses.
    func testDamagedLengthWithValidRecordsAfterItIsCorruption() throws {
        for (victim, lengths) in [(97, [UInt64(5 << 20), 900, 40]), (199, [UInt64(5 << 20), 900, 40])] {
            for length in lengths {
                let fs = SimulatedFileSystem(seed: 8)
                let (name, offsets) = try singleSegmentLog(fs)
                let path = "/wal/" + name
                var bytes = fs.contents(of: path)!
                let at = offsets[UInt64(victim)]!
                withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(at..<(at + 8), with: $0) }
                fs.setContents(of: path, bytes)
                let context = "entry \(victim) length \(length)"
                XCTAssertThrowsError(try read(fs), context) { error in
                    switch error as? WALError {
                    case let .damageBeforeValidRecords(segment, offset, later)?:
                        XCTAssertEqual(segment, name, context)
                        XCTAssertEqual(offset, Int64(at), context)
                        XCTAssertGreaterThan(later, offset, context)
                    case let .crcMismatch(_, offset, _, _)?, let .corruptRecord(_, offset, _)?:
                        // No zero sector inside the frame: etcd's rule already says corruption.
                        XCTAssertEqual(offset, Int64(at), context)
                    default: XCTFail("\(context): expected corruption, got \(error)")
                    }
                }
                XCTAssertFalse(try WAL.repair(fileSystem: fs, directory: "/wal"), context)
                XCTAssertEqual(fs.contents(of: path), bytes, "\(context): nothing truncated")
                // Opening for writing must not truncate either.
                XCTAssertThrowsError(try WAL.open(fileSystem: fs, directory: "/wal").readAll(), context)
                XCTAssertEqual(fs.contents(of: path), bytes, "\(context): nothing truncated by open")
            }
        }
    }

    /// A zeroed length word mid-log looked like the end of the data: everything after it was
    /// silently dropped (and zeroed by the next open for writing).
    func testZeroedLengthWordMidLogIsCorruption() throws {
        let fs = SimulatedFileSystem(seed: 9)
        let (name, offsets) = try singleSegmentLog(fs)
        let path = "/wal/" + name
        var bytes = fs.contents(of: path)!
        bytes.replaceSubrange(offsets[120]!..<(offsets[120]! + 8), with: [UInt8](repeating: 0, count: 8))
        fs.setContents(of: path, bytes)
        XCTAssertThrowsError(try read(fs)) { error in
            guard case let .damageBeforeValidRecords(segment, offset, _)? = error as? WALError else { return XCTFail("\(error)") }
            XCTAssertEqual(segment, name)
            XCTAssertEqual(offset, Int64(offsets[120]!))
        }
        XCTAssertThrowsError(try WAL.open(fileSystem: fs, directory: "/wal").readAll())
        XCTAssertEqual(fs.contents(of: path), bytes)
    }

    /// A real torn tail in the same log (the last write's sectors zeroed) is still repaired.
    func testTornTailOfTheSingleSegmentIsRepaired() throws {
        let fs = SimulatedFileSystem(seed: 10)
        let (name, offsets) = try singleSegmentLog(fs)
        let path = "/wal/" + name
        var bytes = fs.contents(of: path)!
        let dataEnd = bytes.lastIndex { $0 != 0 }!
        let start = (offsets[199]! + 600) / 512 * 512
        for i in start...dataEnd { bytes[i] = 0 }
        fs.setContents(of: path, bytes)
        XCTAssertThrowsError(try read(fs)) { error in
            guard case .tornTail? = error as? WALError else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(try WAL.repair(fileSystem: fs, directory: "/wal"))
        XCTAssertGreaterThanOrEqual(try read(fs).entries.count, 198)
    }

    /// A log of 200 entries (1 KiB each, ~64 B for the first 100) in one segment, and the
    /// offset of each entry's frame.
    func singleSegmentLog(_ fs: SimulatedFileSystem) throws -> (String, [UInt64: Int]) {
        let wal = try WAL.create(fileSystem: fs, directory: "/wal", metadata: [1, 2, 3], segmentSize: 1 << 20)
        for i in stride(from: UInt64(1), through: 200, by: 4) {
            try wal.save(hardState: HardState(term: 1, commit: i), entries: entries(i...(i + 3), size: i < 100 ? 40 : 1000))
        }
        try wal.close()
        let names = try WAL.segmentNames(fs, "/wal")
        XCTAssertEqual(names.count, 1)
        var offsets: [UInt64: Int] = [:]
        try WAL.dumpRecords(fileSystem: fs, directory: "/wal") { record throws(WALError) in
            if record.type == RecordType.entry.rawValue, let e = try? Raftpb_Entry(serializedBytes: record.data) {
                offsets[e.index] = Int(record.offset)
            }
        }
        XCTAssertEqual(offsets.count, 200)
        return (names[0], offsets)
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
