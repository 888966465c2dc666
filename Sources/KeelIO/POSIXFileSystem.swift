#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKeelShims

/// The real file system, through POSIX calls. EINTR is retried; every other errno is thrown as
/// `IOError.system` naming the call and the path.
public final class POSIXFileSystem: FileSystem {
    /// Where fdatasync latencies are recorded.
    public let syncLatency: LatencyHistogram

    public init(syncLatency: LatencyHistogram = FileSyncLatency.shared) {
        self.syncLatency = syncLatency
    }

    public func open(_ path: String, options: OpenOptions) throws(IOError) -> any FileHandle {
        var flags = options.writable ? O_RDWR : O_RDONLY
        flags |= O_CLOEXEC
        if options.create { flags |= O_CREAT }
        if options.exclusive { flags |= O_EXCL }
        let fd = try retrying("open", path) { Glibc.open(path, flags, mode_t(options.mode)) }
        return POSIXFileHandle(fd: fd, path: path, writable: options.writable, latency: syncLatency)
    }

    public func rename(_ from: String, to: String) throws(IOError) {
        _ = try retrying("rename", from) { Glibc.rename(from, to) }
    }

    public func remove(_ path: String) throws(IOError) {
        _ = try retrying("unlink", path) { unlink(path) }
    }

    public func syncDirectory(_ path: String) throws(IOError) {
        let fd = try retrying("open directory", path) { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { Glibc.close(fd) }
        _ = try retrying("fsync directory", path) { fsync(fd) }
    }

    public func makeDirectory(_ path: String, intermediate: Bool) throws(IOError) {
        if intermediate {
            let parent = parentDirectory(path)
            if parent != path && parent != "." && parent != "/" && !exists(parent) {
                try makeDirectory(parent, intermediate: true)
            }
        }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw IOError.system(operation: "mkdir", path: path, errno: errno)
        }
    }

    public func removeDirectory(_ path: String) throws(IOError) {
        _ = try retrying("rmdir", path) { rmdir(path) }
    }

