import Foundation
import KeelProto
@testable import KeelRaft
import XCTest

/// The Raft paper's §5 rules, each pinned by a focused test (written in the spirit of etcd's
/// raft_paper_test.go, not copied).
final class RaftPaperTests: XCTestCase {
    func node(_ id: UInt64, voters: [UInt64] = [1, 2, 3], log: [RaftEntry] = [], term: UInt64 = 0) throws -> (RawNode, MemoryStorage) {
        let storage = MemoryStorage(voters: voters)
        try storage.append(log)
        storage.setHardState(RaftHardState(term: term))
        var config = RaftConfig(id: id, seed: 42)
        config.electionTicks = 10
        let raw = try RawNode(config: config, storage: storage)
        storages[ObjectIdentifier(raw)] = storage
        return (raw, storage)
    }

    /// Carries out the node's Ready as an owner must (persist, then hand back the messages).
    func messages(_ n: RawNode) throws -> [RaftMessage] {
        let r = try n.ready()
        try storages[ObjectIdentifier(n)]?.append(r.entries)
        if let hs = r.hardState { storages[ObjectIdentifier(n)]?.setHardState(hs) }
        try n.advance(r)
        return r.messages
    }

    var storages: [ObjectIdentifier: MemoryStorage] = [:]

    /// §5.1: a node that sees a higher term becomes a follower of that term.
    func testHigherTermMakesFollower() throws {
        let (n, _) = try node(1)
        try n.campaign()
        XCTAssertEqual(n.status.role, .candidate)
        var m = RaftMessage(type: .app, to: 1, from: 2, term: 5)
        m.index = 0
        try n.step(m)
        XCTAssertEqual(n.status.role, .follower)
        XCTAssertEqual(n.status.term, 5)
        XCTAssertEqual(n.status.lead, 2)
    }

    /// §5.1: a message of a lower term is not acted on; the sender learns the term.
    func testLowerTermIsIgnored() throws {
        let (n, _) = try node(1, term: 4)
        _ = try messages(n)
        var m = RaftMessage(type: .app, to: 1, from: 2, term: 2)
        m.entries = [RaftEntry(term: 2, index: 1)]
        try n.step(m)
        let out = try messages(n)
        XCTAssertEqual(out.map(\.type), [.appResp])
        XCTAssertEqual(out.first?.term, 4)
        XCTAssertEqual(n.status.commit, 0)
    }

    /// §5.2: an election timeout starts an election: term + 1, vote for self, ask everyone.
    func testElectionTimeoutStartsElection() throws {
        let (n, _) = try node(1)
        for _ in 0..<20 { n.tick() }
        XCTAssertEqual(n.status.role, .candidate)
        XCTAssertEqual(n.status.term, 1)
        XCTAssertEqual(n.status.vote, 1)
        let votes = try messages(n).filter { $0.type == .vote }
        XCTAssertEqual(Set(votes.map(\.to)), [2, 3])
    }

