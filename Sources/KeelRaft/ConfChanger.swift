/// Applies membership changes to a configuration and its progress map, refusing changes that
/// would break the configuration's invariants. Pure: works on copies and returns new ones.
struct ConfChanger {
    let config: TrackerConfig
    let progress: [UInt64: Progress]
    let maxInflight: Int
    /// The leader's last index: new members start probing from here.
    let lastIndex: UInt64

    typealias Result = (config: TrackerConfig, progress: [UInt64: Progress])

    private func fail(_ why: String) -> RaftError { .invalidConfChange(why) }

    /// Enters a joint configuration: the current voters become the outgoing half and the
    /// changes apply to the incoming half.
    func enterJoint(autoLeave: Bool, _ changes: [ConfChangeSingle]) throws(RaftError) -> Result {
        var (cfg, prs) = try checkedCopy()
        if cfg.voters.isJoint { throw fail("config is already joint") }
        if cfg.voters.incoming.isEmpty { throw fail("can't make a zero-voter config joint") }
        cfg.voters.outgoing = cfg.voters.incoming
        try apply(&cfg, &prs, changes)
        cfg.autoLeave = autoLeave
        try checkInvariants(cfg, prs)
        return (cfg, prs)
    }

    /// Leaves a joint configuration: the outgoing half is dropped, demoted voters become learners.
    func leaveJoint() throws(RaftError) -> Result {
        var (cfg, prs) = try checkedCopy()
        if !cfg.voters.isJoint { throw fail("can't leave a non-joint config") }
        for id in cfg.learnersNext.ids {
            cfg.learners.insert(id)
            prs[id]?.isLearner = true
        }
        cfg.learnersNext = MajorityConfig()
        for id in cfg.voters.outgoing.ids where !cfg.voters.incoming.contains(id) && !cfg.learners.contains(id) {
            prs[id] = nil
        }
        cfg.voters.outgoing = MajorityConfig()
        cfg.autoLeave = false
        try checkInvariants(cfg, prs)
        return (cfg, prs)
    }

    /// Applies changes that alter at most one voter, without a joint configuration.
    func simple(_ changes: [ConfChangeSingle]) throws(RaftError) -> Result {
        var (cfg, prs) = try checkedCopy()
        if cfg.voters.isJoint { throw fail("can't apply simple config change in joint config") }
        try apply(&cfg, &prs, changes)
        let before = Set(config.voters.incoming.ids), after = Set(cfg.voters.incoming.ids)
        if before.symmetricDifference(after).count > 1 { throw fail("more than one voter changed without entering joint config") }
        try checkInvariants(cfg, prs)
        return (cfg, prs)
    }

    private func apply(_ cfg: inout TrackerConfig, _ prs: inout [UInt64: Progress], _ changes: [ConfChangeSingle]) throws(RaftError) {
        for c in changes where c.nodeID != 0 {
            switch c.type {
            case .addNode: makeVoter(&cfg, &prs, c.nodeID)
            case .addLearnerNode: makeLearner(&cfg, &prs, c.nodeID)
            case .removeNode: remove(&cfg, &prs, c.nodeID)
            case .updateNode: break
            }
        }
        if cfg.voters.incoming.isEmpty { throw fail("removed all voters") }
    }

    private func makeVoter(_ cfg: inout TrackerConfig, _ prs: inout [UInt64: Progress], _ id: UInt64) {
        guard prs[id] != nil else {
            initProgress(&cfg, &prs, id, isLearner: false)
            return
        }
        prs[id]?.isLearner = false
        cfg.learners.remove(id)
        cfg.learnersNext.remove(id)
        cfg.voters.incoming.insert(id)
    }

    private func makeLearner(_ cfg: inout TrackerConfig, _ prs: inout [UInt64: Progress], _ id: UInt64) {
        guard let p = prs[id] else {
            initProgress(&cfg, &prs, id, isLearner: true)
            return
        }
        if p.isLearner { return }
        remove(&cfg, &prs, id)
        prs[id] = p
        if cfg.voters.outgoing.contains(id) {
            // Still a voter of the outgoing half: a learner once the joint config is left.
            cfg.learnersNext.insert(id)
        } else {
            prs[id]?.isLearner = true
            cfg.learners.insert(id)
        }
    }

