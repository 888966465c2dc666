import Foundation
import KeelBolt
import KeelTestSupport
import XCTest

/// The Go bbolt 1.3.6 oracle (Tests/Interop/bboltoracle), built once per test run.
enum GoOracle {
    static let program = GoProgram(name: "bboltoracle", requiredPath: "/usr/share/gocode/src/go.etcd.io/bbolt/db.go",
                                   installHint: "golang-github-coreos-bbolt-dev")

    /// Runs the oracle; throws when it exits non-zero unless `allowFailure`.
    @discardableResult
    static func run(_ arguments: [String], allowFailure: Bool = false) throws -> Shell.Output {
        try program.run(arguments, allowFailure: allowFailure)
    }
}

/// The same dump format as the oracle's, from KeelBolt.
func keelDump(_ db: DB) throws -> String {
    var lines: [String] = []
    func hex(_ v: ByteView) -> String { v.map { String($0, radix: 16).leftPad2 }.joined() }
    func walk(_ bucket: Bucket, _ path: String) throws {
        let c = bucket.cursor()
        var entry = try c.first()
        while let e = entry {
            if e.value == nil, let child = try bucket.bucket(e.key.bytes) {
                // Emit in cursor order: recurse right here.
                let p = path + "/" + hex(e.key)
                lines.append("bucket \(p) seq=\(child.sequence)")
                try walk(child, p)
            } else {
                lines.append("key \(path) \(hex(e.key)) \(hex(e.value ?? .empty))")
            }
            entry = try c.next()
        }
    }
    try db.view { tx in try walk(tx.rootBucket, "") }
    return lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
}

extension String {
    var leftPad2: String { count >= 2 ? self : "0" + self }
}