    /// §5.2: a candidate with a quorum of votes becomes leader and appends an empty entry.
    func testQuorumOfVotesElects() throws {
        let (n, _) = try node(1, voters: [1, 2, 3, 4, 5])
        try n.campaign()
        try n.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 1))
        XCTAssertEqual(n.status.role, .candidate)
        try n.step(RaftMessage(type: .voteResp, to: 1, from: 3, term: 1))
        XCTAssertEqual(n.status.role, .leader)
        let r = try n.ready()
        XCTAssertEqual(r.entries, [RaftEntry(term: 1, index: 1)])
    }

    /// §5.2: a quorum of rejections sends the candidate back to follower.
    func testQuorumOfRejectionsLoses() throws {
        let (n, _) = try node(1)
        try n.campaign()
        var reject = RaftMessage(type: .voteResp, to: 1, from: 2, term: 1)
        reject.reject = true
        try n.step(reject)
        reject.from = 3
        try n.step(reject)
        XCTAssertEqual(n.status.role, .follower)
    }

    /// §5.2/§5.4.1: one vote per term, and only for a candidate whose log is at least as up to date.
    func testVotingRules() throws {
        let (n, _) = try node(1, log: [RaftEntry(term: 1, index: 1), RaftEntry(term: 2, index: 2)], term: 2)
        func ask(_ from: UInt64, term: UInt64, index: UInt64, logTerm: UInt64) throws -> Bool {
            var m = RaftMessage(type: .vote, to: 1, from: from, term: term)
            m.index = index
            m.logTerm = logTerm
            try n.step(m)
            return try messages(n).first { $0.type == .voteResp }.map { !$0.reject } ?? false
        }
        XCTAssertFalse(try ask(2, term: 3, index: 5, logTerm: 1), "older last term")
        XCTAssertFalse(try ask(2, term: 3, index: 1, logTerm: 2), "same last term, shorter log")
        XCTAssertTrue(try ask(2, term: 3, index: 2, logTerm: 2), "as up to date")
        XCTAssertFalse(try ask(3, term: 3, index: 9, logTerm: 9), "already voted in term 3")
        XCTAssertTrue(try ask(2, term: 3, index: 2, logTerm: 2), "the same candidate again")
    }

    /// §5.3: a follower rejects an append whose previous entry it lacks, and truncates a
    /// conflicting suffix.
    func testFollowerConsistencyCheck() throws {
        let (n, _) = try node(2, log: [RaftEntry(term: 1, index: 1), RaftEntry(term: 1, index: 2), RaftEntry(term: 2, index: 3)], term: 2)
        var m = RaftMessage(type: .app, to: 2, from: 1, term: 3)
        m.index = 5
        m.logTerm = 3
        try n.step(m)
        var out = try messages(n).first!
        XCTAssertTrue(out.reject)
        XCTAssertEqual(out.rejectHint, 3)
        m.index = 2
        m.logTerm = 1
        m.entries = [RaftEntry(term: 3, index: 3, data: [7]), RaftEntry(term: 3, index: 4)]
        try n.step(m)
        let r = try n.ready()
        out = r.messages.first!
        XCTAssertFalse(out.reject)
        XCTAssertEqual(out.index, 4)
        XCTAssertEqual(r.entries.map(\.term), [3, 3], "entry 3 of term 2 replaced")
    }

    /// §5.4.2 (Figure 8): a leader does not commit an entry of an earlier term by counting
    /// replicas; it commits it only together with an entry of its own term.
    func testEntriesOfEarlierTermsAreNotCommittedByCounting() throws {
        // Node 1 has entries of term 2 that no one else has, and becomes leader in term 4.
        let (n, _) = try node(1, voters: [1, 2, 3], log: [RaftEntry(term: 1, index: 1), RaftEntry(term: 2, index: 2)], term: 3)
        try n.campaign()
        try n.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 4))
        XCTAssertEqual(n.status.role, .leader)
        XCTAssertEqual(n.status.term, 4)
        _ = try messages(n)
        // Follower 2 acknowledges index 2 (the term-2 entry) but not the term-4 entry at 3.
        var ack = RaftMessage(type: .appResp, to: 1, from: 2, term: 4)
        ack.index = 2
        try n.step(ack)
        XCTAssertEqual(n.status.commit, 0, "index 2 is on a quorum but of term 2: not committed by counting")
        ack.index = 3
        try n.step(ack)
        XCTAssertEqual(n.status.commit, 3, "the term-4 entry commits, and everything before it: \(n.status)")
    }

    /// Heartbeats carry min(match, commit) so a follower never commits past what it has.
    func testHeartbeatCommitIsBoundedByMatch() throws {
        let (n, _) = try node(1)
        try n.campaign()
        try n.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 1))
        try n.propose([1])
        var ack = RaftMessage(type: .appResp, to: 1, from: 2, term: 1)
        ack.index = 2
        try n.step(ack)
        XCTAssertEqual(n.status.commit, 2)
        _ = try messages(n)
        for _ in 0..<2 { n.tick() }
        let beats = try messages(n).filter { $0.type == .heartbeat }
        XCTAssertEqual(beats.first { $0.to == 2 }?.commit, 2)
        XCTAssertEqual(beats.first { $0.to == 3 }?.commit, 0, "node 3 matched nothing yet")
    }

    /// Messages round-trip through etcd's raftpb, with etcd's field numbers.
    func testRaftpbRoundTrip() throws {
        var m = RaftMessage(type: .app, to: 2, from: 1, term: 3)
        m.logTerm = 2
        m.index = 7
        m.commit = 6
        m.entries = [RaftEntry(term: 3, index: 8, data: [1, 2]), RaftEntry(term: 3, index: 9, type: .confChange, data: [3])]
        let bytes: [UInt8] = try m.proto.serializedBytes()
        XCTAssertEqual(try RaftMessage(try Raftpb_Message(serializedBytes: bytes)), m)
        let hs = RaftHardState(term: 5, vote: 2, commit: 9)
        XCTAssertEqual(RaftHardState(hs.proto), hs)
        XCTAssertThrowsError(try Raftpb_Message(serializedBytes: [0xFF, 0xFF, 0xFF] as [UInt8]), "garbage is a decode error, not a trap")
    }

    /// Check-quorum: a leader that hears from no quorum for an election timeout steps down.
    func testCheckQuorumLeaderStepsDown() throws {
        let (n, _) = try node(1)
        try n.campaign()
        try n.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 1))
        XCTAssertEqual(n.status.role, .leader)
        for _ in 0..<10 { n.tick(); _ = try messages(n) }   // first round: everyone counts as active? no: only answers do
        for _ in 0..<10 { n.tick(); _ = try messages(n) }
        XCTAssertEqual(n.status.role, .follower, "no answers from 2 or 3 for an election timeout")
        XCTAssertEqual(n.status.term, 1)
    }

    /// Check-quorum's lease: a follower that heard from its leader recently ignores a vote
    /// request of a higher term.
    func testVoteIgnoredWithinLeaderLease() throws {
        let (n, _) = try node(2)
        var hb = RaftMessage(type: .heartbeat, to: 2, from: 1, term: 1)
        hb.commit = 0
        try n.step(hb)
        _ = try messages(n)
        var vote = RaftMessage(type: .vote, to: 2, from: 3, term: 2)
        vote.index = 0
        try n.step(vote)
        XCTAssertEqual(try messages(n), [])
        XCTAssertEqual(n.status.term, 1, "term unchanged")
    }

    /// Pre-vote: a node that cannot win does not raise its term (a partitioned node returns
    /// without disrupting the leader).
    func testPreVoteDoesNotRaiseTerm() throws {
        let storage = MemoryStorage(voters: [1, 2, 3])
        var config = RaftConfig(id: 1, seed: 3)
        config.preVote = true
        let n = try RawNode(config: config, storage: storage)
        for _ in 0..<25 { n.tick() }
        XCTAssertEqual(n.status.role, .preCandidate)
        XCTAssertEqual(n.status.term, 0, "no term change while pre-campaigning")
        let r = try n.ready()
        XCTAssertEqual(Set(r.messages.map(\.type)), [.preVote])
        XCTAssertEqual(r.messages.first?.term, 1, "asks for the term it would take")
        try n.advance(r)
        // A granted pre-vote from one peer: a quorum (with its own), so the real election starts.
        var grant = RaftMessage(type: .preVoteResp, to: 1, from: 2, term: 1)
        grant.reject = false
        try n.step(grant)
        XCTAssertEqual(n.status.role, .candidate)
        XCTAssertEqual(n.status.term, 1)
    }

    /// ReadIndex (ReadOnlySafe): answered only after a quorum confirms the leader in a heartbeat
    /// round, at the commit index when asked; not before the leader committed in its term;
    /// a follower's request is forwarded and answered to it.
    func testReadIndex() throws {
        let (n, _) = try node(1)
        try n.campaign()
        try n.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 1))
        _ = try messages(n)
        n.readIndex(context: [9])
        XCTAssertEqual(try messages(n).filter { $0.type == .heartbeat }, [], "no entry of term 1 committed yet: the request waits")
        var ack = RaftMessage(type: .appResp, to: 1, from: 2, term: 1)
        ack.index = 1
        try n.step(ack)
        XCTAssertEqual(n.status.commit, 1)
        _ = try messages(n)
        n.readIndex(context: [7])
        let beats = try messages(n).filter { $0.type == .heartbeat }
        XCTAssertEqual(beats.map(\.context), [[7], [7]])
        var r = try n.ready()
        XCTAssertEqual(r.readStates, [], "not before a quorum answered")
        try n.advance(r)
        var answer = RaftMessage(type: .heartbeatResp, to: 1, from: 3, term: 1)
        answer.context = [7]
        try n.step(answer)
        r = try n.ready()
        XCTAssertEqual(r.readStates, [ReadState(index: 1, context: [9]), ReadState(index: 1, context: [7])],
                       "the waiting request went out once the term's entry committed; the quorum for [7] answers both")
        try n.advance(r)
        // A follower's request: forwarded to the leader, answered with MsgReadIndexResp.
        var forwarded = RaftMessage(type: .readIndex, to: 1, from: 2)
        forwarded.entries = [RaftEntry(term: 0, index: 0, data: [5])]
        try n.step(forwarded)
        _ = try messages(n)
        answer.context = [5]
        try n.step(answer)
        let responses = try messages(n).filter { $0.type == .readIndexResp }
        XCTAssertEqual(responses.map(\.to), [2])
        XCTAssertEqual(responses.first?.index, 1)
        XCTAssertEqual(responses.first?.entries.first?.data, [5])
    }

    /// Hostile appends from a peer are errors, never traps: entries that do not follow the
    /// previous index, and a reject hint at the top of the range.
    func testMalformedAppendsAreErrors() throws {
        let (n, _) = try node(2, log: [RaftEntry(term: 1, index: 1)], term: 1)
        var m = RaftMessage(type: .app, to: 2, from: 1, term: 1)
        m.index = 1
        m.logTerm = 1
        m.entries = [RaftEntry(term: 1, index: 5)]
        XCTAssertThrowsError(try n.step(m)) { XCTAssertEqual(($0 as? RaftError).map { "\($0)" }?.hasPrefix("raft:"), true) }
        m.index = UInt64.max - 1
        m.entries = [RaftEntry(term: 1, index: UInt64.max), RaftEntry(term: 1, index: 0)]
        XCTAssertThrowsError(try n.step(m))
        let (leader, _) = try node(1)
        try leader.campaign()
        try leader.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 1))
        var reject = RaftMessage(type: .appResp, to: 1, from: 2, term: 1)
        reject.reject = true
        reject.index = 0
        reject.rejectHint = .max
        XCTAssertNoThrow(try leader.step(reject))
    }

    /// §5.2: a candidate that hears from a leader of its own term steps down and follows it.
    func testCandidateYieldsToLeaderOfSameTerm() throws {
        let (n, _) = try node(1)
        try n.campaign()
        XCTAssertEqual(n.status.role, .candidate)
        var hb = RaftMessage(type: .heartbeat, to: 1, from: 3, term: n.status.term)
        hb.commit = 0
        try n.step(hb)
        XCTAssertEqual(n.status.role, .follower)
        XCTAssertEqual(n.status.lead, 3)
        XCTAssertEqual(n.status.term, 1, "same term")
    }

    /// §5.3 (leader append-only): a leader never overwrites or deletes its own entries; entries
    /// it proposes follow its last one, and a follower's stale answer does not move them.
    func testLeaderAppendsOnly() throws {
        let (n, s) = try node(1, log: [RaftEntry(term: 1, index: 1), RaftEntry(term: 1, index: 2)], term: 1)
        try n.campaign()
        try n.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 2))
        XCTAssertEqual(n.status.role, .leader)
        try n.propose([9])
        _ = try messages(n)
        var reject = RaftMessage(type: .appResp, to: 1, from: 3, term: 2)
        reject.index = 3
        reject.reject = true
        reject.rejectHint = 0
        try n.step(reject)
        _ = try messages(n)
        let log = try s.entries(1, s.lastIndex() + 1, maxBytes: .max)
        XCTAssertEqual(log.map(\.index), [1, 2, 3, 4])
        XCTAssertEqual(log.map(\.term), [1, 1, 2, 2], "old entries kept, the empty entry and the proposal appended")
        XCTAssertEqual(log.last?.data, [9])
    }

    /// §5.4.1: a node's log must be at least as up to date as the candidate's by last term
    /// first, then by length — a longer log with an older last term loses.
    func testUpToDateComparesLastTermBeforeLength() throws {
        let (n, _) = try node(2, log: [RaftEntry(term: 1, index: 1), RaftEntry(term: 3, index: 2)], term: 3)
        var m = RaftMessage(type: .vote, to: 2, from: 1, term: 4)
        m.index = 9
        m.logTerm = 2
        try n.step(m)
        XCTAssertEqual(try messages(n).first { $0.type == .voteResp }?.reject, true, "nine entries ending in term 2 are behind two ending in term 3")
    }

}

