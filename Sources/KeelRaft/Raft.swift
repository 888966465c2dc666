/// How a node is set up (etcd's `raft.Config`, the parts built so far).
public struct RaftConfig: Sendable {
    public var id: UInt64
    /// Ticks without hearing from a leader before campaigning (randomised in [t, 2t)).
    public var electionTicks = 10
    public var heartbeatTicks = 1
    /// Bytes of entries per append message (etcd: 1 MiB).
    public var maxSizePerMessage = 1 << 20
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

    public init(id: UInt64, seed: UInt64 = 0) {
        self.id = id
        self.seed = seed == 0 ? id &* 0x9E37_79B9_7F4A_7C15 : seed
    }
}

/// Raft as a deterministic state machine: no clocks, threads, sockets or files. The caller
/// ticks it, steps messages into it, and collects the work it asks for through `RawNode`.
///
/// Built so far: elections (randomised timeouts, votes persisted before replies), log
/// replication with probe/replicate flow control and fast back-off on rejection, heartbeats
/// carrying min(match, commit), commitment of current-term entries by counting (§5.4.2), an
/// empty entry on becoming leader, proposal forwarding and dropping, pre-vote, check-quorum,
/// ReadIndex (ReadOnlySafe). Not yet: leader transfer, membership changes, snapshots.
final class Raft {
    let id: UInt64
    let config: RaftConfig
    var term: UInt64 = 0
    var vote: UInt64 = 0
    var lead: UInt64 = 0
    var role = RaftRole.follower
    let log: RaftLog
    var voters: [UInt64]
    var progress: [UInt64: Progress] = [:]
    var votes: [UInt64: Bool] = [:]
    var messages: [RaftMessage] = []
    /// Read states ready for the owner.
    var readStates: [ReadState] = []
    /// Pending read-index requests (ReadOnlySafe), oldest first: the commit index when asked,
    /// the request, and who acknowledged the heartbeat round carrying its context.
    var pendingReads: [(index: UInt64, request: RaftMessage, acks: Set<UInt64>)] = []
    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    private var rng: UInt64

    init(config: RaftConfig, storage: any RaftStorage) {
        id = config.id
        self.config = config
        rng = config.seed
        log = RaftLog(storage: storage, maxSizePerMessage: config.maxSizePerMessage)
        let (hs, voters) = storage.initialState()
        self.voters = voters.sorted()
        if !hs.isEmpty {
            term = hs.term
            vote = hs.vote
            log.commit(to: hs.commit)
        }
        if config.applied > 0 { log.applied(to: config.applied) }
        becomeFollower(term: term, lead: 0)
    }

