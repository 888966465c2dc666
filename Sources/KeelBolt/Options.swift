import KeelIO

/// How a database file is opened. The defaults match bbolt's, except where noted.
public struct Options: Sendable {
    /// The file system to use. Tests pass a `SimulatedFileSystem`.
    public var fileSystem: any FileSystem = POSIXFileSystem()
    /// Page size for a new file (existing files keep theirs). Default 4096.
    public var pageSize: Int = 4096
    /// Open read-only with a shared lock: no writes, the freelist is not loaded.
    public var readOnly = false
    /// Skip both fdatasyncs of a commit. Unsafe: a crash can corrupt the file.
    public var noSync = false
    /// Skip the fsync after growing the file.
    public var noGrowSync = false
    /// Do not store the freelist; rebuild it by scanning on a read-write open (etcd's setting).
    public var noFreelistSync = false
    /// The in-memory freelist structure.
    public var freelistType: FreelistType = .array
    /// Seconds to wait for the file lock; nil waits for ever, 0 tries once.
    public var lockTimeout: Double? = nil
    /// Bytes of address space to reserve for the map up front, so the map never has to move while
    /// the file grows within it (Keel goes beyond bbolt here: readers never wait on a remap).
    /// If the file outgrows it, a larger map is made beside the old one, which stays valid for
    /// the readers still using it.
    public var mapReserveBytes: Int = 1 << 36
    /// Growth step once the file is above it (bbolt's AllocSize).
    public var allocSize: Int = 16 << 20
    /// Run `check()` after every commit and fail the commit on any problem (slow; for tests).
    public var strictMode = false
    /// Permission bits for a new file.
    public var mode: UInt32 = 0o600

    public init() {}
}
