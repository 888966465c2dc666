/// The errors of the MVCC layer: one per etcd error, with etcd's exact message text (after the
/// `etcdserver: ` prefix the server adds), so the server maps them to gRPC codes by case.
public enum MVCCError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A revision at or below the compacted one was asked for.
    case compacted
    /// A revision above the current one was asked for.
    case futureRevision
    /// A put or delete with an empty key.
    case emptyKey
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    case keyNotFound
    /// `ignore_value` with a value given.
    case valueProvided
    /// `ignore_lease` with a lease given.
    case leaseProvided
    /// A key put twice, or put and deleted, within one txn branch.
    case duplicateKey
    /// More operations in one txn than allowed.
    case tooManyOperations
    /// The lease a put names does not exist.
    case leaseNotFound
    /// A lease error with etcd's message (see the static members in Leases.swift).
    case lease(String)
    /// An auth store error with etcd's message (see the static members in AuthStore.swift).
    case auth(String)
    /// The backend quota is used up (NOSPACE): puts and lease grants are refused.
    case noSpace
    /// The stored data contradicts etcd's schema (a damaged or foreign file).
    case corrupt(String)
    /// The backend failed.
    case backend(String)
    /// The store was closed.
    case closed

    public var description: String {
        switch self {
        case .compacted: return "mvcc: required revision has been compacted"
        case .futureRevision: return "mvcc: required revision is a future revision"
        case .emptyKey: return "key is not provided"
        case .keyNotFound: return "key not found"
        case .valueProvided: return "value is provided"
        case .leaseProvided: return "lease is provided"
        case .duplicateKey: return "duplicate key given in txn request"
        case .tooManyOperations: return "too many operations in txn request"
        case .leaseNotFound: return "requested lease not found"
        case let .lease(message): return message
        case .noSpace: return "mvcc: database space exceeded"
        case let .auth(message): return message
        case let .corrupt(message): return "mvcc: corrupt store: \(message)"
        case let .backend(message): return "mvcc: backend: \(message)"
        case .closed: return "mvcc: the store is closed"
        }
    }
}