    var hardState: RaftHardState { RaftHardState(term: term, vote: vote, commit: log.committed) }
    var quorum: Int { voters.count / 2 + 1 }
    var isPromotable: Bool { voters.contains(id) }

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
        randomizedElectionTimeout = config.electionTicks + Int(nextRandom() % UInt64(config.electionTicks))
        votes = [:]
        pendingReads = []
        progress = [:]
        for v in voters {
            var p = Progress(next: log.lastIndex + 1)
            if v == id { p.match = log.lastIndex }
            progress[v] = p
        }
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
        votes = [:]
        role = .preCandidate
        lead = 0
    }

    func becomeLeader() {
        precondition(role != .follower, "a follower cannot become leader directly")
        reset(term: term)
        lead = id
        role = .leader
        // An empty entry of the new term, so entries of earlier terms get committed (§5.4.2).
        appendEntries([RaftEntry(term: term, index: 0)])
    }

    // MARK: Ticks

    func tick() {
        switch role {
        case .leader:
            heartbeatElapsed += 1
            electionElapsed += 1
            if electionElapsed >= config.electionTicks {
                electionElapsed = 0
                if config.checkQuorum { try? step(RaftMessage(type: .checkQuorum, from: id)) }
            }
            if heartbeatElapsed >= config.heartbeatTicks {
                heartbeatElapsed = 0
                try? step(RaftMessage(type: .beat, from: id))
            }
        case .follower, .preCandidate, .candidate:
            electionElapsed += 1
            if isPromotable && electionElapsed >= randomizedElectionTimeout {
                electionElapsed = 0
                try? step(RaftMessage(type: .hup, from: id))
            }
        }
    }

    // MARK: Messages

    private func send(_ m: RaftMessage) {
        var m = m
        m.from = id
        if m.type != .prop { m.term = term }
        messages.append(m)
    }

    /// Starts a pre-election (when pre-vote is on and `preElection`) or an election.
    func campaign(preElection: Bool) {
        let voteType: MessageType
        let voteTerm: UInt64
        if preElection {
            becomePreCandidate()
            voteType = .preVote
            voteTerm = term + 1
        } else {
            becomeCandidate()
            voteType = .vote
            voteTerm = term
        }
        votes[id] = true
        if votes.values.filter({ $0 }).count >= quorum {
            if preElection { campaign(preElection: false) } else { becomeLeader() }
            return
        }
        for v in voters where v != id {
            var m = RaftMessage(type: voteType, to: v)
            m.index = log.lastIndex
            m.logTerm = log.lastTerm
            m.from = id
            m.term = voteTerm
            messages.append(m)
        }
    }

    /// Handles one message. Throws `.proposalDropped` for a proposal with no leader to take it.
    func step(_ m: RaftMessage) throws(RaftError) {
        // Term bookkeeping (§5.1).
        // Term 0 marks a local message (or a forwarded proposal or read request).
        if m.term != 0 && m.term > term && !m.type.isLocal && m.type != .prop {
            if m.type == .vote || m.type == .preVote {
                // Check-quorum's lease: a node that heard from a leader within the election
                // timeout ignores vote requests (a partitioned node's returning campaign).
                let inLease = config.checkQuorum && lead != 0 && electionElapsed < config.electionTicks
                if inLease { return }
            }
            if m.type == .preVote || (m.type == .preVoteResp && !m.reject) {
                // Never change the term for a pre-vote, nor for a granted pre-vote response
                // (its term is the one the pre-candidate would move to).
            } else if m.type == .app || m.type == .heartbeat || m.type == .snap {
                becomeFollower(term: m.term, lead: m.from)
            } else {
                becomeFollower(term: m.term, lead: 0)
            }
        } else if m.term != 0 && m.term < term && !m.type.isLocal && m.type != .prop {
            if (config.checkQuorum || config.preVote) && (m.type == .app || m.type == .heartbeat) {
                // A leader cut off by a partition learns the current term from the answer.
                send(RaftMessage(type: .appResp, to: m.from))
            } else if m.type == .preVote {
                var reject = RaftMessage(type: .preVoteResp, to: m.from)
                reject.reject = true
                send(reject)
            }
            return
        }
        switch m.type {
        case .hup:
            if role != .leader { campaign(preElection: config.preVote) }
            return
        case .vote, .preVote:
            let canVote = vote == m.from || (vote == 0 && lead == 0) || (m.type == .preVote && m.term > term)
            var response = RaftMessage(type: m.type == .vote ? .voteResp : .preVoteResp, to: m.from)
            if canVote && log.isUpToDate(index: m.index, term: m.logTerm) {
                // A granted response carries the term the candidate asked for.
                response.from = id
                response.term = m.term
                if m.type == .vote {
                    electionElapsed = 0
                    vote = m.from
                }
                messages.append(response)
            } else {
                response.reject = true
                send(response)
            }
            return
        default:
            break
        }
        switch role {
        case .leader: try stepLeader(m)
        case .candidate, .preCandidate: try stepCandidate(m)
        case .follower: try stepFollower(m)
        }
    }

    private func stepLeader(_ m: RaftMessage) throws(RaftError) {
        switch m.type {
        case .beat:
            for v in voters where v != id { sendHeartbeat(to: v) }
        case .readIndex:
            let context = m.entries.first?.data ?? []
            if voters.count == 1 {
                answerRead(m, index: log.committed)
                return
            }
            // Only once this leader committed an entry of its own term does it know the commit
            // index is current (etcd 3.4 drops the request otherwise).
            guard ((try? log.term(log.committed)) ?? 0) == term else { return }
            pendingReads.append((log.committed, m, [id]))
            for v in voters where v != id {
                var hb = RaftMessage(type: .heartbeat, to: v)
                hb.commit = min(progress[v]?.match ?? 0, log.committed)
                hb.context = context
                send(hb)
            }
        case .checkQuorum:
            let active = voters.filter { $0 == id || progress[$0]?.recentActive == true }.count
            if active < quorum {
                becomeFollower(term: term, lead: 0)
                return
            }
            for v in voters where v != id { progress[v]?.recentActive = false }
        case .prop:
            if m.entries.isEmpty { throw RaftError.corrupt("empty proposal") }
            appendEntries(m.entries)
            broadcastAppend()
        case .appResp:
            guard var p = progress[m.from] else { return }
            p.recentActive = true
            if m.reject {
                if p.maybeDecrease(rejected: m.index, hint: m.rejectHint) {
                    if p.state == .replicate { p.becomeProbe() }
                    progress[m.from] = p
                    sendAppend(to: m.from)
                }
                return
            }
            let paused = p.isPaused(maxInflight: config.maxInflightMessages)
            if p.maybeUpdate(m.index) {
                if p.state == .probe { p.becomeReplicate() } else if p.inflight > 0 { p.inflight -= 1 }
                progress[m.from] = p
                if maybeCommit() {
                    broadcastAppend()
                } else if paused || p.next <= log.lastIndex {
                    sendAppend(to: m.from)
                }
            } else {
                progress[m.from] = p
            }
        case .heartbeatResp:
            guard var p = progress[m.from] else { return }
            p.recentActive = true
            p.probeSent = false
            if p.state == .replicate && p.inflight >= config.maxInflightMessages { p.inflight = max(p.inflight - 1, 0) }
            progress[m.from] = p
            if p.match < log.lastIndex { sendAppend(to: m.from) }
            if !m.context.isEmpty { acknowledgeRead(context: m.context, from: m.from) }
        case .voteResp:
            break
        default:
            break
        }
    }

    private func stepCandidate(_ m: RaftMessage) throws(RaftError) {
        switch m.type {
        case .prop:
            throw RaftError.proposalDropped
        case .app:
            becomeFollower(term: m.term, lead: m.from)
            try handleAppend(m)
        case .heartbeat:
            becomeFollower(term: m.term, lead: m.from)
            handleHeartbeat(m)
        case .voteResp, .preVoteResp:
            // Only the responses to the election in progress count.
            guard (role == .candidate) == (m.type == .voteResp) else { return }
            votes[m.from] = !m.reject
            let granted = votes.values.filter { $0 }.count
            let rejected = votes.count - granted
            if granted >= quorum {
                if role == .preCandidate {
                    campaign(preElection: false)
                } else {
                    becomeLeader()
                    broadcastAppend()
                }
            } else if rejected >= quorum {
                becomeFollower(term: term, lead: 0)
            }
        default:
            break
        }
    }

    private func stepFollower(_ m: RaftMessage) throws(RaftError) {
        switch m.type {
        case .readIndex:
            guard lead != 0 else { return }
            var forward = m
            forward.to = lead
            forward.from = id
            messages.append(forward)
        case .readIndexResp:
            readStates.append(ReadState(index: m.index, context: m.entries.first?.data ?? []))
        case .prop:
            guard lead != 0 else { throw RaftError.proposalDropped }
            var forward = m
            forward.to = lead
            forward.from = id
            messages.append(forward)
        case .app:
            electionElapsed = 0
            lead = m.from
            try handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            lead = m.from
            handleHeartbeat(m)
        default:
            break
        }
    }

    // MARK: Replication

    private func appendEntries(_ entries: [RaftEntry]) {
        var last = log.lastIndex
        let stamped = entries.map { e -> RaftEntry in
            last += 1
            return RaftEntry(term: term, index: last, type: e.type, data: e.data)
        }
        log.append(stamped)
        // The leader counts its own entries at once (etcd does the same).
        if var p = progress[id] {
            _ = p.maybeUpdate(log.lastIndex)
            progress[id] = p
        }
        _ = maybeCommit()
    }

    /// Commits the highest index a quorum has, if it is of the current term.
    @discardableResult
    private func maybeCommit() -> Bool {
        let matches = voters.compactMap { progress[$0]?.match }.sorted(by: >)
        guard matches.count >= quorum else { return false }
        return log.maybeCommit(index: matches[quorum - 1], term: term)
    }

    private func broadcastAppend() {
        for v in voters where v != id { sendAppend(to: v) }
    }

    private func sendAppend(to peer: UInt64) {
        guard var p = progress[peer], !p.isPaused(maxInflight: config.maxInflightMessages) else { return }
        guard let prevTerm = try? log.term(p.next - 1), let entries = try? log.entries(from: p.next) else {
            // Needs a snapshot (compacted log): not built yet; probe again later.
            return
        }
        var m = RaftMessage(type: .app, to: peer)
        m.index = p.next - 1
        m.logTerm = prevTerm
        m.entries = entries
        m.commit = log.committed
        if let last = entries.last {
            switch p.state {
            case .replicate:
                p.next = last.index + 1
                p.inflight += 1
            case .probe:
                p.probeSent = true
            }
        } else if p.state == .probe {
            p.probeSent = true
        }
        progress[peer] = p
        send(m)
    }

    private func sendHeartbeat(to peer: UInt64) {
        var m = RaftMessage(type: .heartbeat, to: peer)
        m.commit = min(progress[peer]?.match ?? 0, log.committed)
        send(m)
    }

    private func handleAppend(_ m: RaftMessage) throws(RaftError) {
        var response = RaftMessage(type: .appResp, to: m.from)
        if m.index < log.committed {
            response.index = log.committed
            send(response)
            return
        }
        if let last = try log.maybeAppend(index: m.index, logTerm: m.logTerm, commit: m.commit, entries: m.entries) {
            response.index = last
        } else {
            response.index = m.index
            response.reject = true
            response.rejectHint = log.lastIndex
        }
        send(response)
    }

    private func handleHeartbeat(_ m: RaftMessage) {
        log.commit(to: m.commit)
        var response = RaftMessage(type: .heartbeatResp, to: m.from)
        response.context = m.context
        send(response)
    }

    /// A heartbeat answer carrying a read's context: once a quorum acknowledged it, that read
    /// and every read queued before it are answered.
    private func acknowledgeRead(context: [UInt8], from: UInt64) {
        guard let i = pendingReads.firstIndex(where: { ($0.request.entries.first?.data ?? []) == context }) else { return }
        pendingReads[i].acks.insert(from)
        guard pendingReads[i].acks.count >= quorum else { return }
        let done = pendingReads[0...i]
        pendingReads.removeFirst(i + 1)
        for read in done { answerRead(read.request, index: read.index) }
    }

    private func answerRead(_ request: RaftMessage, index: UInt64) {
        if request.from == 0 || request.from == id {
            readStates.append(ReadState(index: index, context: request.entries.first?.data ?? []))
        } else {
            var response = RaftMessage(type: .readIndexResp, to: request.from)
            response.index = index
            response.entries = request.entries
            send(response)
        }
    }
}