    public func listDirectory(_ path: String) throws(IOError) -> [String] {
        guard let dir = opendir(path) else { throw IOError.system(operation: "opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }
}

/// Runs a syscall returning -1 on error, retrying EINTR.
@inline(__always)
func retrying<T: BinaryInteger>(_ operation: String, _ path: String, _ call: () -> T) throws(IOError) -> T {
    while true {
        let result = call()
        if result >= 0 { return result }
        let code = errno
        if code == EINTR { continue }
        throw IOError.system(operation: operation, path: path, errno: code)
    }
}

/// A file opened by `POSIXFileSystem`.
final class POSIXFileHandle: FileHandle, @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let writable: Bool
    private let latency: LatencyHistogram
    /// Set after a failed sync: the reason; from then on writes and syncs are refused.
    private let failure = Locked<String?>(nil)
    private let closed = Locked(false)
    private let lockMode = Locked<LockKind?>(nil)

    init(fd: Int32, path: String, writable: Bool, latency: LatencyHistogram) {
        self.fd = fd
        self.path = path
        self.writable = writable
        self.latency = latency
    }

    deinit { close() }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(IOError) {
        var done = 0
        while done < buffer.count {
            let n = try retrying("pread", path) {
                pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 {
                throw IOError.shortTransfer(operation: "pread", path: path, offset: offset, expected: buffer.count, actual: done)
            }
            done += n
        }
    }

    private func checkUsable(_ operation: String) throws(IOError) {
        if let cause = failure.withLock({ $0 }) { throw IOError.fileLost(path: path, cause: cause) }
        _ = operation
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(IOError) {
        try checkUsable("pwrite")
        var done = 0
        while done < bytes.count {
            let n = try retrying("pwrite", path) {
                pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 {
                throw IOError.shortTransfer(operation: "pwrite", path: path, offset: offset, expected: bytes.count, actual: done)
            }
            done += n
        }
    }

    func write(vectors: [UnsafeRawBufferPointer], at offset: Int64) throws(IOError) {
        try checkUsable("pwritev")
        var iov = vectors.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        let total = vectors.reduce(0) { $0 + $1.count }
        var done = 0
        var first = 0
        // At most 1024 vectors per call (IOV_MAX); partial writes resume where they stopped.
        while done < total {
            let count = min(iov.count - first, 1024)
            let n = try iov.withUnsafeMutableBufferPointer { buffer throws(IOError) in
                try retrying("pwritev", path) { pwritev(fd, buffer.baseAddress! + first, Int32(count), off_t(offset) + off_t(done)) }
            }
            if n == 0 {
                throw IOError.shortTransfer(operation: "pwritev", path: path, offset: offset, expected: total, actual: done)
            }
            done += n
            var consumed = n
            while first < iov.count && consumed >= iov[first].iov_len {
                consumed -= iov[first].iov_len
                first += 1
            }
            if consumed > 0 {
                iov[first].iov_base = iov[first].iov_base! + consumed
                iov[first].iov_len -= consumed
            }
        }
    }

    func sync() throws(IOError) {
        try checkUsable("fdatasync")
        let start = monotonicNanoseconds()
        #if canImport(Glibc)
        let result = fdatasync(fd)
        #else
        let result = fsync(fd)
        #endif
        let code = errno
        latency.record(nanoseconds: monotonicNanoseconds() &- start)
        if result != 0 {
            // Never retry: the kernel may have dropped the dirty pages and marked them clean.
            let cause = "fdatasync: \(errnoName(code))"
            failure.withLock { $0 = cause }
            throw IOError.system(operation: "fdatasync", path: path, errno: code)
        }
    }

    func size() throws(IOError) -> Int64 {
        var st = stat()
        _ = try retrying("fstat", path) { fstat(fd, &st) }
        return Int64(st.st_size)
    }

    func truncate(to size: Int64) throws(IOError) {
        try checkUsable("ftruncate")
        _ = try retrying("ftruncate", path) { ftruncate(fd, off_t(size)) }
    }

    func preallocate(offset: Int64, length: Int64, keepSize: Bool) throws(IOError) {
        try checkUsable("fallocate")
        let mode = keepSize ? keel_falloc_fl_keep_size() : 0
        while true {
            if keel_fallocate(fd, mode, off_t(offset), off_t(length)) == 0 { return }
            let code = errno
            if code == EINTR { continue }
            if code == EOPNOTSUPP || code == ENOSYS {
                // No fallocate on this file system: extend with ftruncate when the size may change.
                if !keepSize, try self.size() < offset + length { try truncate(to: offset + length) }
                return
            }
            throw IOError.system(operation: "fallocate", path: path, errno: code)
        }
    }

    func lock(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError) {
        let operation = (kind == .shared ? LOCK_SH : LOCK_EX) | LOCK_NB
        let start = monotonicNanoseconds()
        while true {
            if flock(fd, operation) == 0 {
                lockMode.withLock { $0 = kind }
                return
            }
            let code = errno
            if code != EWOULDBLOCK && code != EINTR {
                throw IOError.system(operation: "flock", path: path, errno: code)
            }
            if let timeout = timeoutSeconds,
               Double(monotonicNanoseconds() &- start) / 1e9 >= timeout {
                throw IOError.lockTimeout(path: path)
            }
            usleep(50_000)
        }
    }

    private let recordLocked = Locked(false)

    func lockRecord(_ kind: LockKind, timeoutSeconds: Double?) throws(IOError) {
        let start = monotonicNanoseconds()
        while true {
            if keel_ofd_lock(fd, kind == .exclusive ? 1 : 0, 0) == 0 {
                recordLocked.withLock { $0 = true }
                return
            }
            let code = errno
            if code == EINVAL || code == ENOSYS {
                // No OFD locks on this kernel: fall back to flock, as etcd does.
                try lock(kind, timeoutSeconds: timeoutSeconds)
                return
            }
            if code != EAGAIN && code != EACCES && code != EINTR {
                throw IOError.system(operation: "fcntl(F_OFD_SETLK)", path: path, errno: code)
            }
            if let timeout = timeoutSeconds, Double(monotonicNanoseconds() &- start) / 1e9 >= timeout {
                throw IOError.lockTimeout(path: path)
            }
            usleep(50_000)
        }
    }

    func unlock() {
        lockMode.withLock { mode in
            if mode != nil { _ = flock(fd, LOCK_UN) }
            mode = nil
        }
        recordLocked.withLock { held in
            if held { _ = keel_ofd_unlock(fd) }
            held = false
        }
    }

    func map(length: Int) throws(IOError) -> MappedRegion {
        let pointer = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0)
        guard let pointer, pointer != MAP_FAILED else {
            throw IOError.system(operation: "mmap", path: path, errno: errno)
        }
        _ = madvise(pointer, length, MADV_RANDOM)
        let address = UInt(bitPattern: pointer)
        return MappedRegion(base: UnsafeRawPointer(pointer), length: length) {
            _ = munmap(UnsafeMutableRawPointer(bitPattern: address), length)
        }
    }

    func close() {
        if closed.withLock({ c in defer { c = true }; return c }) { return }
        unlock()
        _ = Glibc.close(fd)
    }
}
