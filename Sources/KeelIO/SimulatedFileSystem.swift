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
/// - creates, renames and removes change the *current* namespace; they become durable only when
///   their directory is synced with `syncDirectory`;
/// - `restart(mode:)` simulates the crash: each file keeps its durable bytes plus, depending on the
///   mode, none, a random subset or a prefix of its unsynced writes, possibly with one write torn
///   at a 512-byte sector boundary; directories not synced may lose their unsynced changes.
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
        state.withLock { s in
            s.directories = ["/", "."]
            s.durableDirectories = ["/", "."]
        }
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
            for file in Set(s.allFiles.map(ObjectIdentifier.init)).compactMap({ id in s.allFiles.first { ObjectIdentifier($0) == id } }) {
                file.crash(mode: mode, rng: &rng)
            }
            // Directories: an unsynced one keeps its current entries only sometimes.
            var names = s.durableNames
            for dir in s.dirtyDirectories {
                let keep = mode != .dropUnsynced && rng.next() % 2 == 0
                if keep {
                    names = names.filter { parentDirectory($0.key) != dir }
                    for (path, file) in s.names where parentDirectory(path) == dir { names[path] = file }
                }
            }
            s.names = names
            s.durableNames = names
            s.dirtyDirectories = []
            s.rng = rng
            s.crashed = false
            s.crashAt = nil
            s.failSyncAt = nil
            s.failWriteAt = nil
            s.generation += 1
            for file in s.allFiles { file.clearLocks() }
            s.allFiles = Array(Set(names.values.map(ObjectIdentifier.init))).compactMap { id in names.values.first { ObjectIdentifier($0) == id } }
        }
    }

    /// The current bytes of a file (what a reader would see now), for tests.
    public func contents(of path: String) -> [UInt8]? {
        state.withLock { s in s.names[path].map { $0.currentBytes() } }
    }

    /// Replaces a file's bytes durably (for damage tests).
    public func setContents(of path: String, _ bytes: [UInt8]) {
        state.withLock { s in
            let file = s.names[path] ?? SimFile(capacity: fileCapacity)
            file.replaceDurably(bytes)
            if s.names[path] == nil {
                s.names[path] = file
                s.durableNames[path] = file
                s.allFiles.append(file)
            }
        }
    }

    // MARK: FileSystem

    public func open(_ path: String, options: OpenOptions) throws(IOError) -> any FileHandle {
        let result: Result<SimHandle, IOError> = state.withLock { s in
            do throws(IOError) {
                if s.crashed { throw IOError.simulatedCrash(operation: "open", path: path) }
                if let file = s.names[path] {
                    if options.create && options.exclusive { throw IOError.system(operation: "open", path: path, errno: EEXIST) }
                    return .success(SimHandle(fs: self, file: file, path: path, writable: options.writable, generation: s.generation))
                }
                guard options.create else { throw IOError.system(operation: "open", path: path, errno: ENOENT) }
                guard s.directories.contains(parentDirectory(path)) else {
                    throw IOError.system(operation: "open", path: path, errno: ENOENT)
                }
                try s.mutate("create", path)
                let file = SimFile(capacity: fileCapacity)
                s.names[path] = file
                s.allFiles.append(file)
                s.dirtyDirectories.insert(parentDirectory(path))
                return .success(SimHandle(fs: self, file: file, path: path, writable: options.writable, generation: s.generation))
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    public func rename(_ from: String, to: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("rename", from)
            if s.directories.contains(from) {
                // A directory: move it and everything under it.
                try s.mutate("rename", from)
                let prefix = from + "/"
                s.directories.remove(from)
                s.directories.insert(to)
                for dir in s.directories where dir.hasPrefix(prefix) {
                    s.directories.remove(dir)
                    s.directories.insert(to + "/" + dir.dropFirst(prefix.count))
                }
                for (path, file) in s.names where path.hasPrefix(prefix) {
                    s.names[path] = nil
                    s.names[to + "/" + path.dropFirst(prefix.count)] = file
                }
                s.durableDirectories.insert(to)
                s.dirtyDirectories.insert(parentDirectory(from))
                s.dirtyDirectories.insert(parentDirectory(to))
                return
            }
            guard let file = s.names[from] else { throw IOError.system(operation: "rename", path: from, errno: ENOENT) }
            try s.mutate("rename", from)
            s.names[from] = nil
            s.names[to] = file
            s.dirtyDirectories.insert(parentDirectory(from))
            s.dirtyDirectories.insert(parentDirectory(to))
        }
    }

    public func remove(_ path: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("unlink", path)
            guard s.names[path] != nil else { throw IOError.system(operation: "unlink", path: path, errno: ENOENT) }
            try s.mutate("unlink", path)
            s.names[path] = nil
            s.dirtyDirectories.insert(parentDirectory(path))
        }
    }

    public func syncDirectory(_ path: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("fsync directory", path)
            guard s.directories.contains(path) else { throw IOError.system(operation: "open directory", path: path, errno: ENOENT) }
            try s.mutate("fsync directory", path)
            // Entries directly in this directory, and (approximating a renamed subdirectory) below it.
            let prefix = path == "/" ? "/" : path + "/"
            s.durableNames = s.durableNames.filter { !$0.key.hasPrefix(prefix) }
            for (name, file) in s.names where name.hasPrefix(prefix) { s.durableNames[name] = file }
            s.dirtyDirectories.remove(path)
        }
    }

    public func makeDirectory(_ path: String, intermediate: Bool) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("mkdir", path)
            var chain: [String] = []
            var current = path
            while !s.directories.contains(current) {
                chain.append(current)
                let parent = parentDirectory(current)
                if parent == current { break }
                if !intermediate && !s.directories.contains(parent) {
                    throw IOError.system(operation: "mkdir", path: path, errno: ENOENT)
                }
                current = parent
            }
            for dir in chain.reversed() {
                s.directories.insert(dir)
                s.durableDirectories.insert(dir)  // directory creation is modelled as durable
            }
        }
    }

    public func removeDirectory(_ path: String) throws(IOError) {
        try withState { s throws(IOError) in
            try s.live("rmdir", path)
            guard s.directories.contains(path) else { throw IOError.system(operation: "rmdir", path: path, errno: ENOENT) }
            if s.names.keys.contains(where: { parentDirectory($0) == path }) || s.directories.contains(where: { $0 != path && parentDirectory($0) == path }) {
                throw IOError.system(operation: "rmdir", path: path, errno: ENOTEMPTY)
            }
            try s.mutate("rmdir", path)
            s.directories.remove(path)
            s.durableDirectories.remove(path)
        }
    }

    public func listDirectory(_ path: String) throws(IOError) -> [String] {
        try withState { s throws(IOError) in
            guard s.directories.contains(path) else { throw IOError.system(operation: "opendir", path: path, errno: ENOENT) }
            var names = s.names.keys.filter { parentDirectory($0) == path }.map { String($0.dropFirst(path == "/" ? 1 : path.count + 1)) }
            names += s.directories.filter { $0 != path && parentDirectory($0) == path }.map { String($0.dropFirst(path == "/" ? 1 : path.count + 1)) }
            return names.sorted()
        }
    }

    public func exists(_ path: String) -> Bool {
        state.withLock { $0.names[path] != nil || $0.directories.contains(path) }
    }

    // MARK: Internals used by handles

    func withState<T>(_ body: (inout State) throws(IOError) -> T) throws(IOError) -> T {
        let result: Result<T, IOError> = state.withLock { s in
            do throws(IOError) { return .success(try body(&s)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    struct State {
        var rng: SplitMix64
        var names: [String: SimFile] = [:]
        var durableNames: [String: SimFile] = [:]
        var allFiles: [SimFile] = []
        var directories: Set<String> = []
        var durableDirectories: Set<String> = []
        var dirtyDirectories: Set<String> = []
        var operations = 0
        var syncs = 0
        var writes = 0
        var crashAt: Int?
        var failSyncAt: Int?
        var failWriteAt: Int?
        var crashed = false
        var generation = 0

        /// Throws when the process is "dead".
        func live(_ operation: String, _ path: String) throws(IOError) {
            if crashed { throw IOError.simulatedCrash(operation: operation, path: path) }
        }

        /// Counts a mutating call and fires the crash point.
        mutating func mutate(_ operation: String, _ path: String) throws(IOError) {
            if crashed { throw IOError.simulatedCrash(operation: operation, path: path) }
            operations += 1
            if let at = crashAt, operations >= at {
                crashed = true
                throw IOError.simulatedCrash(operation: operation, path: path)
            }
        }
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
