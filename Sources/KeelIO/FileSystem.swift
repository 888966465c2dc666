/// How a file is opened.
public struct OpenOptions: Sendable, Equatable {
    /// Open for writing as well as reading.
    public var writable: Bool
    /// Create the file if it does not exist (needs `writable`).
    public var create: Bool
    /// Fail if the file exists (with `create`).
    public var exclusive: Bool
    /// Permission bits for a created file.
    public var mode: UInt32

    public init(writable: Bool = false, create: Bool = false, exclusive: Bool = false, mode: UInt32 = 0o600) {
        self.writable = writable
        self.create = create
        self.exclusive = exclusive
        self.mode = mode
    }

    public static let readOnly = OpenOptions()
    public static let readWrite = OpenOptions(writable: true)
    public static let createReadWrite = OpenOptions(writable: true, create: true)
}

/// An advisory whole-file lock, as `flock(2)` takes it.
public enum LockKind: Sendable {
    /// Many holders at once (readers).
    case shared
    /// One holder (the writer).
    case exclusive
}

/// A file system: real (`POSIXFileSystem`) or simulated with faults (`SimulatedFileSystem`).
///
/// Paths are plain strings. Every method is safe to call from any thread.
public protocol FileSystem: AnyObject, Sendable {
    /// Opens (or creates) a file.
    /// - Throws: `IOError.system` with ENOENT when it is missing and `create` is false.
    func open(_ path: String, options: OpenOptions) throws(IOError) -> any FileHandle
    /// Renames atomically. The rename is durable only after `syncDirectory` on the parent.
    func rename(_ from: String, to: String) throws(IOError)
    /// Removes a file. Durable only after `syncDirectory` on the parent.
    func remove(_ path: String) throws(IOError)
    /// fsyncs a directory, making creates, renames and removes inside it durable.
    func syncDirectory(_ path: String) throws(IOError)
    /// Creates a directory (and its parents when `intermediate`). No error if it exists.
    func makeDirectory(_ path: String, intermediate: Bool) throws(IOError)
    /// Removes an empty directory.
    func removeDirectory(_ path: String) throws(IOError)
    /// The names (not paths) of the entries in a directory, sorted.
    func listDirectory(_ path: String) throws(IOError) -> [String]
    /// Whether a file or directory exists at `path`.
    func exists(_ path: String) -> Bool
}

/// An open file. One handle may be used from several threads for reads; callers serialise writes.
public protocol FileHandle: AnyObject, Sendable {
    /// The path the file was opened with, for messages.
    var path: String { get }
    /// Reads exactly `buffer.count` bytes at `offset` (pread).
    /// - Throws: `IOError.shortTransfer` at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(IOError)
    /// Writes all of `bytes` at `offset` (pwrite). Not durable until `sync()`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(IOError)
    /// Writes the buffers one after another starting at `offset` (pwritev): one call for pages
    /// that are contiguous in the file but not in memory.
    func write(vectors: [UnsafeRawBufferPointer], at offset: Int64) throws(IOError)
    /// fdatasync: makes every earlier write durable. A failure is sticky: the handle then refuses
    /// every write and sync with `IOError.fileLost` (never retry a failed fsync).
    func sync() throws(IOError)
    /// The current size in bytes.
    func size() throws(IOError) -> Int64
    /// Sets the size (ftruncate). Not durable until `sync()`.
    func truncate(to size: Int64) throws(IOError)
    /// Reserves disk blocks for `[offset, offset+length)` without changing the size when
    /// `keepSize` (fallocate). Falls back to nothing where unsupported.
    func preallocate(offset: Int64, length: Int64, keepSize: Bool) throws(IOError)
    /// Takes an advisory lock, retrying every 50 ms until `timeoutSeconds` (nil waits for ever,
    /// 0 tries once).
    func lock(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError)
    /// Takes an open-file-description lock on the whole file (fcntl F_OFD_SETLK), as etcd locks
    /// its WAL segments, retrying every 50 ms until `timeoutSeconds`. OFD locks and flock locks do
    /// not see each other on Linux, so a file must be locked the same way by every program.
    func lockRecord(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError)
    /// Releases the lock taken by `lock` or `lockRecord`.
    func unlock()
    /// Maps `length` bytes from offset 0 read-only and shared, so later writes through `write`
    /// become visible. `length` may exceed the file size: that reserves address space, and the
    /// caller must not touch bytes past the file's current end.
    func map(length: Int) throws(IOError) -> MappedRegion
    /// Closes the file. Further calls fail with EBADF. Idempotent.
    func close()
}

extension FileHandle {
    /// Writes a byte array at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int64) throws(IOError) {
        let result: Result<Void, IOError> = bytes.withUnsafeBytes { raw in
            do throws(IOError) { try write(raw, at: offset); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Reads `count` bytes at `offset` into a new array.
    public func read(count: Int, at offset: Int64) throws(IOError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let result: Result<Void, IOError> = bytes.withUnsafeMutableBytes { raw in
            do throws(IOError) { try read(into: raw, at: offset); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
        return bytes
    }
}

/// Joins path components with "/".
public func joinPath(_ base: String, _ name: String) -> String {
    if base.isEmpty { return name }
    return base.hasSuffix("/") ? base + name : base + "/" + name
}

/// The directory part of a path ("." when there is none).
public func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    if slash == path.startIndex { return "/" }
    return String(path[path.startIndex..<slash])
}

extension FileSystem {
    /// Creates `path` and any missing parents, fsyncing the parent of each directory it
    /// created, so the new directories survive a crash (a new directory entry is durable only
    /// once its parent is synced). No error when `path` exists.
    public func makeDirectoryDurably(_ path: String) throws(IOError) {
        var missing: [String] = []
        var current = path
        while !exists(current) {
            missing.append(current)
            let parent = parentDirectory(current)
            if parent == current { break }
            current = parent
        }
        for dir in missing.reversed() {
            try makeDirectory(dir, intermediate: false)
            try syncDirectory(parentDirectory(dir))
        }
    }

    /// Removes `path` and everything below it (a file or a directory).
    public func removeTree(_ path: String) throws(IOError) {
        guard let names = try? listDirectory(path) else {
            try remove(path)
            return
        }
        for name in names { try removeTree(joinPath(path, name)) }
        try removeDirectory(path)
    }

    /// Renames `from` to `to` and fsyncs the directory holding `to` (and `from`'s, when it is
    /// another), so the rename is durable when this returns.
    public func renameDurably(_ from: String, to: String) throws(IOError) {
        try rename(from, to: to)
        try syncDirectory(parentDirectory(to))
        if parentDirectory(from) != parentDirectory(to) { try syncDirectory(parentDirectory(from)) }
    }
}
