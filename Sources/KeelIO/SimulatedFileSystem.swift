#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An in-memory file system for crash and fault tests, seeded and reproducible.
///
/// It models what a power cut can do to a real disk behind a page cache:
/// - every write lands in the file's *current* bytes (what reads and maps see) and is also kept in
///   a list of *unsynced* operations; `sync()` makes them durable;
/// - creates, renames, removes and `mkdir`s change the *current* entries of their directory; they
///   become durable only when that directory is synced with `syncDirectory`, and a directory's
///   sync covers its own entries only (not those of directories below it). Directories are
///   inodes: a renamed directory keeps its durable entries, and a directory whose own entry was
///   lost takes everything below it along, as on Linux;
/// - `restart(mode:)` simulates the crash: each file keeps its durable bytes plus, depending on the
///   mode, none, a random subset or a prefix of its unsynced writes, possibly with one write torn
///   at a 512-byte sector boundary; each directory with unsynced changes keeps all of them or
///   none (always none with `.dropUnsynced`).
///
/// Faults: `failSync(after:)` and `failWrite(after:)` make a later call fail with EIO (a failed
/// sync also drops that file's unsynced writes from what would survive, the way Linux marks the
/// pages clean); `crash(afterOperations:)` makes the n-th mutating call fail with
/// `IOError.simulatedCrash`, as if the process died there, and every later call too until `restart`.
public final class SimulatedFileSystem: FileSystem, @unchecked Sendable {
    /// What survives of unsynced writes at a crash.
    public enum CrashMode: Sendable, CaseIterable {
        /// Nothing that was not synced.
        case dropUnsynced
        /// Each unsynced write survives or not, independently (reordering).
        case keepRandomSubset
        /// The writes survive in issue order up to a random point.
        case keepPrefix
        /// A random prefix survives and the write after it is torn at a 512-byte boundary.
        case tearWrite
        /// One of the above, chosen per file.
        case random
    }

    /// Bytes of address space reserved per file: a simulated file cannot grow past this.
    public let fileCapacity: Int
    private let state: Locked<State>

    /// - Parameters:
    ///   - seed: drives every random choice at a crash.
    ///   - fileCapacity: the largest size a file may reach.
    public init(seed: UInt64, fileCapacity: Int = 256 << 20) {
        self.fileCapacity = fileCapacity
        state = Locked(State(rng: SplitMix64(seed: seed)))
    }

    // MARK: Fault controls

    /// The number of mutating calls (write, sync, truncate, preallocate, create, rename, remove,
    /// directory sync) made so far. Used to enumerate crash points.
    public var mutatingOperations: Int { state.withLock { $0.operations } }

    /// Makes the `n`-th mutating call from now (1-based) fail as a crash, and all calls after it.
    public func crash(afterOperations n: Int) { state.withLock { $0.crashAt = $0.operations + n } }

    /// Makes the `n`-th sync from now (1-based) fail with EIO.
    public func failSync(after n: Int) { state.withLock { $0.failSyncAt = $0.syncs + n } }

    /// Makes the `n`-th write from now (1-based) fail with EIO, writing nothing.
    public func failWrite(after n: Int) { state.withLock { $0.failWriteAt = $0.writes + n } }

    /// Whether a crash point was hit.
    public var isCrashed: Bool { state.withLock { $0.crashed } }

    /// Simulates a power cut and a reboot: applies `mode` to every file's unsynced writes and to
    /// every directory's unsynced changes, closes every handle and releases every lock.
    public func restart(mode: CrashMode) {
        state.withLock { s in
            var rng = s.rng
            for file in s.allFiles { file.crash(mode: mode, rng: &rng) }
            for dir in s.allDirectories {
                if dir.isDirty && mode != .dropUnsynced && rng.next() % 2 == 0 { dir.durable = dir.entries }
                dir.entries = dir.durable
                dir.isDirty = false
            }
            s.rng = rng
            s.crashed = false
            s.crashAt = nil
            s.failSyncAt = nil
            s.failWriteAt = nil
            s.failOperationAt = nil
            s.generation += 1
            for file in s.allFiles { file.clearLocks() }
            s.collectReachable()
        }
    }

