/// How a node is set up (etcd's `raft.Config`).
public struct RaftConfig: Sendable {
    public var id: UInt64
    /// Ticks without hearing from a leader before campaigning (randomised in [t, 2t)).
    public var electionTicks = 10
    public var heartbeatTicks = 1
    /// Bytes of entries per append message, by etcd's encoded size (etcd server: 1 MiB).
    public var maxSizePerMessage: UInt64 = 1 << 20
    /// Bytes of committed entries per `Ready` (0: `maxSizePerMessage`, as etcd).
    public var maxCommittedSizePerReady: UInt64 = 0
    /// Bytes of proposed entries not yet committed before further proposals are dropped
    /// (0: no limit). Bounds the leader's memory when followers cannot keep up.
    public var maxUncommittedEntriesSize: UInt64 = 0
    /// Appends in flight per follower in replicate state (etcd: 512).
    public var maxInflightMessages = 512
    /// The last applied index when restarting.
    public var applied: UInt64 = 0
    /// Seeds the randomised election timeout (deterministic tests).
    public var seed: UInt64
    /// Pre-vote (§9.6 of the Raft thesis): a node asks whether it could win before raising its
    /// term, so a partitioned node does not disrupt the cluster when it returns. etcd 3.4: off.
    public var preVote = false
    /// Check-quorum: a leader steps down when it has not heard from a quorum within an election
    /// timeout, and nodes that hear from a leader ignore vote requests for that long. etcd 3.4: on.
    public var checkQuorum = true
    public var readOnlyOption = ReadOnlyOption.safe
    /// Followers drop proposals instead of forwarding them to the leader.
    public var disableProposalForwarding = false
    /// A leader that applies its own removal (or demotion to learner) hands over to an
    /// up-to-date voter and steps down. etcd 3.4's raft keeps leading in that case (its own
    /// test script marks this as a known problem) and leaves it to the server to stop the
    /// member; Keel does it in Raft. Off reproduces etcd 3.4 message for message.
    public var stepDownWhenRemoved = true

    public init(id: UInt64, seed: UInt64 = 0) {
        self.id = id
        self.seed = seed == 0 ? id &* 0x9E37_79B9_7F4A_7C15 : seed
    }
}

/// Raft as a deterministic state machine: no clocks, threads, sockets or files. The caller
/// ticks it, steps messages into it, and collects the work it asks for through `RawNode`.
///
/// Behaviour follows etcd 3.4's raft message for message (the interaction scripts and the
/// side-by-side tests compare them): elections with pre-vote and check-quorum, replication with
/// probe / replicate / snapshot flow control, ReadIndex, leader transfer, membership changes
/// (single-step and joint), bounded uncommitted entries.
///
/// One owner drives it (RawNode is not thread-safe), so the hot stored properties opt out of
/// Swift's dynamic exclusivity checks (`@exclusivity(unchecked)`), which otherwise cost about a
/// quarter of the proposal path's CPU.
final class Raft {
    let id: UInt64
    let config: RaftConfig
    @exclusivity(unchecked) var term: UInt64 = 0
    @exclusivity(unchecked) var vote: UInt64 = 0
    @exclusivity(unchecked) var lead: UInt64 = 0
    @exclusivity(unchecked) var role = RaftRole.follower
    @exclusivity(unchecked) var isLearner = false
    let log: RaftLog
    @exclusivity(unchecked) var tracker: ProgressTracker
    @exclusivity(unchecked) var messages: [RaftMessage] = []
    /// Read states ready for the owner.
    @exclusivity(unchecked) var readStates: [ReadState] = []
    @exclusivity(unchecked) var readOnly: ReadOnlyQueue
    /// Read requests that arrived before this leader committed an entry of its term.
    @exclusivity(unchecked) var pendingReadIndexMessages: [RaftMessage] = []
    /// The leader a transfer is handing over to (0: none).
    @exclusivity(unchecked) var leadTransferee: UInt64 = 0
    /// The index of the last conf change proposed; no other may be proposed until it is applied.
    @exclusivity(unchecked) var pendingConfIndex: UInt64 = 0
    /// Bytes of entry payloads appended and not yet committed (leader only).
    @exclusivity(unchecked) var uncommittedSize: UInt64 = 0
    @exclusivity(unchecked) var electionElapsed = 0
    @exclusivity(unchecked) var heartbeatElapsed = 0
    @exclusivity(unchecked) var randomizedElectionTimeout = 0
    @exclusivity(unchecked) private var rng: UInt64
    private let maxUncommittedSize: UInt64

