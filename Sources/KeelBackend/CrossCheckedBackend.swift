import KeelIO

/// Runs every operation on two backends and compares every result (values, errors, bucket lists,
/// whole cursor sequences). On the first difference it stops: that operation and every later
/// one throw `BackendError.divergence` with the recent operations that led there.
///
/// Sizes, backups and defragmentation are engine-specific and come from the primary.
public final class CrossCheckedBackend: Backend, @unchecked Sendable {
    public let primary: any Backend
    public let secondary: any Backend
    public var kind: String { "\(primary.kind)+\(secondary.kind)" }
    public var maxKeySize: Int { min(primary.maxKeySize, secondary.maxKeySize) }
    let journal = Journal()

    public init(primary: any Backend, secondary: any Backend) {
        self.primary = primary
        self.secondary = secondary
    }

    /// The operations recorded so far (the most recent `Journal.capacity`).
    public var recentOperations: [String] { journal.recent() }

    /// How many operations were compared.
    public var comparisons: Int { journal.count() }

    public func beginRead() throws(BackendError) -> any BackendReadTx {
        try journal.checkHealthy()
        let (a, b) = try journal.both("beginRead", { () throws(BackendError) in try primary.beginRead() },
                                      { () throws(BackendError) in try secondary.beginRead() })
        return CheckedReadTx(a, b, journal)
    }

    public func beginWrite() throws(BackendError) -> any BackendWriteTx {
        try journal.checkHealthy()
        let (a, b) = try journal.both("beginWrite", { () throws(BackendError) in try primary.beginWrite() },
                                      { () throws(BackendError) in try secondary.beginWrite() })
        return CheckedWriteTx(a, b, journal)
    }

    public func size() throws(BackendError) -> Int64 { try primary.size() }
    public func sizeInUse() throws(BackendError) -> Int64 { try primary.sizeInUse() }

    @discardableResult
    public func backup(to sink: (UnsafeRawBufferPointer) throws(BackendError) -> Void) throws(BackendError) -> Int64 {
        try primary.backup(to: sink)
    }

    public func defragment() throws(BackendError) {
        try journal.checkHealthy()
        journal.record("defragment")
        try primary.defragment()
        try secondary.defragment()
    }

    /// Closes both engines (the second even when the first fails), then reports the first error.
    public func close() throws(BackendError) {
        var failure: BackendError?
        do throws(BackendError) { try primary.close() } catch { failure = error }
        do throws(BackendError) { try secondary.close() } catch { failure = failure ?? error }
        if let failure { throw failure }
    }
}

/// The shared operation log and divergence state of a cross-check. Bounded: it keeps the last
/// `capacity` operations.
final class Journal: @unchecked Sendable {
    static let capacity = 200
    /// Operations quoted in a divergence report.
    static let reported = 40
    private struct State {
        var ring: [String] = []
        var next = 0
        var total = 0
        var divergence: String?
    }
    private let state = Locked(State())

    func record(_ operation: String) {
        state.withLock { s in
            s.total += 1
            let line = "#\(s.total) \(operation)"
            if s.ring.count < Journal.capacity { s.ring.append(line) } else { s.ring[s.next] = line }
            s.next = (s.next + 1) % Journal.capacity
        }
    }

    func recent() -> [String] {
        state.withLock { s in s.ring.count < Journal.capacity ? s.ring : Array(s.ring[s.next...] + s.ring[..<s.next]) }
    }

    func count() -> Int { state.withLock { $0.total } }

    func checkHealthy() throws(BackendError) {
        if let d = state.withLock({ $0.divergence }) { throw BackendError.divergence(d) }
    }

    /// Records the divergence and returns the error to throw.
    func diverged(_ operation: String, _ detail: String) -> BackendError {
        let ops = recent().suffix(Journal.reported).joined(separator: "\n  ")
        let message = "\(operation): \(detail)\n  last operations:\n  \(ops)"
        state.withLock { if $0.divergence == nil { $0.divergence = message } }
        return BackendError.divergence(message)
    }

    /// Runs an operation on both engines; both must succeed, or fail the same way.
    func both<A, B>(_ operation: String, _ a: () throws(BackendError) -> A, _ b: () throws(BackendError) -> B) throws(BackendError) -> (A, B) {
        try checkHealthy()
        record(operation)
        let ra: Result<A, BackendError>
        let rb: Result<B, BackendError>
        do throws(BackendError) { ra = .success(try a()) } catch { ra = .failure(error) }
        do throws(BackendError) { rb = .success(try b()) } catch { rb = .failure(error) }
        switch (ra, rb) {
        case let (.success(x), .success(y)):
            return (x, y)
        case let (.failure(x), .failure(y)) where x.category == y.category:
            throw x
        case let (.failure(x), .failure(y)):
            throw diverged(operation, "primary failed with \(x), secondary with \(y)")
        case let (.failure(x), .success):
            throw diverged(operation, "primary failed with \(x), secondary succeeded")
        case let (.success, .failure(y)):
            throw diverged(operation, "primary succeeded, secondary failed with \(y)")
        }
    }

    /// Both results must be equal.
    func same<T: Equatable>(_ operation: String, _ a: T, _ b: T, _ show: (T) -> String) throws(BackendError) {
        if a != b { throw diverged(operation, "primary returned \(show(a)), secondary \(show(b))") }
    }
}

