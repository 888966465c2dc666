/// How a leader confirms it is still the leader before answering a read index.
public enum ReadOnlyOption: Sendable {
    /// A heartbeat round acknowledged by a quorum (etcd's `ReadOnlySafe`, its default).
    case safe
    /// Trusts the leader lease instead (needs check-quorum; unsafe under clock drift).
    case leaseBased
}

/// Read-index requests waiting for their heartbeat round, oldest first (etcd's `readOnly`).
struct ReadOnlyQueue {
    struct Pending {
        var request: RaftMessage
        var index: UInt64
        var acks: [UInt64: Bool]
    }

    let option: ReadOnlyOption
    private var pending: [[UInt8]: Pending] = [:]
    private var queue: [[UInt8]] = []

    init(option: ReadOnlyOption) { self.option = option }

    mutating func add(index: UInt64, request: RaftMessage) {
        let ctx = request.entries.first?.data ?? []
        if pending[ctx] != nil { return }
        pending[ctx] = Pending(request: request, index: index, acks: [:])
        queue.append(ctx)
    }

    /// Records `id`'s acknowledgement of the round carrying `context`; returns who acknowledged it.
    mutating func recordAck(_ id: UInt64, context: [UInt8]) -> [UInt64: Bool]? {
        guard pending[context] != nil else { return nil }
        pending[context]!.acks[id] = true
        return pending[context]!.acks
    }

    /// Dequeues the request with `context` and every request queued before it.
    mutating func advance(context: [UInt8]) -> [Pending] {
        guard let i = queue.firstIndex(of: context) else { return [] }
        let done = queue[...i].compactMap { pending[$0] }
        for ctx in queue[...i] { pending[ctx] = nil }
        queue.removeFirst(i + 1)
        return done
    }

    var lastPendingContext: [UInt8]? { queue.last }
}
