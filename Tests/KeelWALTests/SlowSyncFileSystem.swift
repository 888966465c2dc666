import KeelIO

/// A real file system whose fdatasync takes at least 2 ms more, so concurrent appenders
/// certainly queue behind a sync (group commit is then observable on any machine load).
final class SlowSyncFileSystem: FileSystem, @unchecked Sendable {
    let base = POSIXFileSystem(syncLatency: LatencyHistogram())

    func open(_ path: String, options: OpenOptions) throws(IOError) -> any FileHandle {
        SlowSyncHandle(try base.open(path, options: options))
    }
    func rename(_ from: String, to: String) throws(IOError) { try base.rename(from, to: to) }
    func remove(_ path: String) throws(IOError) { try base.remove(path) }
    func syncDirectory(_ path: String) throws(IOError) { try base.syncDirectory(path) }
    func makeDirectory(_ path: String, intermediate: Bool) throws(IOError) { try base.makeDirectory(path, intermediate: intermediate) }
    func removeDirectory(_ path: String) throws(IOError) { try base.removeDirectory(path) }
    func listDirectory(_ path: String) throws(IOError) -> [String] { try base.listDirectory(path) }
    func exists(_ path: String) -> Bool { base.exists(path) }
}

final class SlowSyncHandle: FileHandle, @unchecked Sendable {
    let inner: any FileHandle
    init(_ inner: any FileHandle) { self.inner = inner }
    var path: String { inner.path }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(IOError) { try inner.read(into: buffer, at: offset) }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(IOError) { try inner.write(bytes, at: offset) }
    func write(vectors: [UnsafeRawBufferPointer], at offset: Int64) throws(IOError) { try inner.write(vectors: vectors, at: offset) }
    func sync() throws(IOError) {
        usleep(2000)
        try inner.sync()
    }
    func size() throws(IOError) -> Int64 { try inner.size() }
    func truncate(to size: Int64) throws(IOError) { try inner.truncate(to: size) }
    func preallocate(offset: Int64, length: Int64, keepSize: Bool) throws(IOError) { try inner.preallocate(offset: offset, length: length, keepSize: keepSize) }
    func lock(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError) { try inner.lock(kind, timeoutSeconds: timeoutSeconds) }
    func lockRecord(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError) { try inner.lockRecord(kind, timeoutSeconds: timeoutSeconds) }
    func unlock() { inner.unlock() }
    func map(length: Int) throws(IOError) -> MappedRegion { try inner.map(length: length) }
    func close() { inner.close() }
}

#if canImport(Glibc)
import Glibc
#endif
