/// Errors every backend reports the same way, so a cross-check can compare them.
public enum BackendError: Error, Equatable, Sendable, CustomStringConvertible {
    case bucketNotFound(String)
    case bucketExists(String)
    case incompatibleValue(String)
    case keyRequired
    case keyTooLarge(Int)
    case valueTooLarge(Int)
    case readOnly
    case txClosed
    /// A failure of the engine itself (I/O, corruption, resource limits), with the engine's message.
    case engine(kind: String, message: String)
    /// The cross-checked backends disagreed. The message holds the operations that led there.
    case divergence(String)
    /// A write or commit of a `BatchedWriter` batch failed, so the whole batch was rolled
    /// back, including writes whose calls had returned. Every later call fails the same way
    /// until the owner calls `reset()` after rebuilding what the lost batch held.
    case batchAborted(String)

    /// The case without its payload, for comparing the errors of two engines.
    public var category: String {
        switch self {
        case .bucketNotFound: return "bucketNotFound"
        case .bucketExists: return "bucketExists"
        case .incompatibleValue: return "incompatibleValue"
        case .keyRequired: return "keyRequired"
        case .keyTooLarge: return "keyTooLarge"
        case .valueTooLarge: return "valueTooLarge"
        case .readOnly: return "readOnly"
        case .txClosed: return "txClosed"
        case .engine: return "engine"
        case .divergence: return "divergence"
        case .batchAborted: return "batchAborted"
        }
    }

    public var description: String {
        switch self {
        case let .bucketNotFound(p): return "bucket \(p) not found"
        case let .bucketExists(p): return "bucket \(p) already exists"
        case let .incompatibleValue(p): return "incompatible value at \(p): a key and a bucket cannot share a name"
        case .keyRequired: return "a key or bucket name must not be empty"
        case let .keyTooLarge(n): return "key of \(n) bytes is too large"
        case let .valueTooLarge(n): return "value of \(n) bytes is too large"
        case .readOnly: return "read-only"
        case .txClosed: return "the transaction is closed"
        case let .engine(kind, message): return "\(kind): \(message)"
        case let .divergence(message): return "backends diverged: \(message)"
        case let .batchAborted(message): return "batch aborted: \(message)"
        }
    }
}