    /// The current bytes of a file (what a reader would see now), for tests.
    public func contents(of path: String) -> [UInt8]? {
        state.withLock { s in
            guard case let .file(file)? = s.lookup(path) else { return nil }
            return file.currentBytes()
        }
    }

    /// Replaces a file's bytes durably (for damage tests), creating it (and its directories)
    /// durably when missing.
    public func setContents(of path: String, _ bytes: [UInt8]) {
        state.withLock { s in
            if case let .file(file)? = s.lookup(path) {
                file.replaceDurably(bytes)
                return
            }
            let parent = s.makeDirectories(parentDirectory(path), durable: true)
            let file = SimFile(capacity: fileCapacity)
            file.replaceDurably(bytes)
            let name = SimDirectory.lastComponent(path)
            parent.entries[name] = .file(file)
            parent.durable[name] = .file(file)
            s.allFiles.append(file)
        }
    }

    // MARK: FileSystem

    public func open(_ path: String, options: OpenOptions) throws(IOError) -> any FileHandle {
        let result: Result<SimHandle, IOError> = state.withLock { s in
            do throws(IOError) {
                if s.crashed { throw IOError.simulatedCrash(operation: "open", path: path) }
                guard let parent = s.directory(parentDirectory(path)) else {
                    throw IOError.system(operation: "open", path: path, errno: ENOENT)
                }
                let name = SimDirectory.lastComponent(path)
                switch parent.entries[name] {
                case let .file(file)?:
                    if options.create && options.exclusive { throw IOError.system(operation: "open", path: path, errno: EEXIST) }
                    return .success(SimHandle(fs: self, file: file, path: path, writable: options.writable, generation: s.generation))
                case .directory?:
                    throw IOError.system(operation: "open", path: path, errno: EISDIR)
                case nil:
                    guard options.create else { throw IOError.system(operation: "open", path: path, errno: ENOENT) }
                    try s.mutate("create", path)
                    let file = SimFile(capacity: fileCapacity)
                    parent.set(name, .file(file))
                    s.allFiles.append(file)
                    return .success(SimHandle(fs: self, file: file, path: path, writable: options.writable, generation: s.generation))
                }
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    public func rename(_ from: String, to: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("rename", from)
            guard let fromParent = s.directory(parentDirectory(from)),
                  let node = fromParent.entries[SimDirectory.lastComponent(from)] else {
                throw IOError.system(operation: "rename", path: from, errno: ENOENT)
            }
            guard let toParent = s.directory(parentDirectory(to)) else {
                throw IOError.system(operation: "rename", path: to, errno: ENOENT)
            }
            let toName = SimDirectory.lastComponent(to)
            switch (node, toParent.entries[toName]) {
            case (.directory, .file?): throw IOError.system(operation: "rename", path: to, errno: ENOTDIR)
            case (.file, .directory?): throw IOError.system(operation: "rename", path: to, errno: EISDIR)
            case let (.directory, .directory(target)?) where !target.entries.isEmpty:
                throw IOError.system(operation: "rename", path: to, errno: ENOTEMPTY)
            default: break
            }
            try s.mutate("rename", from)
            fromParent.set(SimDirectory.lastComponent(from), nil)
            toParent.set(toName, node)
        }
    }

    public func remove(_ path: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("unlink", path)
            guard let parent = s.directory(parentDirectory(path)), case .file? = parent.entries[SimDirectory.lastComponent(path)] else {
                throw IOError.system(operation: "unlink", path: path, errno: ENOENT)
            }
            try s.mutate("unlink", path)
            parent.set(SimDirectory.lastComponent(path), nil)
        }
    }

    public func syncDirectory(_ path: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("fsync directory", path)
            guard let dir = s.directory(path) else { throw IOError.system(operation: "open directory", path: path, errno: ENOENT) }
            try s.mutate("fsync directory", path)
            // This directory's own entries; directories below it need their own fsync.
            dir.durable = dir.entries
            dir.isDirty = false
        }
    }

