/// An error from the file layer. Every case names the operation and the file, so a message can be
/// acted on without a debugger.
public enum IOError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed. `errno` is the C error number.
    case system(operation: String, path: String, errno: Int32)
    /// A read or write moved fewer bytes than asked, and no error explains it (end of file on read).
    case shortTransfer(operation: String, path: String, offset: Int64, expected: Int, actual: Int)
    /// An earlier fsync/fdatasync on this file failed. The kernel may already have dropped the
    /// dirty pages, so nothing written since the last good sync is known to be on disk. The file
    /// must be reopened and recovered; the handle refuses further writes and syncs.
    case fileLost(path: String, cause: String)
    /// The lock could not be taken before the timeout: another process (or handle) holds it.
    case lockTimeout(path: String)
    /// The simulated file system is crashed; reopen after `SimulatedFileSystem.restart`.
    case simulatedCrash(operation: String, path: String)
    /// A write went past what a simulated file can hold.
    case noSpace(path: String, needed: Int64)

    public var description: String {
        switch self {
        case let .system(operation, path, code):
            return "\(operation) '\(path)' failed: \(errnoName(code)) (\(String(cString: strerrorText(code))))"
        case let .shortTransfer(operation, path, offset, expected, actual):
            return "\(operation) '\(path)' at offset \(offset) moved \(actual) of \(expected) bytes (file shorter than expected?)"
        case let .fileLost(path, cause):
            return "'\(path)' can no longer be written: an earlier sync failed (\(cause)); reopen the file and recover from its last durable state"
        case let .lockTimeout(path):
            return "timed out waiting for the lock on '\(path)': another process has it open for writing; stop it or open read-only"
        case let .simulatedCrash(operation, path):
            return "simulated crash during \(operation) '\(path)'"
        case let .noSpace(path, needed):
            return "no space to grow '\(path)' to \(needed) bytes"
        }
    }

    /// The errno value when this is a system error.
    public var errno: Int32? {
        if case let .system(_, _, code) = self { return code }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func strerrorText(_ code: Int32) -> UnsafeMutablePointer<CChar> { strerror(code) }

/// The symbolic name of common errno values (EIO, ENOSPC, …), for messages.
func errnoName(_ code: Int32) -> String {
    switch code {
    case EIO: return "EIO"
    case ENOSPC: return "ENOSPC"
    case ENOENT: return "ENOENT"
    case EEXIST: return "EEXIST"
    case EACCES: return "EACCES"
    case EPERM: return "EPERM"
    case EAGAIN: return "EAGAIN"
    case EINVAL: return "EINVAL"
    case EROFS: return "EROFS"
    case EBADF: return "EBADF"
    case ENOMEM: return "ENOMEM"
    case EISDIR: return "EISDIR"
    case ENOTDIR: return "ENOTDIR"
    case EOPNOTSUPP: return "EOPNOTSUPP"
    default: return "errno \(code)"
    }
}
