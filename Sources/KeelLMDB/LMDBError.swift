import CLMDB

/// An error from the LMDB layer. LMDB's own failures carry LMDB's message (`mdb_strerror`).
public enum LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An LMDB call failed.
    case lmdb(operation: String, code: Int32, message: String)
    /// The path is not an LMDB environment (or it is damaged).
    case notAnEnvironment(path: String, reason: String)
    case bucketNotFound(path: String)
    case bucketExists(path: String)
    /// A key and a bucket would share a name.
    case incompatibleValue(path: String)
    /// Names beginning with `__keel` are Keel's own bookkeeping.
    case bucketNameReserved(name: String)
    /// LMDB names databases with keys of at most 511 bytes; the escaped path is longer.
    case bucketPathTooLong(path: String, bytes: Int)
    /// More buckets than `maxBuckets` (LMDB's maxdbs).
    case tooManyBuckets(max: Int)
    case keyRequired
    case keyTooLarge(size: Int, max: Int)
    case readOnly
    case txClosed
    /// The map is full and could not grow because read transactions stayed open.
    case mapFullWhileReadersOpen(mapSize: Int, readers: Int)

    public var description: String {
        switch self {
        case let .lmdb(operation, code, message):
            return "\(operation) failed: \(message) (code \(code))" + hint(code)
        case let .notAnEnvironment(path, reason):
            return "'\(path)' is not a usable LMDB environment: \(reason)"
        case let .bucketNotFound(path): return "bucket \(path) not found"
        case let .bucketExists(path): return "bucket \(path) already exists"
        case let .incompatibleValue(path): return "incompatible value at \(path): a key and a bucket cannot share a name"
        case let .bucketNameReserved(name): return "bucket name '\(name)' is reserved (names starting with __keel are Keel's)"
        case let .bucketPathTooLong(path, bytes): return "bucket path \(path) escapes to \(bytes) bytes; LMDB allows 511"
        case let .tooManyBuckets(max): return "more than \(max) buckets; open the environment with a larger maxBuckets"
        case .keyRequired: return "a key must not be empty"
        case let .keyTooLarge(size, max): return "key of \(size) bytes is larger than LMDB's maximum \(max)"
        case .readOnly: return "the environment or transaction is read-only"
        case .txClosed: return "the transaction is closed"
        case let .mapFullWhileReadersOpen(mapSize, readers):
            return "the map (\(mapSize) bytes) is full and cannot grow while \(readers) read transactions are open; end them and retry"
        }
    }

    private func hint(_ code: Int32) -> String {
        switch code {
        case MDB_MAP_FULL: return "; see LMDBOptions.mapSize"
        case MDB_READERS_FULL: return "; too many open read transactions, see LMDBOptions.maxReaders"
        case MDB_TXN_FULL: return "; the transaction dirtied too many pages, commit in smaller batches"
        case MDB_INVALID: return "; the data file is not an LMDB file"
        case MDB_VERSION_MISMATCH: return "; the environment was written by an incompatible LMDB version"
        default: return ""
        }
    }

    /// The LMDB return code, when this is an LMDB failure.
    public var code: Int32? {
        if case let .lmdb(_, code, _) = self { return code }
        return nil
    }
}

/// Turns an LMDB return code into an error.
@inline(__always)
func check(_ operation: String, _ rc: Int32) throws(LMDBError) {
    if rc != 0 { throw LMDBError.lmdb(operation: operation, code: rc, message: String(cString: mdb_strerror(rc))) }
}

/// Calls `body` with the bytes of `array`, keeping the typed error.
@inline(__always)
func withBytes<T>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(LMDBError) -> T) throws(LMDBError) -> T {
    let result: Result<T, LMDBError> = array.withUnsafeBytes { raw in
        do throws(LMDBError) { return .success(try body(raw)) } catch { return .failure(error) }
    }
    return try result.get()
}
