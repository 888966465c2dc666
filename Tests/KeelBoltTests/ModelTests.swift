import KeelBolt
import KeelIO
import XCTest

/// A reference model of a bucket tree.
final class MBucket {
    var values: [[UInt8]: [UInt8]] = [:]
    var buckets: [[UInt8]: MBucket] = [:]
    var sequence: UInt64 = 0

    func copy() -> MBucket {
        let c = MBucket()
        c.values = values
        c.sequence = sequence
        c.buckets = buckets.mapValues { $0.copy() }
        return c
    }

    /// Paths of every bucket below (not including) this one.
    func paths(prefix: [[UInt8]] = []) -> [[[UInt8]]] {
        var result: [[[UInt8]]] = []
        for (name, child) in buckets.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            result.append(prefix + [name])
            result += child.paths(prefix: prefix + [name])
        }
        return result
    }

    func at(_ path: [[UInt8]]) -> MBucket {
        var b = self
        for name in path { b = b.buckets[name]! }
        return b
    }

    /// The same dump format as `keelDump`.
    func dump(_ path: String = "") -> String {
        var lines = ""
        var names = Set(values.keys)
        names.formUnion(buckets.keys)
        for name in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let hexName = name.map { String($0, radix: 16).leftPad2 }.joined()
            if let child = buckets[name] {
                let p = path + "/" + hexName
                lines += "bucket \(p) seq=\(child.sequence)\n"
                lines += child.dump(p)
            } else {
                lines += "key \(path) \(hexName) \(values[name]!.map { String($0, radix: 16).leftPad2 }.joined())\n"
            }
        }
        return lines
    }
}

/// The first difference between a bucket and the model, or nil when they hold the same.
func difference(_ bucket: Bucket, _ model: MBucket, path: String = "") throws(BoltError) -> String? {
    if bucket.sequence != model.sequence { return "\(path): sequence \(bucket.sequence) != \(model.sequence)" }
    var seenValues = 0
    var seenBuckets = 0
    let c = bucket.cursor()
    var entry = try c.first()
    while let e = entry {
        let key = e.key.bytes
        if let value = e.value {
            guard let expected = model.values[key] else { return "\(path): unexpected key \(e.key)" }
            if !value.equals(expected) { return "\(path): key \(e.key) has \(value.count) bytes, expected \(expected.count)" }
            seenValues += 1
        } else {
            guard let child = model.buckets[key], let sub = try bucket.bucket(key) else { return "\(path): unexpected bucket \(e.key)" }
            if let d = try difference(sub, child, path: path + "/" + e.key.description) { return d }
            seenBuckets += 1
        }
        entry = try c.next()
    }
    if seenValues != model.values.count { return "\(path): \(seenValues) keys, expected \(model.values.count)" }
    if seenBuckets != model.buckets.count { return "\(path): \(seenBuckets) buckets, expected \(model.buckets.count)" }
    return nil
}

func bucketAt(_ tx: Tx, _ path: [[UInt8]]) throws(BoltError) -> Bucket {
    var bucket = try tx.bucket(path[0])!
    for name in path.dropFirst() { bucket = try bucket.bucket(name)! }
    return bucket
}

/// Applies one random operation to both the database (in `tx`) and the model.
func randomOperation(_ tx: Tx, _ model: MBucket, _ rng: inout SplitMix64, maxValue: Int) throws(BoltError) {
    let paths = model.paths()
    let roll = rng.next() % 100
    func randomKey() -> [UInt8] {
        let length = 1 + Int(rng.next() % 24)
        // A small alphabet so keys collide and get overwritten or deleted.
        return (0..<length).map { _ in UInt8(0x61 + rng.next() % 4) }
    }
    if paths.isEmpty || roll < 4 {
        let name = randomKey()
        if paths.isEmpty || rng.next() % 2 == 0 {
            if model.buckets[name] == nil && model.values[name] == nil {
                try tx.createBucket(name)
                model.buckets[name] = MBucket()
            }
        } else {
            let path = paths[Int(rng.next() % UInt64(paths.count))]
            if path.count < 3 {
                let parent = model.at(path)
                if parent.buckets[name] == nil && parent.values[name] == nil {
                    try bucketAt(tx, path).createBucket(name)
                    parent.buckets[name] = MBucket()
                }
            }
        }
        return
    }
    let path = paths[Int(rng.next() % UInt64(paths.count))]
    let mb = model.at(path)
    let bucket = try bucketAt(tx, path)
    switch roll {
    case 4..<6:
        // Delete a whole bucket (rarely).
        if path.count > 1 || model.buckets.count > 1 {
            let parentPath = Array(path.dropLast())
            if parentPath.isEmpty { try tx.deleteBucket(path.last!) } else { try bucketAt(tx, parentPath).deleteBucket(path.last!) }
            (parentPath.isEmpty ? model : model.at(parentPath)).buckets[path.last!] = nil
        }
    case 6..<8:
        mb.sequence = try bucket.nextSequence()
    case 8..<35:
        // Delete an existing key, or a random one.
        let key = mb.values.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }).dropFirst(Int(rng.next() % UInt64(max(mb.values.count, 1)))).first ?? randomKey()
        if mb.buckets[key] == nil {
            try bucket.delete(key)
            mb.values[key] = nil
        }
    default:
        let key = randomKey()
        guard mb.buckets[key] == nil else { return }
        let size = rng.next() % 20 == 0 ? Int(rng.next() % UInt64(maxValue * 4)) : Int(rng.next() % UInt64(maxValue))
        let value = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try bucket.put(key, value)
        mb.values[key] = value
    }
}

