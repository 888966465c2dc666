import KeelBolt
import KeelIO

/// What `etcdctl snapshot status` prints, computed the same way: CRC-32C over every bucket name
/// then every key and value in order; the main revision of the last `key` entry; every entry
/// counted; the size as the high-water mark × page size. It works on any bbolt file.
public struct SnapshotStatus: Equatable, Sendable {
    public var hash: UInt32
    public var revision: Int64
    public var totalKey: Int
    public var totalSize: Int64

    /// Computes the status of an open database, after `check` finds nothing (as etcdctl does).
    /// - Throws: `InspectError.inconsistent` with the problems `check` found.
    public static func compute(_ db: DB) throws -> SnapshotStatus {
        try db.view { tx throws in
            let problems = tx.check()
            if !problems.isEmpty { throw InspectError.inconsistent(problems.map(\.description)) }
            var crc: UInt32 = 0
            var revision: Int64 = 0
            var total = 0
            let root = tx.cursor()
            var name = try root.first()
            while let n = name {
                guard let bucket = try tx.rootBucket.bucket(n.key.bytes) else {
                    throw InspectError.corrupt("cannot get hash of bucket \(n.key)")
                }
                crc = n.key.withUnsafeBytes { CRC32C.update(crc, $0) }
                let isKey = n.key.elementsEqual("key".utf8)
                let c = bucket.cursor()
                var entry = try c.first()
                while let e = entry {
                    crc = e.key.withUnsafeBytes { CRC32C.update(crc, $0) }
                    if let v = e.value { crc = v.withUnsafeBytes { CRC32C.update(crc, $0) } }
                    if isKey, let rev = Revision(e.key.bytes) { revision = rev.main }
                    total += 1
                    entry = try c.next()
                }
                name = try root.next()
            }
            return SnapshotStatus(hash: crc, revision: revision, totalKey: total, totalSize: tx.size)
        }
    }

    /// `{"hash":…,"revision":…,"totalKey":…,"totalSize":…}` as etcdctl prints it.
    public var json: String {
        var json = JSONLine()
        json.add("hash", hash)
        json.add("revision", revision)
        json.add("totalKey", totalKey)
        json.add("totalSize", totalSize)
        return json.description
    }

    /// etcdctl's table.
    public var table: String {
        Table(headers: ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
              rows: [[hex8(hash), String(revision), String(totalKey), humanBytes(totalSize)]]).render()
    }

    /// etcdctl's simple form: `hash, revision, total keys, total size`.
    public var simple: String { "\(hex8(hash)), \(revision), \(totalKey), \(humanBytes(totalSize))" }
}

/// An etcd revision key in the `key` bucket: 8-byte big-endian main, '_', 8-byte big-endian sub,
/// and a trailing 't' for a tombstone.
public struct Revision: Equatable, Sendable, CustomStringConvertible {
    public var main: Int64
    public var sub: Int64
    public var tombstone: Bool

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == 17 || (bytes.count == 18 && bytes[17] == UInt8(ascii: "t")), bytes[8] == UInt8(ascii: "_") else { return nil }
        main = Int64(bitPattern: bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) })
        sub = Int64(bitPattern: bytes[9..<17].reduce(0) { $0 << 8 | UInt64($1) })
        tombstone = bytes.count == 18
    }

    public var description: String { "\(main)_\(sub)" }
}

/// Errors of the inspection tools.
public enum InspectError: Error, CustomStringConvertible {
    case inconsistent([String])
    case corrupt(String)
    case usage(String)

    public var description: String {
        switch self {
        case let .inconsistent(problems): return "the file is inconsistent:\n" + problems.joined(separator: "\n")
        case let .corrupt(message): return message
        case let .usage(message): return message
        }
    }
}

func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 8 - s.count)) + s
}

/// Go humanize.Bytes: SI units with one decimal under 10 ("2.1 MB", "25 kB", "779 B").
public func humanBytes(_ n: Int64) -> String {
    if n < 10 { return "\(n) B" }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    let e = Int((Foundation.log(Double(n)) / Foundation.log(1000.0)).rounded(.down))
    let value = Double(n) / Foundation.pow(1000.0, Double(e))
    let rounded = (value * 10 + 0.5).rounded(.down) / 10
    if rounded < 10 {
        let text = String(format: "%.1f", rounded)
        return "\(text) \(units[e])"
    }
    return "\(String(format: "%.0f", rounded)) \(units[e])"
}

import Foundation
