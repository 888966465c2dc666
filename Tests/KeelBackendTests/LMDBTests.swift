import Dispatch
import Foundation
import KeelBackend
import KeelIO
import KeelLMDB
import XCTest

final class LMDBTests: XCTestCase {
    /// A tiny map filled far past its size: it grows and no write is lost, in one big
    /// transaction and across many.
    func testMapFullGrowsAndKeepsEveryWrite() throws {
        let dir = try temporaryDirectory(self)
        var options = LMDBOptions()
        options.mapSize = 256 << 10
        options.noSync = true
        let backend = try LMDBBackend(path: dir + "/grow", options: options)
        let value = [UInt8](repeating: 7, count: 1000)
        let big = try backend.beginWrite()
        try big.createBucket([b("g")])
        for i in 0..<5000 { try big.bucket([b("g")]).put(b("big-\(i)"), value) }
        try big.commit()
        for batch in 0..<20 {
            let tx = try backend.beginWrite()
            for i in 0..<500 { try tx.bucket([b("g")]).put(b("batch-\(batch)-\(i)"), value) }
            try tx.commit()
        }
        XCTAssertGreaterThan(backend.env.mapSize, 16 << 20)
        let r = try backend.beginRead()
        XCTAssertEqual(try r.bucket([b("g")]).entries().count, 15_000)
        r.end()
        backend.close()
    }

    /// A reader held open across many commits keeps its snapshot.
    func testReaderHeldAcrossCommits() throws {
        let dir = try temporaryDirectory(self)
        let backend = try LMDBBackend(path: dir + "/held")
        let setup = try backend.beginWrite()
        try setup.createBucket([b("h")])
        try setup.bucket([b("h")]).put(b("k"), b("v0"))
        try setup.commit()
        let reader = try backend.beginRead()
        let bucket = try reader.bucket([b("h")])
        for i in 1...200 {
            let tx = try backend.beginWrite()
            try tx.bucket([b("h")]).put(b("k"), b("v\(i)"))
            try tx.bucket([b("h")]).put(b("extra-\(i)"), [UInt8](repeating: 1, count: 500))
            try tx.commit()
        }
        XCTAssertEqual(try bucket.get(b("k")), b("v0"))
        XCTAssertEqual(try bucket.entries().count, 1)
        reader.end()
        let fresh = try backend.beginRead()
        XCTAssertEqual(try fresh.bucket([b("h")]).get(b("k")), b("v200"))
        fresh.end()
        backend.close()
    }

    /// Read transactions on several threads while one writer commits.
    func testSeveralThreads() throws {
        let dir = try temporaryDirectory(self)
        let backend = try LMDBBackend(path: dir + "/threads")
        let setup = try backend.beginWrite()
        try setup.createBucket([b("t")])
        try setup.commit()
        let failures = Locked<[String]>([])
        let done = Locked(false)
        let group = DispatchGroup()
        for reader in 0..<3 {
            DispatchQueue.global().async(group: group) {
                while !done.withLock({ $0 }) {
                    do {
                        let tx = try backend.beginRead()
                        let entries = try tx.bucket([b("t")]).entries()
                        // Every commit writes key n and n's predecessors: the snapshot is a prefix.
                        if !entries.isEmpty, entries.count != Int(String(decoding: entries.map(\.key).max { $0.lexicographicallyPrecedes($1) }!.dropFirst(1), as: UTF8.self))! + 1 {
                            failures.withLock { $0.append("reader \(reader): \(entries.count) entries") }
                        }
                        tx.end()
                    } catch {
                        failures.withLock { $0.append("reader \(reader): \(error)") }
                    }
                    usleep(500)
                }
            }
        }
        for i in 0..<200 {
            let tx = try backend.beginWrite()
            try tx.bucket([b("t")]).put(b(String(format: "k%05d", i)), b("v"))
            try tx.commit()
        }
        done.withLock { $0 = true }
        group.wait()
        XCTAssertEqual(failures.withLock { $0 }, [])
        backend.close()
    }

    func testMissingAndNonLMDBEnvironments() throws {
        let dir = try temporaryDirectory(self)
        var readOnly = LMDBOptions()
        readOnly.readOnly = true
        XCTAssertThrowsError(try LMDBEnvironment(path: dir + "/missing", options: readOnly)) { error in
            guard case let .notAnEnvironment(_, reason)? = error as? LMDBError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("no such directory"), reason)
        }
        let garbage = dir + "/garbage"
        try FileManager.default.createDirectory(atPath: garbage, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: garbage + "/data.mdb", contents: Data((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 31) }))
        XCTAssertThrowsError(try LMDBEnvironment(path: garbage)) { error in
            guard case let .notAnEnvironment(_, reason)? = error as? LMDBError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("not an LMDB file"), reason)
        }
        let file = dir + "/plainfile"
        FileManager.default.createFile(atPath: file, contents: Data([1, 2, 3]))
        XCTAssertThrowsError(try LMDBEnvironment(path: file)) { error in
            guard case .notAnEnvironment? = error as? LMDBError else { return XCTFail("\(error)") }
        }
    }

    func testBucketNamesEscapeWithoutCollisions() throws {
        let dir = try temporaryDirectory(self)
        let env = try LMDBEnvironment(path: dir + "/names")
        let tx = try env.beginWrite()
        try tx.createBucket([b("a/b")])
        try tx.createBucket([b("a")])
        try tx.createBucket([b("a"), b("b")])
        try tx.createBucket([b("a%2Fb")])
        try tx.createBucket([[0, 0xFF, 0x2F]])
        XCTAssertThrowsError(try tx.createBucket([b("__keel/buckets")])) { error in
            guard case .bucketNameReserved? = error as? LMDBError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try tx.createBucket([b("a/b")])) { error in
            guard case .bucketExists? = error as? LMDBError else { return XCTFail("\(error)") }
        }
        try tx.commit()
        let r = try env.beginRead()
        XCTAssertEqual(try r.buckets(in: []), [[0, 0xFF, 0x2F], b("a"), b("a%2Fb"), b("a/b")])
        XCTAssertEqual(try r.buckets(in: [b("a")]), [b("b")])
        try r.commit()
        XCTAssertEqual(BucketName.path(BucketName.name([b("x/y%"), [0, 1]])), [b("x/y%"), [0, 1]])
        env.close()
    }

    func testDeleteBucketThenRollbackKeepsIt() throws {
        let dir = try temporaryDirectory(self)
        let backend = try LMDBBackend(path: dir + "/rb")
        let tx = try backend.beginWrite()
        try tx.createBucket([b("keep")])
        try tx.createBucket([b("keep"), b("child")])
        try tx.bucket([b("keep"), b("child")]).put(b("k"), b("v"))
        try tx.commit()
        let drop = try backend.beginWrite()
        try drop.deleteBucket([b("keep")])
        XCTAssertEqual(try drop.buckets(in: []), [])
        drop.rollback()
        let r = try backend.beginRead()
        XCTAssertEqual(try r.bucket([b("keep"), b("child")]).get(b("k")), b("v"))
        r.end()
        let again = try backend.beginWrite()
        try again.deleteBucket([b("keep")])
        try again.commit()
        let r2 = try backend.beginRead()
        XCTAssertEqual(try r2.buckets(in: []), [])
        r2.end()
        backend.close()
    }
}