    private func remove(_ cfg: inout TrackerConfig, _ prs: inout [UInt64: Progress], _ id: UInt64) {
        guard prs[id] != nil else { return }
        cfg.voters.incoming.remove(id)
        cfg.learners.remove(id)
        cfg.learnersNext.remove(id)
        // A voter of the outgoing half keeps its progress until the joint config is left.
        if !cfg.voters.outgoing.contains(id) { prs[id] = nil }
    }

    private func initProgress(_ cfg: inout TrackerConfig, _ prs: inout [UInt64: Progress], _ id: UInt64, isLearner: Bool) {
        if isLearner { cfg.learners.insert(id) } else { cfg.voters.incoming.insert(id) }
        // Starts probing at the last index (etcd does the same); counted as active so a
        // leader that just added it does not step down at the next check-quorum.
        let p = Progress(next: max(lastIndex, 1), maxInflight: maxInflight, isLearner: isLearner)
        p.recentActive = true
        prs[id] = p
    }

    private func checkedCopy() throws(RaftError) -> Result {
        try checkInvariants(config, progress)
        return (config, progress.mapValues { $0.clone() })
    }

    private func checkInvariants(_ cfg: TrackerConfig, _ prs: [UInt64: Progress]) throws(RaftError) {
        for id in cfg.voters.ids + cfg.learners.ids + cfg.learnersNext.ids where prs[id] == nil {
            throw fail("no progress for \(id)")
        }
        for id in cfg.learnersNext.ids {
            if !cfg.voters.outgoing.contains(id) { throw fail("\(id) is in LearnersNext, but not Voters[1]") }
            if prs[id]?.isLearner == true { throw fail("\(id) is in LearnersNext, but is already marked as learner") }
        }
        for id in cfg.learners.ids {
            if cfg.voters.outgoing.contains(id) { throw fail("\(id) is in Learners and Voters[1]") }
            if cfg.voters.incoming.contains(id) { throw fail("\(id) is in Learners and Voters[0]") }
            if prs[id]?.isLearner != true { throw fail("\(id) is in Learners, but is not marked as learner") }
        }
        if !cfg.voters.isJoint {
            if !cfg.learnersNext.isEmpty { throw fail("LearnersNext must be empty when not joint") }
            if cfg.autoLeave { throw fail("AutoLeave must be false when not joint") }
        }
    }

    /// Builds the configuration a `ConfState` describes, from an empty one, the way it was
    /// reached: outgoing voters first, then a joint step to the incoming side if joint.
    static func restore(_ cs: ConfState, maxInflight: Int, lastIndex: UInt64) throws(RaftError) -> Result {
        var outgoing: [ConfChangeSingle] = []
        var incoming: [ConfChangeSingle] = []
        for id in cs.votersOutgoing { outgoing.append(ConfChangeSingle(.addNode, id)) }
        for id in cs.votersOutgoing { incoming.append(ConfChangeSingle(.removeNode, id)) }
        for id in cs.voters { incoming.append(ConfChangeSingle(.addNode, id)) }
        for id in cs.learners { incoming.append(ConfChangeSingle(.addLearnerNode, id)) }
        for id in cs.learnersNext { incoming.append(ConfChangeSingle(.addLearnerNode, id)) }
        var state: Result = (TrackerConfig(), [:])
        func changer() -> ConfChanger { ConfChanger(config: state.config, progress: state.progress, maxInflight: maxInflight, lastIndex: lastIndex) }
        if outgoing.isEmpty {
            for c in incoming { state = try changer().simple([c]) }
        } else {
            for c in outgoing { state = try changer().simple([c]) }
            state = try changer().enterJoint(autoLeave: cs.autoLeave, incoming)
        }
        return state
    }
}
