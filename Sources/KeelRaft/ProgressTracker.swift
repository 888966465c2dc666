/// The membership a node works with: voters (possibly joint), learners, and the learners that
/// become learners when a joint configuration is left (etcd's `tracker.Config`).
struct TrackerConfig: Equatable {
    var voters = JointConfig()
    var learners = MajorityConfig()
    /// Voters of the outgoing half being demoted to learners: they stay voters until the
    /// joint configuration is left (a node cannot be a voter and a learner at once).
    var learnersNext = MajorityConfig()
    /// Leave the joint configuration on its own once it is applied.
    var autoLeave = false

    var confState: ConfState {
        ConfState(voters: voters.incoming.ids, learners: learners.ids, votersOutgoing: voters.outgoing.ids,
                  learnersNext: learnersNext.ids, autoLeave: autoLeave)
    }

    /// etcd's rendering: `voters=(1 2)&&(1) learners=(3) learners_next=(4) autoleave`.
    var description: String {
        var s = "voters=" + voters.description
        if !learners.isEmpty { s += " learners=" + learners.description }
        if !learnersNext.isEmpty { s += " learners_next=" + learnersNext.description }
        if autoLeave { s += " autoleave" }
        return s
    }
}

/// The leader's view of every member: configuration, per-member progress and votes.
struct ProgressTracker {
    var config = TrackerConfig()
    var progress: [UInt64: Progress] = [:]
    /// The keys of `progress`, sorted (visiting order, as etcd visits).
    private(set) var ids: [UInt64] = []
    var votes: [UInt64: Bool] = [:]
    let maxInflight: Int

    init(maxInflight: Int) { self.maxInflight = maxInflight }

    mutating func set(config: TrackerConfig, progress: [UInt64: Progress]) {
        self.config = config
        self.progress = progress
        ids = progress.keys.sorted()
    }

    var isSingleton: Bool { config.voters.incoming.count == 1 && !config.voters.isJoint }

    /// The highest index acknowledged by a quorum of voters.
    func committed() -> UInt64 {
        config.voters.committedIndex { progress[$0]?.match }
    }

    /// Whether a quorum of voters was heard from since the last check.
    func quorumActive() -> Bool {
        var active: [UInt64: Bool] = [:]
        for id in ids {
            guard let p = progress[id], !p.isLearner else { continue }
            active[id] = p.recentActive
        }
        return config.voters.voteResult(active) == .won
    }

    mutating func resetVotes() { votes = [:] }

    /// Records `id`'s vote unless it already voted.
    mutating func recordVote(_ id: UInt64, _ granted: Bool) {
        if votes[id] == nil { votes[id] = granted }
    }

    func tallyVotes() -> (granted: Int, rejected: Int, result: VoteResult) {
        var granted = 0, rejected = 0
        for (id, p) in progress where !p.isLearner {
            guard let v = votes[id] else { continue }
            if v { granted += 1 } else { rejected += 1 }
        }
        return (granted, rejected, config.voters.voteResult(votes))
    }
}
