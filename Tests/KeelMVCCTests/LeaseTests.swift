import Foundation
import KeelBackend
import KeelBolt
import KeelIO
@testable import KeelMVCC
import KeelProto
import KeelTestSupport
import XCTest

/// A clock the test moves.
final class FakeClock: @unchecked Sendable {
    private let now = TestLocked<Double>(1000)
    func advance(_ seconds: Double) { now.withLock { $0 += seconds } }
    var value: Double { now.withLock { $0 } }
}

final class LeaseTests: XCTestCase {
    func open(_ path: String, _ clock: FakeClock, fileSystem: (any FileSystem)? = nil) throws -> (BoltBackend, KVStore) {
        var boltOptions = KeelBolt.Options()
        if let fileSystem { boltOptions.fileSystem = fileSystem }
        let backend = try BoltBackend(path: path, options: boltOptions)
        var options = KVStore.Options()
        options.clock = { clock.value }
        return (backend, try KVStore(backend: backend, options: options))
    }

    func put(_ s: KVStore, _ k: String, lease: Int64 = 0, index: UInt64 = 0) throws -> Int64 {
        var p = Etcdserverpb_PutRequest()
        p.key = Data(k.utf8)
        p.value = Data("v".utf8)
        p.lease = lease
        return try s.put(p, index: index).header.revision
    }

    func keys(_ s: KVStore) throws -> [String] {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data([0])
        r.rangeEnd = Data([0])
        return try s.range(r).kvs.map { String(decoding: $0.key, as: UTF8.self) }
    }

    func testGrantAttachRevokeAndRestore() throws {
        let dir = try temporaryDirectory(self)
        let clock = FakeClock()
        var (backend, s) = try open(dir + "/db", clock)
        XCTAssertEqual(try s.grantLease(id: 7, ttl: 1).ttl, 2, "raised to the minimum TTL")
        XCTAssertThrowsError(try s.grantLease(id: 7, ttl: 10)) { XCTAssertEqual("\($0)", "lease already exists") }
        XCTAssertThrowsError(try s.grantLease(id: 8, ttl: KVStore.maxLeaseTTL + 1)) { XCTAssertEqual("\($0)", "too large lease TTL") }
        _ = try s.grantLease(id: 9, ttl: 60)
        let picked = try s.grantLease(id: 0, ttl: 30).id
        XCTAssertGreaterThan(picked, 0, "ID 0: the store picks one, etcd's way")
        _ = try s.revokeLease(id: picked)
        XCTAssertThrowsError(try put(s, "x", lease: 99)) { XCTAssertEqual("\($0)", "requested lease not found") }
        _ = try put(s, "a", lease: 7)
        _ = try put(s, "b", lease: 7)
        _ = try put(s, "c", lease: 9)
        _ = try put(s, "b", lease: 9)   // moves b to lease 9
        _ = try put(s, "d")
        XCTAssertEqual(s.leaseTimeToLive(id: 7, keys: true)?.keys, [Array("a".utf8)])
        XCTAssertEqual(s.leaseTimeToLive(id: 9, keys: true)?.keys, [Array("b".utf8), Array("c".utf8)])
        XCTAssertNil(s.leaseTimeToLive(id: 5))
        // Restore: leases and their keys come back from the backend.
        try s.close()
        try backend.close()
        (backend, s) = try open(dir + "/db", clock)
        XCTAssertEqual(s.leaseIDs(), [7, 9])
        XCTAssertEqual(s.leaseTimeToLive(id: 9, keys: true)?.keys, [Array("b".utf8), Array("c".utf8)])
        XCTAssertEqual(s.leaseTimeToLive(id: 9)?.grantedTTL, 60)
        // Revoke deletes the keys in one revision, and the lease entry.
        let before = s.currentRevision
        XCTAssertEqual(try s.revokeLease(id: 9, index: 50), before + 1)
        XCTAssertEqual(try keys(s), ["a", "d"])
        XCTAssertThrowsError(try s.revokeLease(id: 9)) { XCTAssertEqual($0 as? MVCCError, .leaseNotFound) }
        XCTAssertEqual(try s.revokeLease(id: 7), before + 2)
        XCTAssertEqual(try keys(s), ["d"])
        try s.forceCommit()
        let read = try backend.beginRead()
        XCTAssertEqual(try read.bucket([Array("lease".utf8)]).entries().count, 0)
        read.end()
        // A delete detaches: a lease revoked after its key was deleted and re-put without it keeps the key.
        _ = try s.grantLease(id: 11, ttl: 30)
        _ = try put(s, "e", lease: 11)
        _ = try put(s, "e")
        _ = try s.revokeLease(id: 11)
        XCTAssertEqual(try keys(s), ["d", "e"])
        try s.close()
        try backend.close()
    }

