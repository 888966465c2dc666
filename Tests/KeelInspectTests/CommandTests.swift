import Foundation
import KeelBolt
import KeelIO
import KeelTestSupport
@testable import KeelWAL
import XCTest

let bboltOracle = GoProgram(name: "bboltoracle", requiredPath: "/usr/share/gocode/src/go.etcd.io/bbolt/db.go",
                            installHint: "golang-github-coreos-bbolt-dev")

func keelutl(_ arguments: [String]) throws -> Shell.Output {
    try Shell.run([try keelutlPath()] + arguments)
}

func hex(_ s: String) -> String { s.utf8.map { String(format: "%02x", $0) }.joined() }

final class CommandTests: XCTestCase {
    /// keelutl buckets/keys/get agree with Go bbolt's view of the same file.
    func testAgreeWithGoBbolt() throws {
        let dir = try temporaryDirectory(self)
        let path = dir + "/go.db"
        let goDump = try bboltOracle.run(["write", path, "7", "300"]).stdout.split(separator: "\n").map(String.init)
        let goBuckets = goDump.filter { $0.hasPrefix("bucket /") && $0.split(separator: "/").count == 2 }
            .map { String($0.split(separator: " ")[1].dropFirst()) }
        let buckets = try keelutl(["buckets", path])
        XCTAssertEqual(buckets.status, 0, buckets.stderr)
        XCTAssertEqual(buckets.stdout.split(separator: "\n").map { hex(String($0)) }, goBuckets)
        // bbolt's `keys` lists nested bucket names with the plain keys, in key order.
        var goKeys = goDump.filter { $0.hasPrefix("key /\(hex("top-0")) ") }.map { String($0.split(separator: " ")[2]) }
        goKeys += goDump.filter { $0.hasPrefix("bucket /\(hex("top-0"))/") }.map { String($0.split(separator: " ")[1].split(separator: "/")[1]) }
        goKeys.sort()
        let keys = try keelutl(["keys", path, "top-0"])
        XCTAssertEqual(keys.stdout.split(separator: "\n").map { hex(String($0)) }, goKeys)
        XCTAssertEqual(try keelutl(["get", path, "small", "s1"]).stdout, "tiny\n")
        let missing = try keelutl(["get", path, "small", "nope"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("key not found"))
        XCTAssertEqual(try keelutl(["check", path]).stdout, "OK\n")
        let stats = try keelutl(["stats", path]).stdout
        let goKeyCount = goDump.filter { $0.hasPrefix("key ") }.count + goDump.filter { $0.hasPrefix("bucket ") && $0.split(separator: "/").count > 2 }.count
        XCTAssertTrue(stats.contains("Number of keys/value pairs: \(goKeyCount)"), stats)
    }

    /// The page map: one square per page below the high-water mark, titled with its use, and a
    /// legend; JSON listings and compact.
    func testPageMapJSONAndCompact() throws {
        let dir = try temporaryDirectory(self)
        let path = dir + "/go.db"
        try bboltOracle.run(["write", path, "11", "200"])
        let svgPath = dir + "/map.svg"
        let pages = try keelutl(["pages", path, "--svg", svgPath])
        XCTAssertEqual(pages.status, 0, pages.stderr)
        let svg = try String(contentsOfFile: svgPath, encoding: .utf8)
        // The newest meta's high-water mark.
        func field(_ page: String, _ name: String) throws -> Int {
            let line = try keelutl(["page", path, page]).stdout.split(separator: "\n").first { $0.hasPrefix(name) }!
            return Int(line.split(whereSeparator: { $0 == "=" || $0 == " " }).last!.filter(\.isNumber))!
        }
        let hwm = try field("0", "Txn ID:") > (try field("1", "Txn ID:")) ? try field("0", "HWM:") : try field("1", "HWM:")
        XCTAssertEqual(svg.components(separatedBy: "<title>page ").count - 1, hwm)
        for use in ["meta 2", "leaf", "free", "freelist 1", "branch"] { XCTAssertTrue(svg.contains(">\(use)"), use) }
        let json = try keelutl(["pages", path, "-w", "json"]).stdout.split(separator: "\n")
        XCTAssertTrue(json.allSatisfy { $0.hasPrefix("{\"id\":") })
        XCTAssertEqual(try keelutl(["buckets", path, "-w", "json"]).stdout.hasPrefix("[\"small\""), true)
        for args in [["info", path, "-w", "json"], ["stats", path, "-w", "json"], ["get", path, "small", "s1", "-w", "json"], ["keys", path, "small", "-w", "json"]] {
            let out = try keelutl(args)
            XCTAssertEqual(out.status, 0, "\(args): \(out.stderr)")
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)), "\(args) prints JSON: \(out.stdout)")
        }
        let get = try JSONSerialization.jsonObject(with: Data(try keelutl(["get", path, "small", "s1", "-w", "json"]).stdout.utf8)) as? [String: String]
        XCTAssertEqual(get?["value"].flatMap { Data(base64Encoded: $0) }, Data("tiny".utf8))
        let compacted = dir + "/compact.db"
        let compact = try keelutl(["compact", path, compacted])
        XCTAssertEqual(compact.status, 0, compact.stderr)
        XCTAssertTrue(compact.stdout.contains(" -> "))
        XCTAssertEqual(try bboltOracle.run(["check", compacted], allowFailure: true).stdout, "OK\n")
        XCTAssertEqual(try bboltOracle.run(["dump", compacted]).stdout, try bboltOracle.run(["dump", path]).stdout)
    }

    /// Damaged files: a specific report, a non-zero exit, never a signal.
    func testDamagedFiles() throws {
        let dir = try temporaryDirectory(self)
        let clean = dir + "/clean.db"
        let db = try DB.open(path: clean)
        try db.update { tx throws(BoltError) in
            let b = try tx.createBucket(Array("b".utf8))
            for i in 0..<2000 { try b.put(Array(String(format: "key-%05d", i).utf8), [UInt8](repeating: 7, count: 50)) }
        }
        try db.update { tx throws(BoltError) in try tx.bucket(Array("b".utf8))!.delete(Array("key-00001".utf8)) }
        let (root, freelist) = try db.view { tx throws(BoltError) in (try tx.bucket(Array("b".utf8))!.stats(), tx.meta.freelist) }
        _ = root
        try db.close()
        let original = try Array(Data(contentsOf: URL(fileURLWithPath: clean)))
        let pages = try keelutl(["pages", clean]).stdout
        let branch = pages.split(separator: "\n").first { $0.contains(" branch ") }.flatMap { UInt64($0.split(separator: " ")[0]) }!
        let leaf = pages.split(separator: "\n").first { $0.contains(" leaf ") }.flatMap { UInt64($0.split(separator: " ")[0]) }!

        func damaged(_ name: String, _ change: (inout [UInt8]) -> Void) throws -> String {
            var bytes = original
            change(&bytes)
            let path = dir + "/" + name + ".db"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
        func expectFailure(_ args: [String], mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let out = try keelutl(args)
            XCTAssertFalse(out.signaled, "\(args) died of a signal", file: file, line: line)
            XCTAssertNotEqual(out.status, 0, "\(args) exited 0", file: file, line: line)
            XCTAssertTrue((out.stdout + out.stderr).contains(mentions), "\(args): \(out.stdout)\(out.stderr)", file: file, line: line)
        }
        // Both meta pages: every command says so; pages still lists what it can.
        let metas = try damaged("metas") { b in b[0x38] ^= 1; b[4096 + 0x38] ^= 1 }
        try expectFailure(["check", metas], mentions: "both meta pages are invalid")
        try expectFailure(["keys", metas, "b"], mentions: "checksum")
        let listing = try keelutl(["page", metas, "0"])
        XCTAssertFalse(listing.signaled)
        XCTAssertTrue(listing.stdout.contains("! checksum"), listing.stdout)
        // A branch page.
        let badBranch = try damaged("branch") { b in b[Int(branch) * 4096 + 16 + 4] = 0xFF; b[Int(branch) * 4096 + 16 + 5] = 0xFF }
        try expectFailure(["check", badBranch], mentions: "page \(branch)")
        try expectFailure(["page", badBranch, String(branch)], mentions: "runs past the page end")
        // A leaf page.
        let badLeaf = try damaged("leaf") { b in b[Int(leaf) * 4096 + 8] = 0x40 }
        try expectFailure(["check", badLeaf], mentions: "page \(leaf)")
        try expectFailure(["pages", badLeaf], mentions: "unknown page type")
        // The freelist.
        let badFreelist = try damaged("freelist") { b in b[Int(freelist) * 4096 + 8] = 0x02 }
        try expectFailure(["check", badFreelist], mentions: "page \(freelist)")
        // Truncated.
        let truncated = try damaged("truncated") { b in b = Array(b.prefix(3 * 4096 + 100)) }
        try expectFailure(["check", truncated], mentions: "past the end of the file")
        try expectFailure(["snapshot", "status", truncated], mentions: "past the end")
    }

    /// A WAL with a torn tail and one with a flipped byte mid-file: reported with segment and offset.
    func testDamagedWAL() throws {
        let dir = try temporaryDirectory(self)
        let fs = POSIXFileSystem()
        let wal = try WAL.create(fileSystem: fs, directory: dir + "/wal", metadata: [1], segmentSize: 16 << 10)
        for i in stride(from: UInt64(1), through: 300, by: 10) {
            try wal.save(hardState: HardState(term: 1, commit: i), entries: (i...(i + 9)).map { Entry(term: 1, index: $0, data: [UInt8](repeating: 1, count: 120)) })
        }
        try wal.close()
        let good = try keelutl(["wal", "dump", dir + "/wal", "-w", "json"])
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertEqual(good.stdout.split(separator: "\n").filter { $0.contains("\"type\":\"entry\"") }.count, 300)
        let names = try WAL.segmentNames(fs, dir + "/wal")
        // Flip a byte in the middle segment.
        var middle = try Array(Data(contentsOf: URL(fileURLWithPath: dir + "/wal/" + names[1])))
        middle[600] ^= 0x20
        try Data(middle).write(to: URL(fileURLWithPath: dir + "/wal/" + names[1]))
        let flipped = try keelutl(["wal", "dump", dir + "/wal"])
        XCTAssertFalse(flipped.signaled)
        XCTAssertEqual(flipped.status, 1)
        XCTAssertTrue(flipped.stderr.contains(names[1]), flipped.stderr)
        middle[600] ^= 0x20
        try Data(middle).write(to: URL(fileURLWithPath: dir + "/wal/" + names[1]))
        // Tear the tail of the last segment.
        var last = try Array(Data(contentsOf: URL(fileURLWithPath: dir + "/wal/" + names.last!)))
        let end = last.lastIndex { $0 != 0 }!
        for i in ((end - 100) / 512 * 512)...end { last[i] = 0 }
        try Data(last).write(to: URL(fileURLWithPath: dir + "/wal/" + names.last!))
        let torn = try keelutl(["wal", "dump", dir + "/wal"])
        XCTAssertEqual(torn.status, 1)
        XCTAssertTrue(torn.stderr.contains("torn write at the end of \(names.last!)"), torn.stderr)
        XCTAssertFalse(torn.stdout.isEmpty, "records before the tear are still listed")
    }
}
