#if canImport(Glibc)
import Glibc
#endif
import CLMDB
import KeelIO

/// How an LMDB environment is opened.
public struct LMDBOptions: Sendable {
    /// Initial map size in bytes. The map grows (doubling) when a write fills it.
    public var mapSize: Int = 1 << 30
    /// Buckets (named databases) the environment can hold, LMDB's maxdbs (+1 for Keel's registry).
    public var maxBuckets: Int = 1024
    /// Concurrent read transactions, LMDB's maxreaders.
    public var maxReaders: Int = 126
    public var readOnly = false
    /// Skip fsync at commit (MDB_NOSYNC): unsafe.
    public var noSync = false
    /// Permission bits for new files.
    public var mode: UInt32 = 0o600
    /// How long a growing writer waits for open readers to end before failing.
    public var growWaitSeconds: Double = 30

    public init() {}
}

/// An LMDB environment (a directory holding `data.mdb` and `lock.mdb`) with bbolt-like buckets:
/// each bucket, nested ones included, is a named database whose name is the escaped bucket
/// path; a registry database lists them.
///
/// Transactions may be used from any thread (MDB_NOTLS), one thread at a time each; there is
/// one write transaction at a time. When a write fills the map, the transaction is aborted, the
/// map doubled and the transaction's operations replayed, so no data is lost; growing waits for
/// open read transactions to end (LMDB cannot remap under them).
public final class LMDBEnvironment: @unchecked Sendable {
    let env: OpaquePointer
    /// The environment directory.
    public let path: String
    public let options: LMDBOptions
    /// The largest key LMDB accepts (511 by default).
    public let maxKeySize: Int
    let writerGate = Locked(false)
    struct State {
        var mapSize: Int
        var readers = 0
        var growing = false
        var closed = false
        /// Database handles by escaped name (committed buckets).
        var handles: [String: MDB_dbi] = [:]
        var registry: MDB_dbi?
        /// Committed child bucket names by parent name ("" for the top level).
        var children: [String: Set<[UInt8]>] = [:]
    }
    let state: Locked<State>

    /// Opens (or, unless read-only, creates) the environment at directory `path`.
    /// - Throws: `LMDBError.notAnEnvironment` for a missing directory (read-only), a data file
    ///   that is not LMDB, or one this process may not read; `.lmdb` for other LMDB failures.
    public init(path: String, options: LMDBOptions = LMDBOptions()) throws(LMDBError) {
        self.path = path
        self.options = options
        var env: OpaquePointer?
        try check("mdb_env_create", mdb_env_create(&env))
        guard let env else { throw LMDBError.lmdb(operation: "mdb_env_create", code: ENOMEM, message: "no environment") }
        self.env = env
        do throws(LMDBError) {
            try check("mdb_env_set_mapsize", mdb_env_set_mapsize(env, options.mapSize))
            try check("mdb_env_set_maxdbs", mdb_env_set_maxdbs(env, MDB_dbi(options.maxBuckets + 1)))
            try check("mdb_env_set_maxreaders", mdb_env_set_maxreaders(env, UInt32(options.maxReaders)))
            var flags = UInt32(MDB_NOTLS)
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            if options.noSync { flags |= UInt32(MDB_NOSYNC) }
            if !options.readOnly { mkdir(path, 0o700) }
            var st = stat()
            if stat(path, &st) != 0 {
                throw LMDBError.notAnEnvironment(path: path, reason: "no such directory")
            }
            if (st.st_mode & S_IFMT) != S_IFDIR {
                throw LMDBError.notAnEnvironment(path: path, reason: "not a directory (an LMDB environment is a directory holding data.mdb)")
            }
            let rc = mdb_env_open(env, path, flags, mode_t(options.mode))
            switch rc {
            case 0: break
            case MDB_INVALID:
                throw LMDBError.notAnEnvironment(path: path, reason: "data.mdb is not an LMDB file (MDB_INVALID)")
            case MDB_VERSION_MISMATCH:
                throw LMDBError.notAnEnvironment(path: path, reason: "written by an incompatible LMDB version")
            case ENOENT:
                throw LMDBError.notAnEnvironment(path: path, reason: "data.mdb is missing")
            case EACCES:
                throw LMDBError.notAnEnvironment(path: path, reason: "permission denied")
            default:
                try check("mdb_env_open '\(path)'", rc)
            }
        } catch {
            mdb_env_close(env)
            throw error
        }
        maxKeySize = Int(mdb_env_get_maxkeysize(env))
        state = Locked(State(mapSize: options.mapSize))
        var dead: Int32 = 0
        _ = mdb_reader_check(env, &dead)
        do throws(LMDBError) {
            try loadRegistry()
        } catch {
            mdb_env_close(env)
            throw error
        }
    }