    /// Expiry only while primary, counted from promotion plus the extension; keep-alive restarts it.
    func testExpiryUnderAFakeClock() throws {
        let dir = try temporaryDirectory(self)
        let clock = FakeClock()
        let (backend, s) = try open(dir + "/db", clock)
        _ = try s.grantLease(id: 1, ttl: 10)
        _ = try s.grantLease(id: 2, ttl: 5)
        clock.advance(100)
        XCTAssertEqual(s.expiredLeases(), [], "not primary: nothing expires")
        XCTAssertThrowsError(try s.renewLease(id: 1)) { XCTAssertEqual($0 as? MVCCError, .notPrimary) }
        s.promote(extend: 3)
        clock.advance(7)
        XCTAssertEqual(s.expiredLeases(), [])
        clock.advance(1.5)   // 8.5 > 5 + 3
        XCTAssertEqual(s.expiredLeases(), [2])
        XCTAssertEqual(try s.renewLease(id: 1), 10)
        XCTAssertEqual(s.leaseTimeToLive(id: 1)?.remaining, 10)
        clock.advance(10.5)
        XCTAssertEqual(s.expiredLeases(), [2, 1], "earliest expiry first")
        XCTAssertEqual(s.expiredLeases(limit: 1), [2])
        XCTAssertThrowsError(try s.renewLease(id: 2)) { XCTAssertEqual($0 as? MVCCError, .leaseNotFound) }
        s.demote()
        XCTAssertEqual(s.expiredLeases(), [])
        // A checkpoint: a new primary counts from the remaining TTL, which survives a reopen.
        try s.checkpointLease(id: 1, remainingTTL: 4)
        try s.close()
        let reopened = try KVStore(backend: backend, options: { var o = KVStore.Options(); o.clock = { clock.value }; return o }())
        XCTAssertEqual(reopened.leaseTimeToLive(id: 1)?.remaining, 4)
        reopened.promote(extend: 0)
        clock.advance(4.5)
        XCTAssertEqual(reopened.expiredLeases(), [1], "lease 1 counts from its checkpointed 4 s, lease 2 from its 5 s TTL")
        try reopened.close()
        try backend.close()
        return
        try s.close()
        try backend.close()
    }

    /// etcd's ID layout: member ID's low 16 bits, then time, then a counter; positive, non-zero.
    func testLeaseIDGenerator() {
        var g = LeaseIDGenerator(memberID: 0x8E9E_05C5_2164_694D, unixMilliseconds: 1_700_000_000_000)
        let a = g.next()
        let b = g.next()
        XCTAssertEqual(UInt64(a) >> 48, 0x694D & 0x7FFF)
        XCTAssertEqual(b, a + 1)
        XCTAssertEqual((UInt64(a) >> 8) & ((1 << 40) - 1), 1_700_000_000_000 & ((1 << 40) - 1))
        XCTAssertGreaterThan(a, 0)
    }

    /// A crash at every I/O step of a revoke and its commit: the lease entry and its keys are
    /// gone together or kept together.
    func testRevokeIsAtomicAcrossACrash() throws {
        let clock = FakeClock()
        func prepare(_ fs: SimulatedFileSystem) throws -> (BoltBackend, KVStore) {
            try fs.makeDirectoryDurably("/d")
            let (backend, s) = try open("/d/db", clock, fileSystem: fs)
            _ = try s.grantLease(id: 3, ttl: 30, index: 1)
            for i in 0..<20 { _ = try put(s, "k\(i)", lease: 3, index: UInt64(2 + i)) }
            _ = try put(s, "other", index: 22)
            try s.forceCommit()
            return (backend, s)
        }
        let probe = SimulatedFileSystem(seed: 5)
        let (_, ps) = try prepare(probe)
        let start = probe.mutatingOperations
        _ = try ps.revokeLease(id: 3, index: 23)
        try ps.forceCommit()
        let steps = probe.mutatingOperations - start
        XCTAssertGreaterThan(steps, 2)
        for point in 1...steps {
            for mode in [SimulatedFileSystem.CrashMode.dropUnsynced, .keepRandomSubset, .keepPrefix, .tearWrite] {
                let fs = SimulatedFileSystem(seed: UInt64(point))
                let (_, s) = try prepare(fs)
                fs.crash(afterOperations: point)
                _ = try? s.revokeLease(id: 3, index: 23)
                _ = try? s.forceCommit()
                fs.restart(mode: mode)
                let (backend, reopened) = try open("/d/db", clock, fileSystem: fs)
                let live = try keys(reopened).filter { $0.hasPrefix("k") }.count
                let hasLease = reopened.leaseIDs() == [3]
                XCTAssertTrue((hasLease && live == 20) || (!hasLease && live == 0), "point \(point) mode \(mode): lease \(hasLease), keys \(live)")
                XCTAssertEqual(reopened.consistentIndex, hasLease ? 22 : 23)
                try reopened.close()
                try backend.close()
            }
        }
    }
}
