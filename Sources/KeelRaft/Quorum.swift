/// Quorum arithmetic over voter sets: a majority configuration, and the joint configuration of
/// two majorities that membership changes pass through.

/// The outcome of counting votes.
enum VoteResult {
    /// Not decided yet: enough voters have not answered.
    case pending
    case lost
    case won
}

/// A set of voters decided by simple majority. IDs are kept sorted.
struct MajorityConfig: Equatable {
    private(set) var ids: [UInt64] = []

    init(_ ids: [UInt64] = []) { self.ids = Array(Set(ids)).sorted() }

    var count: Int { ids.count }
    var isEmpty: Bool { ids.isEmpty }
    func contains(_ id: UInt64) -> Bool { ids.contains(id) }

    mutating func insert(_ id: UInt64) {
        guard !ids.contains(id) else { return }
        ids.append(id)
        ids.sort()
    }

    mutating func remove(_ id: UInt64) { ids.removeAll { $0 == id } }

    /// The highest index a majority has acknowledged; an empty set commits everything
    /// (so a joint configuration with an empty half is decided by the other half).
    func committedIndex(_ acked: (UInt64) -> UInt64?) -> UInt64 {
        let n = ids.count
        if n == 0 { return .max }
        if n <= 7 {
            // Small clusters: sort on the stack.
            var buf: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0)
            return withUnsafeMutableBytes(of: &buf) { raw in
                let s = raw.bindMemory(to: UInt64.self)
                for i in 0..<n { s[i] = acked(ids[i]) ?? 0 }
                // Insertion sort, ascending.
                for i in 1..<max(n, 1) {
                    var j = i
                    while j > 0 && s[j] < s[j - 1] {
                        s.swapAt(j, j - 1)
                        j -= 1
                    }
                }
                return s[n - (n / 2 + 1)]
            }
        }
        let sorted = ids.map { acked($0) ?? 0 }.sorted()
        return sorted[n - (n / 2 + 1)]
    }

    func voteResult(_ votes: [UInt64: Bool]) -> VoteResult {
        if ids.isEmpty { return .won }
        var yes = 0, no = 0, missing = 0
        for id in ids {
            switch votes[id] {
            case .some(true): yes += 1
            case .some(false): no += 1
            case .none: missing += 1
            }
        }
        let q = ids.count / 2 + 1
        if yes >= q { return .won }
        if yes + missing >= q { return .pending }
        return .lost
    }

    /// etcd's rendering: `(1 2 3)`.
    var description: String { "(" + ids.map(String.init).joined(separator: " ") + ")" }
}

/// Two majority configurations that must both agree: `incoming` (the new voters) and
/// `outgoing` (the old ones; empty when not in a joint configuration).
struct JointConfig: Equatable {
    var incoming = MajorityConfig()
    var outgoing = MajorityConfig()

    var isJoint: Bool { !outgoing.isEmpty }

    /// Every voter of either half, sorted.
    var ids: [UInt64] { Array(Set(incoming.ids).union(outgoing.ids)).sorted() }

    func contains(_ id: UInt64) -> Bool { incoming.contains(id) || outgoing.contains(id) }

    func committedIndex(_ acked: (UInt64) -> UInt64?) -> UInt64 {
        min(incoming.committedIndex(acked), outgoing.committedIndex(acked))
    }

    func voteResult(_ votes: [UInt64: Bool]) -> VoteResult {
        let a = incoming.voteResult(votes), b = outgoing.voteResult(votes)
        if a == b { return a }
        if a == .lost || b == .lost { return .lost }
        return .pending
    }

    var description: String { isJoint ? incoming.description + "&&" + outgoing.description : incoming.description }
}
