import Foundation
import KeelBolt
import KeelIO
import XCTest

/// Bytes of a string.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A seed from KEEL_SEED or a fresh random one; printed so a failure can be replayed.
func testSeed(_ name: String = #function) -> UInt64 {
    if let text = ProcessInfo.processInfo.environment["KEEL_SEED"], let seed = UInt64(text) {
        print("\(name): seed \(seed) (from KEEL_SEED)")
        return seed
    }
    let seed = UInt64.random(in: 1...UInt64(Int64.max))
    print("\(name): seed \(seed) (replay with KEEL_SEED=\(seed))")
    return seed
}

/// Options over a simulated file system.
func simOptions(_ fs: SimulatedFileSystem, pageSize: Int = 4096, configure: (inout Options) -> Void = { _ in }) -> Options {
    var o = Options()
    o.fileSystem = fs
    o.pageSize = pageSize
    // Every commit in a simulated-disk test is checked before its meta page is written.
    o.strictMode = true
    configure(&o)
    return o
}

/// Asserts `check` finds nothing.
func assertConsistent(_ db: DB, _ context: String = "", file: StaticString = #filePath, line: UInt = #line) {
    do {
        let issues = try db.view { tx throws(BoltError) in tx.check() }
        XCTAssertEqual(issues, [], "check failed \(context): \(issues.prefix(5).map(\.description))", file: file, line: line)
    } catch {
        XCTFail("check could not run: \(error)", file: file, line: line)
    }
}

/// Every key/value of a bucket tree as a flat model: path components joined by 0x00-free markers.
typealias Model = [[UInt8]: ModelEntry]

indirect enum ModelEntry: Equatable {
    case value([UInt8])
    case bucket([[UInt8]: ModelEntry])
}

/// Reads a bucket recursively into a model.
func readModel(_ bucket: Bucket) throws -> [[UInt8]: ModelEntry] {
    var result: [[UInt8]: ModelEntry] = [:]
    var names: [[UInt8]] = []
    try bucket.forEach { k, v throws(BoltError) in
        if let v { result[k.bytes] = .value(v.bytes) } else { names.append(k.bytes) }
    }
    for name in names {
        guard let child = try bucket.bucket(name) else { throw BoltError.bucketNotFound }
        result[name] = .bucket(try readModel(child))
    }
    return result
}

/// A temporary directory removed at the end of the test.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "keel-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}