func hex(_ bytes: [UInt8]) -> String { printableOrHex(bytes, quoting: .always, hexPrefix: "0x") }

func describe(_ path: BucketPath) -> String { path.map(hex).joined(separator: "/") }

class CheckedReadTx: BackendReadTx {
    let a: any BackendReadTx
    let b: any BackendReadTx
    let journal: Journal

    init(_ a: any BackendReadTx, _ b: any BackendReadTx, _ journal: Journal) {
        self.a = a
        self.b = b
        self.journal = journal
    }

    func buckets(in path: BucketPath) throws(BackendError) -> [[UInt8]] {
        let op = "buckets(in: \(describe(path)))"
        let (x, y) = try journal.both(op, { () throws(BackendError) in try a.buckets(in: path) }, { () throws(BackendError) in try b.buckets(in: path) })
        try journal.same(op, x, y) { $0.map(hex).joined(separator: ",") }
        return x
    }

    func bucket(_ path: BucketPath) throws(BackendError) -> any BackendBucket {
        let (x, y) = try journal.both("bucket(\(describe(path)))", { () throws(BackendError) in try a.bucket(path) },
                                      { () throws(BackendError) in try b.bucket(path) })
        return CheckedBucket(x, y, path, journal)
    }

    func end() {
        journal.record("end")
        a.end()
        b.end()
    }
}

final class CheckedWriteTx: CheckedReadTx, BackendWriteTx {
    var wa: any BackendWriteTx { a as! any BackendWriteTx }
    var wb: any BackendWriteTx { b as! any BackendWriteTx }

    func createBucket(_ path: BucketPath) throws(BackendError) {
        _ = try journal.both("createBucket(\(describe(path)))", { () throws(BackendError) in try wa.createBucket(path) },
                             { () throws(BackendError) in try wb.createBucket(path) })
    }

    func deleteBucket(_ path: BucketPath) throws(BackendError) {
        _ = try journal.both("deleteBucket(\(describe(path)))", { () throws(BackendError) in try wa.deleteBucket(path) },
                             { () throws(BackendError) in try wb.deleteBucket(path) })
    }

    func commit() throws(BackendError) {
        _ = try journal.both("commit", { () throws(BackendError) in try wa.commit() }, { () throws(BackendError) in try wb.commit() })
    }

    func rollback() {
        journal.record("rollback")
        wa.rollback()
        wb.rollback()
    }
}

final class CheckedBucket: BackendBucket {
    let a: any BackendBucket
    let b: any BackendBucket
    let path: BucketPath
    let journal: Journal

    init(_ a: any BackendBucket, _ b: any BackendBucket, _ path: BucketPath, _ journal: Journal) {
        self.a = a
        self.b = b
        self.path = path
        self.journal = journal
    }

    func get<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws(BackendError) -> T) throws(BackendError) -> T {
        let op = "get(\(describe(path)), \(hex(Array(key))))"
        let (x, y) = try journal.both(op, { () throws(BackendError) in try a.get(key) { v throws(BackendError) in v.map { Array($0) } } },
                                      { () throws(BackendError) in try b.get(key) { v throws(BackendError) in v.map { Array($0) } } })
        try journal.same(op, x, y) { $0.map { "\($0.count) bytes \(hex(Array($0.prefix(16))))" } ?? "nil" }
        guard let x else { return try body(nil) }
        return try withBackendBytes(x) { raw throws(BackendError) in try body(raw) }
    }

    func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BackendError) {
        _ = try journal.both("put(\(describe(path)), \(hex(Array(key))), \(value.count) bytes)",
                             { () throws(BackendError) in try a.put(key, value) }, { () throws(BackendError) in try b.put(key, value) })
    }

    func delete(_ key: UnsafeRawBufferPointer) throws(BackendError) {
        _ = try journal.both("delete(\(describe(path)), \(hex(Array(key))))",
                             { () throws(BackendError) in try a.delete(key) }, { () throws(BackendError) in try b.delete(key) })
    }

    func range(from start: UnsafeRawBufferPointer, to end: UnsafeRawBufferPointer?, limit: Int, reverse: Bool,
               _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(BackendError) -> Bool) throws(BackendError) {
        let op = "range(\(describe(path)), from: \(hex(Array(start))), to: \(end.map { hex(Array($0)) } ?? "end"), limit: \(limit), reverse: \(reverse))"
        func collect(_ bucket: any BackendBucket) throws(BackendError) -> [[UInt8]] {
            var out: [[UInt8]] = []
            try bucket.range(from: start, to: end, limit: limit, reverse: reverse) { k, v throws(BackendError) in
                out.append(Array(k))
                out.append(Array(v))
                return true
            }
            return out
        }
        let (x, y) = try journal.both(op, { () throws(BackendError) in try collect(a) }, { () throws(BackendError) in try collect(b) })
        if x != y {
            let firstDifference = zip(x, y).enumerated().first { $0.element.0 != $0.element.1 }.map { $0.offset / 2 }
            throw journal.diverged(op, "primary visited \(x.count / 2) entries, secondary \(y.count / 2); first difference at entry \(firstDifference.map(String.init) ?? "after the shorter")")
        }
        var i = 0
        while i < x.count {
            let go = try withBackendBytes(x[i]) { k throws(BackendError) in
                try withBackendBytes(x[i + 1]) { v throws(BackendError) in try body(k, v) }
            }
            if !go { return }
            i += 2
        }
    }
}