    public func makeDirectory(_ path: String, intermediate: Bool) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("mkdir", path)
            if s.directory(path) != nil { return }
            if !intermediate && s.directory(parentDirectory(path)) == nil {
                throw IOError.system(operation: "mkdir", path: path, errno: ENOENT)
            }
            try s.mutate("mkdir", path)
            _ = s.makeDirectories(path, durable: false)
        }
    }

    public func removeDirectory(_ path: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("rmdir", path)
            guard let dir = s.directory(path), let parent = s.directory(parentDirectory(path)) else {
                throw IOError.system(operation: "rmdir", path: path, errno: ENOENT)
            }
            if !dir.entries.isEmpty { throw IOError.system(operation: "rmdir", path: path, errno: ENOTEMPTY) }
            try s.mutate("rmdir", path)
            parent.set(SimDirectory.lastComponent(path), nil)
        }
    }

    public func listDirectory(_ path: String) throws(IOError) -> [String] {
        try withState { s throws(IOError) in
            guard let dir = s.directory(path) else { throw IOError.system(operation: "opendir", path: path, errno: ENOENT) }
            return dir.entries.keys.sorted()
        }
    }

    public func exists(_ path: String) -> Bool {
        state.withLock { $0.lookup(path) != nil }
    }

    /// Makes every read of `path` (through handles opened from now on or before) fail with
    /// `errno` until `clearReadFaults()`: an unreadable file, not a damaged one.
    public func failReads(of path: String, errno: Int32 = EIO) { state.withLock { $0.readFaults[path] = errno } }

    /// Ends every `failReads`.
    public func clearReadFaults() { state.withLock { $0.readFaults = [:] } }

    /// Makes the `n`-th mutating call from now (1-based) fail with EIO without crashing: the
    /// call changes nothing, and later calls work (for testing what a caller does after an
    /// error from a rename, a directory fsync, a create, …).
    public func failOperation(after n: Int) { state.withLock { $0.failOperationAt = $0.operations + n } }

    // MARK: Internals used by handles

    func withState<T>(_ body: (inout State) throws(IOError) -> T) throws(IOError) -> T {
        let result: Result<T, IOError> = state.withLock { s in
            do throws(IOError) { return .success(try body(&s)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    struct State {
        var rng: SplitMix64
        /// "/" and the working directory ".", which relative paths start from.
        let roots: (slash: SimDirectory, dot: SimDirectory) = (SimDirectory(), SimDirectory())
        var allFiles: [SimFile] = []
        var allDirectories: [SimDirectory] = []
        var operations = 0
        var syncs = 0
        var writes = 0
        var crashAt: Int?
        var failSyncAt: Int?
        var failWriteAt: Int?
        var failOperationAt: Int?
        var readFaults: [String: Int32] = [:]
        var crashed = false
        var generation = 0

        init(rng: SplitMix64) {
            self.rng = rng
            allDirectories = [roots.slash, roots.dot]
        }

        /// Throws when the process is "dead".
        func live(_ operation: String, _ path: String) throws(IOError) {
            if crashed { throw IOError.simulatedCrash(operation: operation, path: path) }
        }

        /// Counts a mutating call, fires the crash point and injected failures.
        mutating func mutate(_ operation: String, _ path: String) throws(IOError) {
            if crashed { throw IOError.simulatedCrash(operation: operation, path: path) }
            operations += 1
            if let at = crashAt, operations >= at {
                crashed = true
                throw IOError.simulatedCrash(operation: operation, path: path)
            }
            if let at = failOperationAt, operations == at {
                throw IOError.system(operation: operation, path: path, errno: EIO)
            }
        }

        /// The node at `path` in the current namespace.
        func lookup(_ path: String) -> SimNode? {
            let (start, components) = split(path)
            var node = SimNode.directory(start)
            for name in components {
                guard case let .directory(dir) = node, let next = dir.entries[name] else { return nil }
                node = next
            }
            return node
        }

        func directory(_ path: String) -> SimDirectory? {
            guard case let .directory(dir)? = lookup(path) else { return nil }
            return dir
        }

        func split(_ path: String) -> (SimDirectory, [String]) {
            let components = path.split(separator: "/").map(String.init).filter { $0 != "." }
            return (path.hasPrefix("/") ? roots.slash : roots.dot, components)
        }

        /// Creates the missing directories along `path`, durably (test set-up) or not.
        mutating func makeDirectories(_ path: String, durable: Bool) -> SimDirectory {
            let (start, components) = split(path)
            var dir = start
            for name in components {
                if case let .directory(next)? = dir.entries[name] { dir = next; continue }
                let child = SimDirectory()
                allDirectories.append(child)
                dir.set(name, .directory(child))
                if durable { dir.durable[name] = .directory(child) }
                dir = child
            }
            return dir
        }

        /// After a restart: only what the roots reach is left.
        mutating func collectReachable() {
            var files: [ObjectIdentifier: SimFile] = [:]
            var dirs: [SimDirectory] = []
            var queue = [roots.slash, roots.dot]
            var seen = Set<ObjectIdentifier>()
            while let dir = queue.popLast() {
                guard seen.insert(ObjectIdentifier(dir)).inserted else { continue }
                dirs.append(dir)
                for node in dir.entries.values {
                    switch node {
                    case let .file(f): files[ObjectIdentifier(f)] = f
                    case let .directory(d): queue.append(d)
                    }
                }
            }
            allFiles = Array(files.values)
            allDirectories = dirs
        }
    }
}

/// A name in a simulated directory.
enum SimNode {
    case file(SimFile)
    case directory(SimDirectory)
}

/// A simulated directory inode: its current entries and the ones a crash would leave.
final class SimDirectory: @unchecked Sendable {
    var entries: [String: SimNode] = [:]
    var durable: [String: SimNode] = [:]
    var isDirty = false

    /// Changes an entry in the current namespace (durable after `syncDirectory`).
    func set(_ name: String, _ node: SimNode?) {
        entries[name] = node
        isDirty = true
    }

    static func lastComponent(_ path: String) -> String {
        String(path.split(separator: "/").last ?? "")
    }
}

/// The bytes of one simulated file (an inode): current and durable copies and the unsynced log.
final class SimFile: @unchecked Sendable {
    enum Pending {
        case write(offset: Int, bytes: [UInt8])
        case truncate(size: Int)
    }

    let capacity: Int
    let current: UnsafeMutableRawPointer
    private(set) var currentSize = 0
    private let durable: UnsafeMutableRawPointer
    private var durableSize = 0
    private var pending: [Pending] = []
    // flock emulation
    var sharedHolders: Set<ObjectIdentifier> = []
    var exclusiveHolder: ObjectIdentifier?

    init(capacity: Int) {
        self.capacity = capacity
        current = SimFile.reserve(capacity)
        durable = SimFile.reserve(capacity)
    }

    deinit {
        munmap(current, capacity)
        munmap(durable, capacity)
    }

    private static func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("SimulatedFileSystem: cannot reserve \(bytes) bytes of address space") }
        return p
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws(IOError) {
        guard offset >= 0, offset + bytes.count <= capacity else {
            throw IOError.noSpace(path: path, needed: Int64(offset + bytes.count))
        }
        if offset > currentSize { memset(current + currentSize, 0, offset - currentSize) }
        if let base = bytes.baseAddress, bytes.count > 0 { memcpy(current + offset, base, bytes.count) }
        currentSize = max(currentSize, offset + bytes.count)
        pending.append(.write(offset: offset, bytes: Array(bytes)))
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        guard offset < currentSize else { return 0 }
        let n = min(buffer.count, currentSize - offset)
        if n > 0 { memcpy(buffer.baseAddress!, current + offset, n) }
        return n
    }

    func truncate(to size: Int, path: String) throws(IOError) {
        guard size >= 0, size <= capacity else { throw IOError.noSpace(path: path, needed: Int64(size)) }
        if size > currentSize { memset(current + currentSize, 0, size - currentSize) }
        currentSize = size
        pending.append(.truncate(size: size))
    }

    /// Makes every pending operation durable.
    func sync() {
        for op in pending { apply(op, to: durable, size: &durableSize) }
        pending.removeAll()
    }

    /// A failed sync: the pending writes stay visible but will not survive a crash.
    func dropPending() { pending.removeAll() }

    func crash(mode: SimulatedFileSystem.CrashMode, rng: inout SplitMix64) {
        var chosen = mode
        if chosen == .random {
            let modes: [SimulatedFileSystem.CrashMode] = [.dropUnsynced, .keepRandomSubset, .keepPrefix, .tearWrite]
            chosen = modes[Int(rng.next() % UInt64(modes.count))]
        }
        let n = pending.count
        switch chosen {
        case .dropUnsynced, .random:
            break
        case .keepRandomSubset:
            for op in pending where rng.next() % 2 == 0 { apply(op, to: durable, size: &durableSize) }
        case .keepPrefix:
            let k = n == 0 ? 0 : Int(rng.next() % UInt64(n + 1))
            for op in pending.prefix(k) { apply(op, to: durable, size: &durableSize) }
        case .tearWrite:
            let k = n == 0 ? 0 : Int(rng.next() % UInt64(n))
            for op in pending.prefix(k) { apply(op, to: durable, size: &durableSize) }
            if k < n, case let .write(offset, bytes) = pending[k] {
                // Keep whole 512-byte sectors (by file offset) from the start of the write.
                let firstBoundary = (offset / 512 + 1) * 512
                var cuts: [Int] = []
                var b = firstBoundary
                while b < offset + bytes.count { cuts.append(b - offset); b += 512 }
                if !cuts.isEmpty {
                    let keep = cuts[Int(rng.next() % UInt64(cuts.count))]
                    apply(.write(offset: offset, bytes: Array(bytes.prefix(keep))), to: durable, size: &durableSize)
                }
            }
        }
        pending.removeAll()
        memcpy(current, durable, durableSize)
        if currentSize > durableSize { memset(current + durableSize, 0, currentSize - durableSize) }
        currentSize = durableSize
    }

    func replaceDurably(_ bytes: [UInt8]) {
        pending.removeAll()
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress { memcpy(current, base, raw.count); memcpy(durable, base, raw.count) }
        }
        if currentSize > bytes.count { memset(current + bytes.count, 0, currentSize - bytes.count) }
        if durableSize > bytes.count { memset(durable + bytes.count, 0, durableSize - bytes.count) }
        currentSize = bytes.count
        durableSize = bytes.count
    }

    func currentBytes() -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: current, count: currentSize))
    }

    func clearLocks() {
        sharedHolders.removeAll()
        exclusiveHolder = nil
    }

    private func apply(_ op: Pending, to target: UnsafeMutableRawPointer, size: inout Int) {
        switch op {
        case let .write(offset, bytes):
            if offset > size { memset(target + size, 0, offset - size) }
            bytes.withUnsafeBytes { raw in if let base = raw.baseAddress { memcpy(target + offset, base, raw.count) } }
            size = max(size, offset + bytes.count)
        case let .truncate(newSize):
            if newSize > size { memset(target + size, 0, newSize - size) }
            size = newSize
        }
    }
}

