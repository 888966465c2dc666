/// The append messages in flight to one follower, by the last index each carries: a ring
/// buffer that grows up to `capacity` and is then reused, so steady-state replication
/// allocates nothing here.
struct Inflights {
    private var start = 0
    private(set) var count = 0
    let capacity: Int
    private var buffer: [UInt64] = []

    init(capacity: Int) { self.capacity = max(capacity, 1) }

    var isFull: Bool { count == capacity }

    mutating func add(_ last: UInt64) {
        precondition(!isFull, "cannot add into a full inflight window")
        var next = start + count
        if next >= capacity { next -= capacity }
        if next >= buffer.count { grow() }
        buffer[next] = last
        count += 1
    }

    private mutating func grow() {
        var size = buffer.count * 2
        if size == 0 { size = 1 } else if size > capacity { size = capacity }
        buffer.append(contentsOf: repeatElement(0, count: size - buffer.count))
    }

    /// Frees every message whose last index is ≤ `to`.
    mutating func freeLE(_ to: UInt64) {
        if count == 0 || to < buffer[start] { return }
        var idx = start
        var i = 0
        while i < count {
            if to < buffer[idx] { break }
            idx += 1
            if idx >= capacity { idx -= capacity }
            i += 1
        }
        count -= i
        start = count == 0 ? 0 : idx
    }

    mutating func freeFirstOne() { if count > 0 { freeLE(buffer[start]) } }

    mutating func reset() {
        count = 0
        start = 0
    }
}

/// What a leader knows of one follower's log (etcd's `Progress`). A class, so the leader's
/// hot path updates it in place (a struct in a dictionary would copy its inflight buffer on
/// every change); the conf changer works on `clone()`s.
final class Progress {
    enum State: String {
        /// One append at a time until the follower's log is found to match.
        case probe
        /// Appends streamed optimistically, bounded by the inflight window.
        case replicate
        /// A snapshot is on its way; nothing else is sent until it is applied or fails.
        case snapshot

        var name: String {
            switch self {
            case .probe: return "StateProbe"
            case .replicate: return "StateReplicate"
            case .snapshot: return "StateSnapshot"
            }
        }
    }

    /// The highest index known to match the leader's log.
    @exclusivity(unchecked) var match: UInt64 = 0
    /// The next index to send.
    @exclusivity(unchecked) var next: UInt64
    @exclusivity(unchecked) var state = State.probe
    /// In snapshot state: the index of the snapshot sent.
    @exclusivity(unchecked) var pendingSnapshot: UInt64 = 0
    /// Heard from since the last check-quorum round.
    @exclusivity(unchecked) var recentActive = false
    /// In probe state: one append is out, wait for its answer or a heartbeat response.
    @exclusivity(unchecked) var probeSent = false
    @exclusivity(unchecked) var inflights: Inflights
    @exclusivity(unchecked) var isLearner = false

    init(next: UInt64, maxInflight: Int, isLearner: Bool = false) {
        self.next = next
        inflights = Inflights(capacity: maxInflight)
        self.isLearner = isLearner
    }

    /// An independent copy (etcd's changer copies progress by value).
    func clone() -> Progress {
        let p = Progress(next: next, maxInflight: inflights.capacity, isLearner: isLearner)
        p.match = match
        p.state = state
        p.pendingSnapshot = pendingSnapshot
        p.recentActive = recentActive
        p.probeSent = probeSent
        p.inflights = inflights
        return p
    }

    private func resetState(_ s: State) {
        probeSent = false
        pendingSnapshot = 0
        state = s
        inflights.reset()
    }

    func becomeProbe() {
        if state == .snapshot {
            let pending = pendingSnapshot
            resetState(.probe)
            next = max(match &+ 1, pending &+ 1)
        } else {
            resetState(.probe)
            next = match &+ 1
        }
    }

    func becomeReplicate() {
        resetState(.replicate)
        next = match &+ 1
    }

    func becomeSnapshot(_ index: UInt64) {
        resetState(.snapshot)
        pendingSnapshot = index
    }

    /// An acknowledgement of `n`: true when it moved `match`.
    func maybeUpdate(_ n: UInt64) -> Bool {
        var updated = false
        if match < n {
            match = n
            updated = true
            probeSent = false
        }
        if next < n &+ 1 { next = n &+ 1 }
        return updated
    }

    /// A rejection of the append at `rejected` (the follower's last index is `last`).
    func maybeDecrease(rejected: UInt64, last: UInt64) -> Bool {
        if state == .replicate {
            if rejected <= match { return false }
            next = match &+ 1
            return true
        }
        if next == 0 || next - 1 != rejected { return false }
        next = max(min(rejected, last == .max ? last : last + 1), 1)
        probeSent = false
        return true
    }

    var isPaused: Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflights.isFull
        case .snapshot: return true
        }
    }

    /// etcd's rendering, as its `status` output prints it.
    var description: String {
        var s = "\(state.name) match=\(match) next=\(next)"
        if isLearner { s += " learner" }
        if isPaused { s += " paused" }
        if pendingSnapshot > 0 { s += " pendingSnap=\(pendingSnapshot)" }
        if !recentActive { s += " inactive" }
        if inflights.count > 0 {
            s += " inflight=\(inflights.count)"
            if inflights.isFull { s += "[full]" }
        }
        return s
    }
}
