/// What a leader knows of one follower's log (etcd's `Progress`).
struct Progress {
    enum State: String { case probe, replicate }
    /// The highest index known to match the leader's log.
    var match: UInt64 = 0
    /// The next index to send.
    var next: UInt64
    var state = State.probe
    /// In probe state: one append is out, wait for its answer or a heartbeat response.
    var probeSent = false
    /// Appends in flight in replicate state.
    var inflight = 0
    /// Heard from since the last check-quorum round.
    var recentActive = false

    init(next: UInt64) { self.next = next }

    mutating func becomeProbe() {
        state = .probe
        next = match + 1
        probeSent = false
        inflight = 0
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        inflight = 0
    }

    /// An acknowledgement of `n`: true when it moved `match`.
    mutating func maybeUpdate(_ n: UInt64) -> Bool {
        var updated = false
        if match < n {
            match = n
            updated = true
            probeSent = false
        }
        next = max(next, n + 1)
        return updated
    }

    /// A rejection of the append at `rejected` (the follower's last index is `hint`).
    mutating func maybeDecrease(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        if next - 1 != rejected { return false }
        next = max(min(rejected, hint == .max ? hint : hint + 1), 1)
        probeSent = false
        return true
    }

    func isPaused(maxInflight: Int) -> Bool {
        state == .probe ? probeSent : inflight >= maxInflight
    }
}
