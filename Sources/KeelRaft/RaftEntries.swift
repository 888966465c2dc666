/// A run of log entries as messages, storages and `Ready` carry them: a collection of
/// `RaftEntry` that holds a single entry inline and only puts two or more in an array.
///
/// In a busy cluster most appends, and most batches of newly committed entries, are exactly one
/// entry long (every proposal the leader streams before its inflight window fills goes out as
/// its own `MsgApp`). Holding that entry in place instead of in a one-element array is what
/// keeps the replication path free of heap allocations per entry (see
/// `Benchmarks/compare-raft.sh`). Behaves like `[RaftEntry]` otherwise: zero-based `Int`
/// indexes, value semantics, equal when the entries are equal whatever the representation.
public struct RaftEntries: Sendable, RandomAccessCollection, MutableCollection, RangeReplaceableCollection, ExpressibleByArrayLiteral, Equatable, CustomStringConvertible {
    @usableFromInline
    enum Storage: Sendable {
        case empty
        case one(RaftEntry)
        case many([RaftEntry])
    }

    @usableFromInline var storage: Storage

    @inlinable public init() { storage = .empty }

    /// One entry, held inline.
    @inlinable public init(_ entry: RaftEntry) { storage = .one(entry) }

    @inlinable public init(_ entries: [RaftEntry]) {
        switch entries.count {
        case 0: storage = .empty
        case 1: storage = .one(entries[0])
        default: storage = .many(entries)
        }
    }

    @inlinable public init<S: Sequence>(_ entries: S) where S.Element == RaftEntry {
        self.init(Array(entries))
    }

    public init(arrayLiteral elements: RaftEntry...) { self.init(elements) }

    @inlinable public var startIndex: Int { 0 }

    @inlinable public var endIndex: Int {
        switch storage {
        case .empty: return 0
        case .one: return 1
        case let .many(a): return a.count
        }
    }

    @inlinable public var count: Int { endIndex }
    @inlinable public var isEmpty: Bool { if case .empty = storage { return true } else { return false } }

    @inlinable public func index(after i: Int) -> Int { i + 1 }
    @inlinable public func index(before i: Int) -> Int { i - 1 }

    @inlinable public subscript(position: Int) -> RaftEntry {
        get {
            switch storage {
            case let .one(e):
                precondition(position == 0, "RaftEntries index \(position) out of range (count 1)")
                return e
            case let .many(a): return a[position]
            case .empty: preconditionFailure("RaftEntries index \(position) out of range (empty)")
            }
        }
        set {
            switch storage {
            case .one:
                precondition(position == 0, "RaftEntries index \(position) out of range (count 1)")
                storage = .one(newValue)
            case var .many(a):
                storage = .empty
                a[position] = newValue
                storage = .many(a)
            case .empty: preconditionFailure("RaftEntries index \(position) out of range (empty)")
            }
        }
    }

    @inlinable public var first: RaftEntry? {
        switch storage {
        case .empty: return nil
        case let .one(e): return e
        case let .many(a): return a.first
        }
    }

    @inlinable public var last: RaftEntry? {
        switch storage {
        case .empty: return nil
        case let .one(e): return e
        case let .many(a): return a.last
        }
    }

    /// The entries as an array (allocates for one entry).
    public var array: [RaftEntry] {
        switch storage {
        case .empty: return []
        case let .one(e): return [e]
        case let .many(a): return a
        }
    }

    public mutating func replaceSubrange<C: Collection>(_ subrange: Range<Int>, with newElements: C) where C.Element == RaftEntry {
        if subrange.isEmpty && newElements.isEmpty { return }
        if case .empty = storage, newElements.count == 1, let e = newElements.first {
            storage = .one(e)
            return
        }
        var a = array
        storage = .empty
        a.replaceSubrange(subrange, with: newElements)
        self = RaftEntries(a)
    }

    public mutating func append(_ e: RaftEntry) {
        switch storage {
        case .empty: storage = .one(e)
        case let .one(f): storage = .many([f, e])
        case var .many(a):
            storage = .empty
            a.append(e)
            storage = .many(a)
        }
    }

    public mutating func reserveCapacity(_ n: Int) {}

    /// The first `n` entries (`n` at most `count`), without copying when that is all of them or one.
    public func head(_ n: Int) -> RaftEntries {
        if n == count { return self }
        if n == 0 { return RaftEntries() }
        if n == 1 { return RaftEntries(self[0]) }
        guard case let .many(a) = storage else { return self }
        return RaftEntries(Array(a[..<n]))
    }

    /// Entries from position `n` on (`n` at most `count`), without copying when that is all of them or one.
    public func tail(from n: Int) -> RaftEntries {
        if n == 0 { return self }
        if n == count { return RaftEntries() }
        if n == count - 1 { return RaftEntries(self[n]) }
        guard case let .many(a) = storage else { return self }
        return RaftEntries(Array(a[n...]))
    }

    public static func == (a: RaftEntries, b: RaftEntries) -> Bool { a.count == b.count && a.elementsEqual(b) }

    public var description: String { array.description }
}