    init(config: RaftConfig, storage: any RaftStorage) throws(RaftError) {
        id = config.id
        self.config = config
        rng = config.seed
        maxUncommittedSize = config.maxUncommittedEntriesSize == 0 ? .max : config.maxUncommittedEntriesSize
        log = RaftLog(storage: storage, maxCommittedBytesPerReady: config.maxCommittedSizePerReady == 0 ? config.maxSizePerMessage : config.maxCommittedSizePerReady)
        tracker = ProgressTracker(maxInflight: config.maxInflightMessages)
        readOnly = ReadOnlyQueue(option: config.readOnlyOption)
        let (hs, cs) = storage.initialState()
        let restored = try ConfChanger.restore(cs, maxInflight: config.maxInflightMessages, lastIndex: log.lastIndex)
        let got = switchToConfig(restored.config, restored.progress)
        guard got.isEquivalent(to: cs) else { throw RaftError.corrupt("configuration \(cs) restored as \(got)") }
        if !hs.isEmpty {
            if hs.commit < log.committed || hs.commit > log.lastIndex {
                throw RaftError.corrupt("hard state commit \(hs.commit) is out of range [\(log.committed), \(log.lastIndex)]")
            }
            log.committed = hs.commit
            term = hs.term
            vote = hs.vote
        }
        if config.applied > 0 { try log.applied(to: config.applied) }
        becomeFollower(term: term, lead: 0)
    }

    var hardState: RaftHardState { RaftHardState(term: term, vote: vote, commit: log.committed) }
    var softState: SoftState { SoftState(lead: lead, role: role) }
    var isPromotable: Bool { tracker.progress[id].map { !$0.isLearner } ?? false }

    // MARK: Roles