/// Messages a hostile or broken peer could send: each is a typed error or ignored, never a trap,
/// and the node keeps working afterwards.
final class HostileMessageTests: XCTestCase {
    func follower() throws -> RawNode {
        let s = MemoryStorage(voters: [1, 2, 3])
        try s.append([RaftEntry(term: 1, index: 1), RaftEntry(term: 1, index: 2)])
        s.setHardState(RaftHardState(term: 1, vote: 0, commit: 1))
        return try RawNode(config: RaftConfig(id: 2), storage: s)
    }

    func testMaximumTermIsRefused() throws {
        let n = try follower()
        XCTAssertThrowsError(try n.step(RaftMessage(type: .vote, to: 2, from: 1, term: .max))) {
            guard case .corrupt? = $0 as? RaftError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(n.status.term, 1)
    }

    func testVoteWithoutTermIsRefused() throws {
        let n = try follower()
        var vote = RaftMessage(type: .vote, to: 2, from: 1, term: 0)
        vote.index = 9
        vote.logTerm = 9
        XCTAssertThrowsError(try n.step(vote))
        XCTAssertThrowsError(try n.step(RaftMessage(type: .preVoteResp, to: 2, from: 3, term: 0)))
        XCTAssertEqual(n.status.vote, 0)
    }

    func testSnapshotWithInconsistentConfigurationLeavesNodeUnchanged() throws {
        let n = try follower()
        var m = RaftMessage(type: .snap, to: 2, from: 1, term: 1)
        m.snapshot = RaftSnapshot(index: 50, term: 1, confState: ConfState(voters: [1, 2], learners: [2]))
        XCTAssertThrowsError(try n.step(m))
        XCTAssertEqual(n.status.commit, 1, "nothing restored")
        XCTAssertEqual(n.status.confState.voters, [1, 2, 3])
        var empty = RaftMessage(type: .snap, to: 2, from: 1, term: 1)
        empty.snapshot = nil
        XCTAssertThrowsError(try n.step(empty))
    }

    func testAbsurdIndexesFromPeers() throws {
        let n = try follower()
        var app = RaftMessage(type: .app, to: 2, from: 1, term: 1)
        app.index = .max
        app.entries = [RaftEntry(term: 1, index: 0)]
        XCTAssertThrowsError(try n.step(app))
        var hb = RaftMessage(type: .heartbeat, to: 2, from: 1, term: 1)
        hb.commit = .max
        try n.step(hb)
        XCTAssertEqual(n.status.commit, 2, "a heartbeat commits no further than the log")
        // As leader: acknowledgements and rejections with absurd indexes.
        let s = MemoryStorage(voters: [1, 2, 3])
        let l = try RawNode(config: RaftConfig(id: 1), storage: s)
        try l.campaign()
        try l.step(RaftMessage(type: .voteResp, to: 1, from: 2, term: 1))
        XCTAssertEqual(l.status.role, .leader)
        var ack = RaftMessage(type: .appResp, to: 1, from: 2, term: 1)
        ack.index = .max
        XCTAssertThrowsError(try l.step(ack), "an acknowledgement beyond the leader's log is an error")
        var rej = RaftMessage(type: .appResp, to: 1, from: 3, term: 1)
        rej.reject = true
        rej.index = 0
        rej.rejectHint = .max
        try l.step(rej)
        XCTAssertEqual(l.status.commit, 0, "an acknowledgement beyond the log commits nothing")
        try l.propose([1])
        _ = try l.ready()
    }
}