final class ModelTests: XCTestCase {
    /// Long random transaction sequences checked against the model after every transaction, with
    /// rollbacks and reopens, at a normal and a tiny page size.
    func runModel(pageSize: Int, freelistType: FreelistType, noFreelistSync: Bool, transactions: Int) throws {
        let seed = testSeed("model pageSize=\(pageSize) \(freelistType) noFreelistSync=\(noFreelistSync)")
        var rng = SplitMix64(seed: seed)
        let fs = SimulatedFileSystem(seed: seed)
        let options = simOptions(fs, pageSize: pageSize) {
            $0.freelistType = freelistType
            $0.noFreelistSync = noFreelistSync
        }
        var db = try DB.open(path: "/model.db", options: options)
        var model = MBucket()
        for t in 0..<transactions {
            let working = model.copy()
            let rollback = rng.next() % 10 == 0
            let tx = try db.beginWrite()
            let operations = 1 + Int(rng.next() % 60)
            for _ in 0..<operations {
                try randomOperation(tx, working, &rng, maxValue: pageSize / 2)
            }
            if rollback {
                tx.rollback()
            } else {
                try tx.commit()
                model = working
            }
            let diff = try db.view { tx throws(BoltError) in try difference(tx.rootBucket, model) }
            XCTAssertNil(diff, "seed \(seed): state differs after transaction \(t)")
            if t % 5 == 0 || t == transactions - 1 { assertConsistent(db, "seed \(seed) after transaction \(t)") }
            if diff != nil { return }
            if rng.next() % 15 == 0 {
                try db.close()
                db = try DB.open(path: "/model.db", options: options)
            }
        }
        // Delete everything: the file keeps working when emptied.
        try db.update { tx throws(BoltError) in
            for name in try tx.bucketNames() { try tx.deleteBucket(name) }
        }
        XCTAssertEqual(try keelDump(db), "")
        assertConsistent(db, "seed \(seed) after deleting everything")
        try db.close()
    }

    func testModel4096Array() throws { try runModel(pageSize: 4096, freelistType: .array, noFreelistSync: false, transactions: 400) }
    func testModel512Array() throws { try runModel(pageSize: 512, freelistType: .array, noFreelistSync: false, transactions: 400) }
    func testModel512Hashmap() throws { try runModel(pageSize: 512, freelistType: .hashmap, noFreelistSync: false, transactions: 400) }
    func testModel512NoFreelistSync() throws { try runModel(pageSize: 512, freelistType: .hashmap, noFreelistSync: true, transactions: 400) }

    /// Every key count from 0 to 60 inserted and then deleted in ascending, descending and
    /// interleaved orders, on tiny pages so splits and merges happen after a few keys.
    func testExhaustiveSmallInsertDeleteOrders() throws {
        for count in 0...60 {
            for order in 0..<3 {
                let fs = SimulatedFileSystem(seed: UInt64(count))
                let db = try DB.open(path: "/x.db", options: simOptions(fs, pageSize: 512))
                let keys = (0..<count).map { b(String(format: "key-%03d-padding-padding", $0)) }
                try db.update { tx throws(BoltError) in
                    let bucket = try tx.createBucket(b("b"))
                    for k in keys { try bucket.put(k, k) }
                }
                assertConsistent(db, "count \(count) after insert")
                var deleteOrder = keys
                if order == 1 { deleteOrder.reverse() }
                if order == 2 { deleteOrder = keys.enumerated().sorted { ($0.offset % 2, $0.offset) < ($1.offset % 2, $1.offset) }.map(\.element) }
                for (i, k) in deleteOrder.enumerated() {
                    try db.update { tx throws(BoltError) in try tx.bucket(b("b"))!.delete(k) }
                    if i % 7 == 0 { assertConsistent(db, "count \(count) order \(order) after \(i + 1) deletes") }
                }
                let left = try db.view { tx throws(BoltError) in try tx.bucket(b("b"))!.cursor().first()?.key.bytes }
                XCTAssertNil(left)
                assertConsistent(db, "count \(count) order \(order) emptied")
                try db.close()
            }
        }
    }
}