    private func nextRandom() -> UInt64 {
        rng &+= 0x9E37_79B9_7F4A_7C15
        var z = rng
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = 0
        }
        lead = 0
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = config.electionTicks + Int(nextRandom() % UInt64(max(config.electionTicks, 1)))
        leadTransferee = 0
        tracker.resetVotes()
        let last = log.lastIndex
        for pid in tracker.ids {
            guard let old = tracker.progress[pid] else { continue }
            let p = Progress(next: last + 1, maxInflight: config.maxInflightMessages, isLearner: old.isLearner)
            p.inflights = old.inflights
            p.inflights.reset()
            if pid == id { p.match = last }
            tracker.progress[pid] = p
        }
        pendingConfIndex = 0
        uncommittedSize = 0
        readOnly = ReadOnlyQueue(option: config.readOnlyOption)
    }

    func becomeFollower(term: UInt64, lead: UInt64) {
        reset(term: term)
        self.lead = lead
        role = .follower
    }

    func becomeCandidate() {
        precondition(role != .leader, "a leader cannot become a candidate directly")
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    func becomePreCandidate() {
        precondition(role != .leader, "a leader cannot become a pre-candidate")
        // The term and vote stay as they are; only the votes are counted.
        tracker.resetVotes()
        lead = 0
        role = .preCandidate
    }

    func becomeLeader() {
        precondition(role != .follower, "a follower cannot become leader directly")
        reset(term: term)
        lead = id
        role = .leader
        // The leader's own progress is always replicating.
        tracker.progress[id]?.becomeReplicate()
        // Conf changes in the uncommitted tail may be pending: none may be proposed until the
        // leader has applied everything up to here.
        pendingConfIndex = log.lastIndex
        // An empty entry of the new term, so entries of earlier terms get committed (§5.4.2).
        _ = appendEntries(RaftEntries(RaftEntry(term: 0, index: 0)))
        // The empty entry does not count against the uncommitted size.
    }

    // MARK: Ticks

    func tick() {
        if role == .leader { tickHeartbeat() } else { tickElection() }
    }

    private func tickElection() {
        electionElapsed += 1
        if isPromotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            try? step(RaftMessage(type: .hup, from: id))
        }
    }

    private func tickHeartbeat() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTicks {
            electionElapsed = 0
            if config.checkQuorum { try? step(RaftMessage(type: .checkQuorum, from: id)) }
            // A transfer that did not finish within an election timeout is abandoned.
            if role == .leader && leadTransferee != 0 { leadTransferee = 0 }
        }
        guard role == .leader else { return }
        if heartbeatElapsed >= config.heartbeatTicks {
            heartbeatElapsed = 0
            try? step(RaftMessage(type: .beat, from: id))
        }
    }

    // MARK: Sending

    /// Stamps `from` and (except for proposals and read requests, which travel with term 0,
    /// and votes, which carry their own) the current term.
    private func send(_ m: RaftMessage) {
        var m = m
        m.from = id
        switch m.type {
        case .vote, .voteResp, .preVote, .preVoteResp:
            precondition(m.term != 0, "term must be set when sending \(m.type.name)")
        case .prop, .readIndex:
            break
        default:
            m.term = term
        }
        messages.append(m)
    }

    /// Sends an append (or a snapshot when the follower needs entries the log compacted away).
    /// Returns false when nothing was sent: the follower is paused, or there was nothing to
    /// send and `sendIfEmpty` is false.
    @discardableResult
    private func maybeSendAppend(to peer: UInt64, sendIfEmpty: Bool = true) -> Bool {
        guard let p = tracker.progress[peer], !p.isPaused else { return false }
        var m = RaftMessage(type: .app, to: peer)
        var prevTerm: UInt64 = 0
        var entries = RaftEntries()
        var failed = false
        do {
            prevTerm = try log.term(p.next - 1)
            entries = try log.entries(from: p.next, maxBytes: config.maxSizePerMessage)
        } catch {
            failed = true
        }
        if entries.isEmpty && !sendIfEmpty { return false }
        if failed {
            // The entries are gone: send the snapshot, if the follower is listening.
            guard p.recentActive else { return false }
            // No snapshot yet (or one being made): try again later (etcd 3.4 panics on an empty one).
            guard let snap = try? log.snapshot(), !snap.isEmpty else { return false }
            m.type = .snap
            m.snapshot = snap
            p.becomeSnapshot(snap.index)
        } else {
            m.index = p.next - 1
            m.logTerm = prevTerm
            m.entries = entries
            m.commit = log.committed
            if let last = entries.last {
                switch p.state {
                case .replicate:
                    p.next = last.index + 1
                    p.inflights.add(last.index)
                case .probe:
                    p.probeSent = true
                case .snapshot:
                    preconditionFailure("sending an append to \(peer) in snapshot state")
                }
            }
        }
        send(m)
        return true
    }

    private func sendHeartbeat(to peer: UInt64, context: [UInt8]) {
        var m = RaftMessage(type: .heartbeat, to: peer)
        m.commit = min(tracker.progress[peer]?.match ?? 0, log.committed)
        m.context = context
        send(m)
    }

    private func broadcastAppend() {
        for pid in tracker.ids where pid != id { maybeSendAppend(to: pid) }
    }

    private func broadcastHeartbeat(context: [UInt8]? = nil) {
        let ctx = context ?? readOnly.lastPendingContext ?? []
        for pid in tracker.ids where pid != id { sendHeartbeat(to: pid, context: ctx) }
    }

    // MARK: Elections

    enum CampaignType { case preElection, election, transfer }

    /// Starts a pre-election, an election, or a transfer election (which ignores leases).
    func campaign(_ type: CampaignType) {
        let voteType: MessageType
        let voteTerm: UInt64
        if type == .preElection {
            becomePreCandidate()
            voteType = .preVote
            voteTerm = term + 1
        } else {
            becomeCandidate()
            voteType = .vote
            voteTerm = term
        }
        if poll(id, voteType == .vote ? .voteResp : .preVoteResp, granted: true) == .won {
            // A single-voter cluster wins at once.
            if type == .preElection { campaign(.election) } else { becomeLeader() }
            return
        }
        for pid in tracker.config.voters.ids where pid != id {
            var m = RaftMessage(type: voteType, to: pid, term: voteTerm)
            m.index = log.lastIndex
            m.logTerm = log.lastTerm
            if type == .transfer { m.context = Raft.transferContext }
            send(m)
        }
    }

    /// The context marking a vote request of a leader transfer (etcd's `CampaignTransfer`).
    static let transferContext: [UInt8] = Array("CampaignTransfer".utf8)

    private func poll(_ from: UInt64, _ type: MessageType, granted: Bool) -> VoteResult {
        tracker.recordVote(from, granted)
        return tracker.tallyVotes().result
    }

    // MARK: Stepping

    /// Handles one message. Throws `.proposalDropped` for a proposal that cannot be taken.
    func step(_ m: RaftMessage) throws(RaftError) {
        // Term bookkeeping (§5.1). Term 0 marks a local message (or a forwarded proposal or
        // read request).
        if m.term != 0 && m.term > term {
            if m.type == .vote || m.type == .preVote {
                // Check-quorum's lease: a node that heard from a leader within the election
                // timeout ignores vote requests (a partitioned node's returning campaign),
                // unless the leader itself asked for the election (a transfer).
                let force = m.context == Raft.transferContext
                let inLease = config.checkQuorum && lead != 0 && electionElapsed < config.electionTicks
                if !force && inLease { return }
            }
            if m.type == .preVote || (m.type == .preVoteResp && !m.reject) {
                // Never change the term for a pre-vote, nor for a granted pre-vote response
                // (its term is the one the pre-candidate would move to).
            } else if m.type == .app || m.type == .heartbeat || m.type == .snap {
                becomeFollower(term: m.term, lead: m.from)
            } else {
                becomeFollower(term: m.term, lead: 0)
            }
        } else if m.term != 0 && m.term < term {
            if (config.checkQuorum || config.preVote) && (m.type == .heartbeat || m.type == .app) {
                // A leader cut off by a partition learns the current term from the answer.
                send(RaftMessage(type: .appResp, to: m.from))
            } else if m.type == .preVote {
                var reject = RaftMessage(type: .preVoteResp, to: m.from, term: term)
                reject.reject = true
                send(reject)
            }
            return
        }

        switch m.type {
        case .hup:
            guard role != .leader, isPromotable else { return }
            // A node with unapplied conf changes must not campaign: it would count votes
            // under a configuration that is about to change.
            // Entries below the first index are covered by a snapshot not yet applied, whose
            // configuration is already in force (etcd 3.4 treats that case as fatal).
            let firstUnapplied = max(log.applied + 1, log.firstIndex)
            if log.committed + 1 > firstUnapplied {
                let unapplied = try log.slice(firstUnapplied, log.committed + 1, maxBytes: .max)
                if unapplied.contains(where: { $0.type == .confChange }) { return }
            }
            campaign(config.preVote ? .preElection : .election)
        case .vote, .preVote:
            let canVote = vote == m.from || (vote == 0 && lead == 0) || (m.type == .preVote && m.term > term)
            if canVote && log.isUpToDate(index: m.index, term: m.logTerm) {
                // A granted response carries the term the candidate asked for.
                send(RaftMessage(type: m.type == .vote ? .voteResp : .preVoteResp, to: m.from, term: m.term))
                if m.type == .vote {
                    electionElapsed = 0
                    vote = m.from
                }
            } else {
                var reject = RaftMessage(type: m.type == .vote ? .voteResp : .preVoteResp, to: m.from, term: term)
                reject.reject = true
                send(reject)
            }
        default:
            switch role {
            case .leader: try stepLeader(m)
            case .candidate, .preCandidate: try stepCandidate(m)
            case .follower: try stepFollower(m)
            }
        }
    }

    private func stepLeader(_ m: RaftMessage) throws(RaftError) {
        switch m.type {
        case .beat:
            broadcastHeartbeat()
            return
        case .checkQuorum:
            tracker.progress[id]?.recentActive = true
            if !tracker.quorumActive() { becomeFollower(term: term, lead: 0) }
            for pid in tracker.ids where pid != id { tracker.progress[pid]?.recentActive = false }
            return
        case .prop:
            if m.entries.isEmpty { throw RaftError.corrupt("empty proposal") }
            // A leader removed from the configuration, or handing over, takes no proposals.
            if tracker.progress[id] == nil || leadTransferee != 0 { throw RaftError.proposalDropped }
            var entries = m.entries
            for i in entries.indices where entries[i].type != .normal {
                guard let cc = try? ConfChange(entry: entries[i]) else { throw RaftError.corrupt("proposed conf change at position \(i) does not decode") }
                let alreadyPending = pendingConfIndex > log.applied
                let alreadyJoint = tracker.config.voters.isJoint
                let wantsLeaveJoint = cc.changes.isEmpty
                if alreadyPending || (alreadyJoint && !wantsLeaveJoint) || (!alreadyJoint && wantsLeaveJoint) {
                    // Refused: replaced by an empty normal entry so indexes stay as proposed.
                    entries[i] = RaftEntry(term: 0, index: 0)
                } else {
                    pendingConfIndex = log.lastIndex + UInt64(i) + 1
                }
            }
            if !appendEntries(entries) { throw RaftError.proposalDropped }
            broadcastAppend()
            return
        case .readIndex:
            if tracker.isSingleton {
                answerRead(m, index: log.committed)
                return
            }
            // Only once this leader committed an entry of its own term does it know the commit
            // index is current: until then, requests wait.
            if log.termOrZero(log.committed) != term {
                pendingReadIndexMessages.append(m)
                return
            }
            startReadIndex(m)
            return
        default:
            break
        }

        guard let p = tracker.progress[m.from] else { return }
        switch m.type {
        case .appResp:
            p.recentActive = true
            if m.reject {
                if p.maybeDecrease(rejected: m.index, last: m.rejectHint) {
                    if p.state == .replicate { p.becomeProbe() }
                    maybeSendAppend(to: m.from)
                } else {
                }
                return
            }
            // A follower cannot hold entries this leader never had (the leader's log only
            // grows in its term): such an answer comes from a broken peer.
            if m.index > log.lastIndex {
                throw RaftError.corrupt("MsgAppResp from \(m.from) acknowledges index \(m.index) beyond the leader's last index \(log.lastIndex)")
            }
            let wasPaused = p.isPaused
            guard p.maybeUpdate(m.index) else {
                return
            }
            switch p.state {
            case .probe:
                p.becomeReplicate()
            case .snapshot where p.match >= p.pendingSnapshot:
                // The snapshot (or later entries) reached the follower: replicate from there.
                p.becomeProbe()
                p.becomeReplicate()
            case .replicate:
                p.inflights.freeLE(m.index)
            case .snapshot:
                break
            }
            if maybeCommit() {
                releasePendingReadIndexMessages()
                broadcastAppend()
            } else if wasPaused {
                // The follower was waiting on this answer: send what it still misses.
                maybeSendAppend(to: m.from)
            }
            // Empty the follower's share of the log within the inflight window.
            while maybeSendAppend(to: m.from, sendIfEmpty: false) {}
            if m.from == leadTransferee, tracker.progress[m.from]?.match == log.lastIndex {
                send(RaftMessage(type: .timeoutNow, to: m.from))
            }
        case .heartbeatResp:
            p.recentActive = true
            p.probeSent = false
            if p.state == .replicate && p.inflights.isFull { p.inflights.freeFirstOne() }
            if p.match < log.lastIndex { maybeSendAppend(to: m.from) }
            guard readOnly.option == .safe, !m.context.isEmpty else { return }
            guard let acks = readOnly.recordAck(m.from, context: m.context), tracker.config.voters.voteResult(acks) == .won else { return }
            for done in readOnly.advance(context: m.context) { answerRead(done.request, index: done.index) }
        case .snapStatus:
            guard p.state == .snapshot else { return }
            if m.reject { p.pendingSnapshot = 0 }
            p.becomeProbe()
            // Wait for an answer (or a heartbeat) before the next probe.
            p.probeSent = true
        case .unreachable:
            // Probe again rather than streaming into the void.
            if p.state == .replicate { p.becomeProbe() }
        case .transferLeader:
            if p.isLearner { return }
            let transferee = m.from
            if leadTransferee != 0 {
                if leadTransferee == transferee { return }
                leadTransferee = 0
            }
            if transferee == id { return }
            // The transfer must finish within an election timeout.
            electionElapsed = 0
            leadTransferee = transferee
            if p.match == log.lastIndex {
                send(RaftMessage(type: .timeoutNow, to: transferee))
            } else {
                maybeSendAppend(to: transferee)
            }
        default:
            break
        }
    }

    private func stepCandidate(_ m: RaftMessage) throws(RaftError) {
        let myResponse: MessageType = role == .preCandidate ? .preVoteResp : .voteResp
        switch m.type {
        case .prop:
            throw RaftError.proposalDropped
        case .app:
            becomeFollower(term: m.term, lead: m.from)
            try handleAppend(m)
        case .heartbeat:
            becomeFollower(term: m.term, lead: m.from)
            try handleHeartbeat(m)
        case .snap:
            becomeFollower(term: m.term, lead: m.from)
            try handleSnapshot(m)
        case myResponse:
            switch poll(m.from, m.type, granted: !m.reject) {
            case .won:
                // Deliberate difference from etcd 3.4: a node removed by a conf change it
                // applied while campaigning does not go on to lead a configuration it is not
                // in; etcd 3.4 crashes here (nil progress in becomeLeader). A node demoted to
                // learner meanwhile does win, as in etcd (it leads until it hands over).
                if tracker.progress[id] == nil {
                    becomeFollower(term: term, lead: 0)
                    return
                }
                if role == .preCandidate {
                    campaign(.election)
                } else {
                    becomeLeader()
                    broadcastAppend()
                }
            case .lost:
                // A pre-candidate that lost goes back to its term as follower.
                becomeFollower(term: term, lead: 0)
            case .pending:
                break
            }
        default:
            break
        }
    }

    private func stepFollower(_ m: RaftMessage) throws(RaftError) {
        switch m.type {
        case .prop:
            if lead == 0 || config.disableProposalForwarding { throw RaftError.proposalDropped }
            var forward = m
            forward.to = lead
            send(forward)
        case .app:
            electionElapsed = 0
            lead = m.from
            try handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            lead = m.from
            try handleHeartbeat(m)
        case .snap:
            electionElapsed = 0
            lead = m.from
            try handleSnapshot(m)
        case .transferLeader:
            guard lead != 0 else { return }
            var forward = m
            forward.to = lead
            forward.term = 0
            send(forward)
        case .timeoutNow:
            // The leader hands over: campaign at once, past any lease.
            if isPromotable { campaign(.transfer) }
        case .readIndex:
            guard lead != 0 else { return }
            var forward = m
            forward.to = lead
            send(forward)
        case .readIndexResp:
            guard m.entries.count == 1 else { return }
            readStates.append(ReadState(index: m.index, context: m.entries[0].data))
        default:
            break
        }
    }

    // MARK: Replication

    /// A normal proposal on the leader: exactly what stepping a one-entry `MsgProp` does,
    /// without building the message.
    func proposeAsLeader(_ data: [UInt8]) throws(RaftError) {
        if tracker.progress[id] == nil || leadTransferee != 0 { throw RaftError.proposalDropped }
        guard admitUncommitted(UInt64(data.count)) else { throw RaftError.proposalDropped }
        let li = try log.appendOne(RaftEntry(term: term, index: log.lastIndex + 1, data: data))
        _ = tracker.progress[id]?.maybeUpdate(li)
        _ = maybeCommit()
        broadcastAppend()
    }

    /// Appends entries stamped with this term; false when the uncommitted-size limit refuses them.
    private func appendEntries(_ entries: RaftEntries) -> Bool {
        var es = entries
        let last = log.lastIndex
        var size: UInt64 = 0
        for i in es.indices {
            es[i].term = term
            es[i].index = last + 1 + UInt64(i)
            size += UInt64(es[i].data.count)
        }
        guard admitUncommitted(size) else { return false }
        let li = (try? log.append(es)) ?? log.lastIndex
        // The leader counts its own entries at once.
        _ = tracker.progress[id]?.maybeUpdate(li)
        _ = maybeCommit()
        return true
    }

    /// Counts `size` payload bytes against the uncommitted-entries limit; false when they do
    /// not fit. The limit never refuses the first uncommitted bytes, so a large entry still goes in.
    private func admitUncommitted(_ size: UInt64) -> Bool {
        if uncommittedSize > 0 && uncommittedSize + size > maxUncommittedSize { return false }
        uncommittedSize += size
        return true
    }

    /// Commits the highest index a quorum has, if it is of the current term.
    @discardableResult
    private func maybeCommit() -> Bool {
        log.maybeCommit(index: tracker.committed(), term: term)
    }

    /// Releases uncommitted-size credit for entries the application applied.
    func reduceUncommittedSize(_ entries: RaftEntries) {
        guard uncommittedSize > 0 else { return }
        var s: UInt64 = 0
        for e in entries { s += UInt64(e.data.count) }
        uncommittedSize = s > uncommittedSize ? 0 : uncommittedSize - s
    }

    private func handleAppend(_ m: RaftMessage) throws(RaftError) {
        if m.index < log.committed {
            var r = RaftMessage(type: .appResp, to: m.from)
            r.index = log.committed
            send(r)
            return
        }
        var r = RaftMessage(type: .appResp, to: m.from)
        if let last = try log.maybeAppend(index: m.index, logTerm: m.logTerm, commit: m.commit, entries: m.entries) {
            r.index = last
        } else {
            r.index = m.index
            r.reject = true
            r.rejectHint = log.lastIndex
        }
        send(r)
    }

    private func handleHeartbeat(_ m: RaftMessage) throws(RaftError) {
        // A heartbeat's commit is at most what this follower matched: never beyond its log.
        try log.commit(to: min(m.commit, log.lastIndex))
        var r = RaftMessage(type: .heartbeatResp, to: m.from)
        r.context = m.context
        send(r)
    }

    private func handleSnapshot(_ m: RaftMessage) throws(RaftError) {
        guard let snap = m.snapshot else { throw RaftError.corrupt("MsgSnap from \(m.from) carries no snapshot") }
        var r = RaftMessage(type: .appResp, to: m.from)
        r.index = try restore(snap) ? log.lastIndex : log.committed
        send(r)
    }

    /// Installs a leader's snapshot; false when it is not newer than what is committed.
    func restore(_ s: RaftSnapshot) throws(RaftError) -> Bool {
        if s.index <= log.committed { return false }
        if role != .follower {
            // Only a follower installs snapshots; this should not happen (a leader's term).
            becomeFollower(term: term + 1, lead: 0)
            return false
        }
        let cs = s.confState
        // Deliberate difference from etcd 3.4, which looks only at voters and learners: a voter
        // of the outgoing half of a joint configuration is a member too, and must be able to
        // catch up (later etcd versions check it as well).
        guard cs.voters.contains(id) || cs.learners.contains(id) || cs.votersOutgoing.contains(id) else {
            // Not a member of the snapshot's configuration: ignore it.
            return false
        }
        if log.matchTerm(s.index, s.term) {
            // The log already has the snapshot's entry: fast-forward the commit index.
            try log.commit(to: s.index)
            return false
        }
        // Rebuild the snapshot's configuration before changing anything: a configuration that
        // cannot be built (a node both voter and learner, no voters) is refused as a whole.
        let restored = try ConfChanger.restore(cs, maxInflight: config.maxInflightMessages, lastIndex: s.index)
        guard restored.config.confState.isEquivalent(to: cs) else {
            throw RaftError.corrupt("snapshot \(s.index) from the leader has an inconsistent configuration \(cs)")
        }
        log.restore(s)
        tracker = ProgressTracker(maxInflight: config.maxInflightMessages)
        switchToConfig(restored.config, restored.progress)
        if let p = tracker.progress[id] { _ = p.maybeUpdate(p.next &- 1) }
        return true
    }

    // MARK: Membership

    /// Applies a committed conf change; returns the resulting configuration.
    func applyConfChange(_ cc: ConfChange) throws(RaftError) -> ConfState {
        let changer = ConfChanger(config: tracker.config, progress: tracker.progress, maxInflight: config.maxInflightMessages, lastIndex: log.lastIndex)
        let result: ConfChanger.Result
        if cc.leavesJoint {
            result = try changer.leaveJoint()
        } else if case let (autoLeave, true) = cc.entersJoint {
            result = try changer.enterJoint(autoLeave: autoLeave, cc.changes)
        } else {
            result = try changer.simple(cc.changes)
        }
        return switchToConfig(result.config, result.progress)
    }

    @discardableResult
    func switchToConfig(_ cfg: TrackerConfig, _ progress: [UInt64: Progress]) -> ConfState {
        tracker.set(config: cfg, progress: progress)
        let cs = cfg.confState
        let mine = tracker.progress[id]
        isLearner = mine?.isLearner ?? false
        if (mine == nil || isLearner) && role == .leader {
            if config.stepDownWhenRemoved {
                // The change is applied, so it is committed: hand over to the most up-to-date
                // voter at once (it campaigns without waiting for a timeout) and step down.
                let last = log.lastIndex
                if let heir = cfg.voters.incoming.ids.filter({ $0 != id && tracker.progress[$0]?.match == last }).first {
                    send(RaftMessage(type: .timeoutNow, to: heir))
                }
                becomeFollower(term: term, lead: 0)
            }
            // etcd 3.4 keeps leading (without counting itself), heartbeating followers that
            // then never elect a new leader, while dropping every proposal.
            return cs
        }
        guard role == .leader, !cs.voters.isEmpty else { return cs }
        // The quorum changed: something may commit now, and new members need appends.
        if maybeCommit() {
            broadcastAppend()
        } else {
            for pid in tracker.ids where pid != id { maybeSendAppend(to: pid, sendIfEmpty: false) }
        }
        if leadTransferee != 0 && tracker.progress[leadTransferee] == nil { leadTransferee = 0 }
        return cs
    }

    /// After the application applied up to `index`: a leader in an auto-leave joint
    /// configuration proposes leaving it once the change is applied.
    func appliedAdvanced(to index: UInt64) {
        guard tracker.config.autoLeave, index >= pendingConfIndex, role == .leader else { return }
        // Deliberate difference from etcd 3.4, which leaves `pendingConfIndex` behind when this
        // append succeeds: a second leave-joint proposal is then accepted and fails when
        // applied. Keel marks this entry pending, so such a proposal is refused (replaced by an
        // empty normal entry) like any conf change proposed while one is pending.
        let leave = ConfChange(changes: [])
        _ = appendEntries([RaftEntry(term: 0, index: 0, type: .confChangeV2, data: leave.encoded)])
        pendingConfIndex = log.lastIndex
    }

    // MARK: Reads

    private func startReadIndex(_ m: RaftMessage) {
        switch readOnly.option {
        case .safe:
            let ctx = m.entries.first?.data ?? []
            readOnly.add(index: log.committed, request: m)
            _ = readOnly.recordAck(id, context: ctx)
            broadcastHeartbeat(context: ctx)
        case .leaseBased:
            answerRead(m, index: log.committed)
        }
    }

    private func releasePendingReadIndexMessages() {
        guard log.termOrZero(log.committed) == term else { return }
        let waiting = pendingReadIndexMessages
        pendingReadIndexMessages = []
        for m in waiting { startReadIndex(m) }
    }

    private func answerRead(_ request: RaftMessage, index: UInt64) {
        let ctx = request.entries.first?.data ?? []
        if request.from == 0 || request.from == id {
            readStates.append(ReadState(index: index, context: ctx))
        } else {
            var r = RaftMessage(type: .readIndexResp, to: request.from)
            r.index = index
            r.entries = request.entries
            send(r)
        }
    }
}
