import Foundation
import KeelBolt
import KeelIO
@_exported import KeelTestSupport
import XCTest

/// Bytes of a string.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

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

/// The keys and values of top-level bucket `bucket` (nested buckets left out).
func flatContents(_ db: DB, bucket: [UInt8]) throws -> [[UInt8]: [UInt8]] {
    try db.view { tx throws(BoltError) in
        var all: [[UInt8]: [UInt8]] = [:]
        try tx.bucket(bucket)?.forEach { k, v throws(BoltError) in if let v { all[k.bytes] = v.bytes } }
        return all
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

