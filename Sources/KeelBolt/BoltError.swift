import KeelIO

/// Everything KeelBolt can report. Messages say what happened, where (page, file) and what to do.
public enum BoltError: Error, Equatable, Sendable, CustomStringConvertible {
    // Opening
    /// The file is shorter than two pages, so it cannot hold the two meta pages.
    case fileTooSmall(path: String, size: Int64)
    /// Neither meta page is valid. Each string says why.
    case invalidMetaPages(path: String, meta0: String, meta1: String)
    /// The page size in the meta page is not one Keel supports.
    case unsupportedPageSize(path: String, pageSize: UInt32)
    /// The database is open read-only, or the transaction is read-only.
    case readOnly
    /// The database was closed.
    case databaseClosed
    /// A previous sync failed, so writes are refused until the file is reopened and recovered.
    case writesDisabled(cause: String)

    // Pages
    /// A page's bytes contradict the format. `id` is the page it was read at.
    case corruptPage(id: UInt64, reason: String)
    /// A reference to a page at or past the high-water mark (or past the end of the file).
    case pageOutOfBounds(id: UInt64, highWaterMark: UInt64)
    /// A page was freed twice.
    case pageAlreadyFreed(id: UInt64)

    // Transactions
    /// The transaction was already committed or rolled back.
    case txClosed
    /// Commit was called on a managed transaction (inside `update`), which commits itself.
    case managedTxCommit
    /// `close()` was called on the thread that holds the write transaction.
    case closeInWriteTransaction
    /// A second write transaction was begun on the thread that holds one (it would wait for ever).
    case writeTransactionOpen

    // Buckets and keys
    case bucketNotFound
    case bucketExists
    case bucketNameRequired
    case keyRequired
    case keyTooLarge(size: Int)
    case valueTooLarge(size: Int)
    /// A put or delete addressed a bucket, or a bucket operation addressed a plain key.
    case incompatibleValue
    /// A cursor was used to delete at a nested bucket.
    case cursorOnBucket

    // Below
    case io(IOError)

    public var description: String {
        switch self {
        case let .fileTooSmall(path, size):
            return "'\(path)' is \(size) bytes, too small to be a bbolt file (it needs two meta pages)"
        case let .invalidMetaPages(path, meta0, meta1):
            return "'\(path)': both meta pages are invalid (meta 0: \(meta0); meta 1: \(meta1)); the file is damaged or not a bbolt file"
        case let .unsupportedPageSize(path, size):
            return "'\(path)': page size \(size) is not supported (\(PageLayout.minPageSize)...\(PageLayout.maxPageSize), a power of two)"
        case .readOnly:
            return "the database or transaction is read-only"
        case .databaseClosed:
            return "the database is closed"
        case let .writesDisabled(cause):
            return "writes are disabled after a failed sync (\(cause)); close and reopen the database to recover its last durable state"
        case let .corruptPage(id, reason):
            return "page \(id) is corrupt: \(reason)"
        case let .pageOutOfBounds(id, hwm):
            return "page \(id) is out of bounds (high-water mark \(hwm)): a reference points past the used part of the file"
        case let .pageAlreadyFreed(id):
            return "page \(id) is already freed: the freelist or a tree is corrupt; run `keelutl check`"
        case .txClosed:
            return "the transaction is closed"
        case .managedTxCommit:
            return "a managed transaction commits itself when its closure returns"
        case .closeInWriteTransaction:
            return "close() was called while this thread holds the write transaction; commit or roll it back first"
        case .writeTransactionOpen:
            return "this thread already holds the write transaction; commit or roll it back before beginning another"
        case .bucketNotFound:
            return "bucket not found"
        case .bucketExists:
            return "bucket already exists"
        case .bucketNameRequired:
            return "a bucket name must not be empty"
        case .keyRequired:
            return "a key must not be empty"
        case let .keyTooLarge(size):
            return "key of \(size) bytes is larger than the maximum \(PageLayout.maxKeySize)"
        case let .valueTooLarge(size):
            return "value of \(size) bytes is larger than the maximum \(PageLayout.maxValueSize)"
        case .incompatibleValue:
            return "incompatible value: the key names a nested bucket where a plain value was expected, or the reverse"
        case .cursorOnBucket:
            return "the cursor is on a nested bucket; delete it with deleteBucket"
        case let .io(error):
            return error.description
        }
    }
}