/// A handle on a simulated file.
final class SimHandle: FileHandle, @unchecked Sendable {
    let path: String
    private let fs: SimulatedFileSystem
    private let file: SimFile
    private let writable: Bool
    private let generation: Int
    private let failure = Locked<String?>(nil)
    private let isClosed = Locked(false)

    init(fs: SimulatedFileSystem, file: SimFile, path: String, writable: Bool, generation: Int) {
        self.fs = fs
        self.file = file
        self.path = path
        self.writable = writable
        self.generation = generation
    }

    deinit { close() }

    private func check(_ s: SimulatedFileSystem.State, _ operation: String, writing: Bool) throws(IOError) {
        if isClosed.withLock({ $0 }) || s.generation != generation {
            throw IOError.system(operation: operation, path: path, errno: EBADF)
        }
        try s.live(operation, path)
        if writing {
            if !writable { throw IOError.system(operation: operation, path: path, errno: EBADF) }
            if let cause = failure.withLock({ $0 }) { throw IOError.fileLost(path: path, cause: cause) }
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(IOError) {
        try fs.withState { s throws(IOError) in
            try check(s, "pread", writing: false)
            if let code = s.readFaults[path] { throw IOError.system(operation: "pread", path: path, errno: code) }
            let n = file.read(into: buffer, at: Int(offset))
            if n < buffer.count {
                throw IOError.shortTransfer(operation: "pread", path: path, offset: offset, expected: buffer.count, actual: n)
            }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(IOError) {
        try fs.withState { s throws(IOError) in
            try check(s, "pwrite", writing: true)
            try s.mutate("pwrite", path)
            s.writes += 1
            if let at = s.failWriteAt, s.writes == at {
                throw IOError.system(operation: "pwrite", path: path, errno: EIO)
            }
            try file.write(bytes, at: Int(offset), path: path)
        }
    }

    /// One simulated write per buffer, so a crash can keep or tear each one separately.
    func write(vectors: [UnsafeRawBufferPointer], at offset: Int64) throws(IOError) {
        var at = offset
        for v in vectors {
            try write(v, at: at)
            at += Int64(v.count)
        }
    }

    func sync() throws(IOError) {
        try fs.withState { s throws(IOError) in
            try check(s, "fdatasync", writing: true)
            try s.mutate("fdatasync", path)
            s.syncs += 1
            if let at = s.failSyncAt, s.syncs == at {
                file.dropPending()
                failure.withLock { $0 = "fdatasync: EIO" }
                throw IOError.system(operation: "fdatasync", path: path, errno: EIO)
            }
            file.sync()
        }
    }

    func size() throws(IOError) -> Int64 {
        try fs.withState { s throws(IOError) in
            try check(s, "fstat", writing: false)
            return Int64(file.currentSize)
        }
    }

    func truncate(to size: Int64) throws(IOError) {
        try fs.withState { s throws(IOError) in
            try check(s, "ftruncate", writing: true)
            try s.mutate("ftruncate", path)
            try file.truncate(to: Int(size), path: path)
        }
    }

    func preallocate(offset: Int64, length: Int64, keepSize: Bool) throws(IOError) {
        try fs.withState { s throws(IOError) in
            try check(s, "fallocate", writing: true)
            try s.mutate("fallocate", path)
            let end = Int(offset + length)
            guard end <= file.capacity else { throw IOError.noSpace(path: path, needed: Int64(end)) }
            if !keepSize && end > file.currentSize { try file.truncate(to: end, path: path) }
        }
    }

    func lock(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError) {
        let me = ObjectIdentifier(self)
        let start = monotonicNanoseconds()
        while true {
            let taken: Bool = try fs.withState { s throws(IOError) in
                try check(s, "flock", writing: false)
                switch kind {
                case .shared:
                    if file.exclusiveHolder == nil || file.exclusiveHolder == me {
                        if file.exclusiveHolder == me { file.exclusiveHolder = nil }
                        file.sharedHolders.insert(me)
                        return true
                    }
                case .exclusive:
                    let others = file.sharedHolders.subtracting([me])
                    if (file.exclusiveHolder == nil || file.exclusiveHolder == me) && others.isEmpty {
                        file.sharedHolders.remove(me)
                        file.exclusiveHolder = me
                        return true
                    }
                }
                return false
            }
            if taken { return }
            if let timeout = timeoutSeconds, Double(monotonicNanoseconds() &- start) / 1e9 >= timeout {
                throw IOError.lockTimeout(path: path)
            }
            usleep(50_000)
        }
    }

    /// Modelled like `lock` (one lock kind in the simulation).
    func lockRecord(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError) {
        try lock(kind, timeoutSeconds: timeoutSeconds)
    }

    func unlock() {
        let me = ObjectIdentifier(self)
        try? fs.withState { s throws(IOError) in
            guard s.generation == generation else { return }
            file.sharedHolders.remove(me)
            if file.exclusiveHolder == me { file.exclusiveHolder = nil }
        }
    }

    func map(length: Int) throws(IOError) -> MappedRegion {
        let file = self.file
        return MappedRegion(base: UnsafeRawPointer(file.current), length: min(length, file.capacity)) {
            withExtendedLifetime(file) {}
        }
    }

    func close() {
        if isClosed.withLock({ c in defer { c = true }; return c }) { return }
        unlock()
    }
}