    deinit { close() }

    /// Closes the environment. Every transaction must have ended.
    public func close() {
        let wasOpen = state.withLock { s in
            defer { s.closed = true }
            return !s.closed
        }
        if wasOpen { mdb_env_close(env) }
    }

    /// Opens the registry and every bucket's database handle.
    private func loadRegistry() throws(LMDBError) {
        var txn: OpaquePointer?
        try check("mdb_txn_begin", mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn))
        var registry: MDB_dbi = 0
        let rc = mdb_dbi_open(txn, BucketName.registry, 0, &registry)
        if rc == MDB_NOTFOUND {
            mdb_txn_abort(txn)
            return
        }
        do throws(LMDBError) {
            try check("mdb_dbi_open registry", rc)
            var handles: [String: MDB_dbi] = [:]
            var children: [String: Set<[UInt8]>] = [:]
            var cursor: OpaquePointer?
            try check("mdb_cursor_open", mdb_cursor_open(txn, registry, &cursor))
            var key = MDB_val()
            var data = MDB_val()
            var op = MDB_FIRST
            var names: [String] = []
            while mdb_cursor_get(cursor, &key, &data, op) == 0 {
                names.append(String(decoding: UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size), as: UTF8.self))
                op = MDB_NEXT
            }
            mdb_cursor_close(cursor)
            for name in names {
                var dbi: MDB_dbi = 0
                try check("mdb_dbi_open '\(name)'", mdb_dbi_open(txn, name, 0, &dbi))
                handles[name] = dbi
                let path = BucketName.path(name)
                children[BucketName.name(Array(path.dropLast())), default: []].insert(path.last!)
            }
            try check("mdb_txn_commit", mdb_txn_commit(txn))
            state.withLock { s in
                s.registry = registry
                s.handles = handles
                s.children = children
            }
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
    }

    // MARK: Transactions

    /// Begins a read transaction (waits while the map is being grown).
    public func beginRead() throws(LMDBError) -> LMDBTransaction {
        while true {
            let ready: Bool = try state.withLock { s throws(LMDBError) in
                if s.closed { throw LMDBError.txClosed }
                if s.growing { return false }
                s.readers += 1
                return true
            }
            if ready { break }
            usleep(1000)
        }
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn)
        if rc != 0 {
            state.withLock { $0.readers -= 1 }
            try check("mdb_txn_begin (read)", rc)
        }
        return LMDBTransaction(environment: self, txn: txn!, writable: false)
    }

    /// Begins the write transaction, waiting for another one to end.
    public func beginWrite() throws(LMDBError) -> LMDBTransaction {
        if options.readOnly { throw LMDBError.readOnly }
        // One Swift-level writer, so a map-full replay never interleaves with another writer.
        while true {
            let taken = writerGate.withLock { busy in
                if busy { return false }
                busy = true
                return true
            }
            if taken { break }
            usleep(200)
        }
        do throws(LMDBError) {
            let txn = try beginWriteTxn()
            return LMDBTransaction(environment: self, txn: txn, writable: true)
        } catch {
            writerGate.withLock { $0 = false }
            throw error
        }
    }

    func beginWriteTxn() throws(LMDBError) -> OpaquePointer {
        var txn: OpaquePointer?
        try check("mdb_txn_begin (write)", mdb_txn_begin(env, nil, 0, &txn))
        return txn!
    }

    func endReader() { state.withLock { $0.readers -= 1 } }
    func endWriter() { writerGate.withLock { $0 = false } }

    /// Doubles the map. Called by the writer with no LMDB transaction of its own open.
    func growMap() throws(LMDBError) {
        let start = monotonicNanoseconds()
        state.withLock { $0.growing = true }
        defer { state.withLock { $0.growing = false } }
        while true {
            let readers = state.withLock { $0.readers }
            if readers == 0 { break }
            if Double(monotonicNanoseconds() - start) / 1e9 > options.growWaitSeconds {
                throw LMDBError.mapFullWhileReadersOpen(mapSize: state.withLock { $0.mapSize }, readers: readers)
            }
            usleep(1000)
        }
        let newSize = state.withLock { $0.mapSize } * 2
        try check("mdb_env_set_mapsize", mdb_env_set_mapsize(env, newSize))
        state.withLock { $0.mapSize = newSize }
    }

    /// The current map size.
    public var mapSize: Int { state.withLock { $0.mapSize } }

    /// LMDB's environment info and the main database's page statistics.
    public func info() throws(LMDBError) -> (mapSize: Int, lastPage: Int, lastTxnID: Int, pageSize: Int, maxReaders: Int, readers: Int) {
        var info = MDB_envinfo()
        try check("mdb_env_info", mdb_env_info(env, &info))
        var st = MDB_stat()
        try check("mdb_env_stat", mdb_env_stat(env, &st))
        return (info.me_mapsize, info.me_last_pgno, info.me_last_txnid, Int(st.ms_psize), Int(info.me_maxreaders), Int(info.me_numreaders))
    }

    /// Writes a consistent copy of the environment's data file into the existing, empty
    /// directory `directory` as `data.mdb` (`mdb_env_copy2`), compacted when `compact`.
    public func copy(toDirectory directory: String, compact: Bool) throws(LMDBError) {
        try check("mdb_env_copy2 '\(directory)'", mdb_env_copy2(env, directory, compact ? UInt32(MDB_CP_COMPACT) : 0))
    }

    /// The keys of the unnamed database: the names of the named databases when the environment
    /// uses them (for inspecting environments Keel did not make).
    public func namedDatabases() throws(LMDBError) -> [String] {
        try rawEntries(database: nil).map { String(decoding: $0.key, as: UTF8.self) }
    }

    /// Every entry of a database by its LMDB name (nil: the unnamed one), copied.
    public func rawEntries(database: String?) throws(LMDBError) -> [(key: [UInt8], value: [UInt8])] {
        var txn: OpaquePointer?
        try check("mdb_txn_begin", mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn))
        defer { mdb_txn_abort(txn) }
        var dbi: MDB_dbi = 0
        try check("mdb_dbi_open \(database ?? "(unnamed)")", mdb_dbi_open(txn, database, 0, &dbi))
        var cursor: OpaquePointer?
        try check("mdb_cursor_open", mdb_cursor_open(txn, dbi, &cursor))
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var data = MDB_val()
        var result: [(key: [UInt8], value: [UInt8])] = []
        var op = MDB_FIRST
        while mdb_cursor_get(cursor, &key, &data, op) == 0 {
            result.append((Array(UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size)),
                           Array(UnsafeRawBufferPointer(start: data.mv_data, count: data.mv_size))))
            op = MDB_NEXT
        }
        return result
    }

    /// Clears reader slots left by dead processes; returns how many.
    @discardableResult
    public func clearStaleReaders() -> Int {
        var dead: Int32 = 0
        _ = mdb_reader_check(env, &dead)
        return Int(dead)
    }
}
