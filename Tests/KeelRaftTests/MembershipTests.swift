@testable import KeelRaft
import XCTest

/// Membership behaviour beyond etcd's scripts: a removed leader steps down and hands over,
/// a second change is refused while one is pending, learners neither vote nor count.
final class MembershipTests: XCTestCase {
    func cluster(stepDown: Bool = true) -> InteractionEnv {
        let env = InteractionEnv()
        env.onConfig = { $0.stepDownWhenRemoved = stepDown }
        _ = env.handle("add-nodes", [.init(key: "3", vals: []), .init(key: "voters", vals: ["1", "2", "3"]), .init(key: "index", vals: ["2"])], input: "")
        _ = env.handle("campaign", [.init(key: "1", vals: [])], input: "")
        _ = env.handle("stabilize", [], input: "")
        return env
    }

    func testRemovedLeaderHandsOverAndStepsDown() throws {
        let env = cluster()
        XCTAssertEqual(env.nodes[0].raw.status.role, .leader)
        try env.nodes[0].raw.proposeConfChange(ConfChange(v1: .removeNode, nodeID: 1))
        let out = env.handle("stabilize", [], input: "")
        XCTAssertTrue(out.contains("1->2 MsgTimeoutNow") || out.contains("1->3 MsgTimeoutNow"), out)
        XCTAssertNotEqual(env.nodes[0].raw.status.role, .leader, "the removed leader stepped down")
        let leaders = env.nodes.filter { $0.raw.status.role == .leader }.map(\.config.id)
        XCTAssertEqual(leaders.count, 1, "a remaining voter took over at once: \(out)")
        XCTAssertFalse(leaders.contains(1))
        // The new leader takes proposals; the cluster goes on without node 1.
        let l = Int(leaders[0]) - 1
        try env.nodes[l].raw.propose(Array("after".utf8))
        _ = env.handle("stabilize", [], input: "")
        XCTAssertEqual(env.nodes[l].raw.status.confState.voters, [2, 3])
        XCTAssertTrue(env.history[l].last!.data.suffix(5).elementsEqual("after".utf8))
    }

    func testEtcdModeRemovedLeaderKeepsLeadingAndDropsProposals() throws {
        let env = cluster(stepDown: false)
        try env.nodes[0].raw.proposeConfChange(ConfChange(v1: .removeNode, nodeID: 1))
        _ = env.handle("stabilize", [], input: "")
        XCTAssertEqual(env.nodes[0].raw.status.role, .leader)
        XCTAssertThrowsError(try env.nodes[0].raw.propose([1])) { XCTAssertEqual($0 as? RaftError, .proposalDropped) }
    }

    func testSecondChangeWhilePendingIsReplacedByEmptyEntry() throws {
        let env = cluster()
        try env.nodes[0].raw.proposeConfChange(ConfChange(v1: .addLearnerNode, nodeID: 4))
        try env.nodes[0].raw.proposeConfChange(ConfChange(v1: .addLearnerNode, nodeID: 5))
        let rd = try env.nodes[0].raw.ready()
        XCTAssertEqual(rd.entries.map(\.type), [.confChange, .normal], "the second change became an empty normal entry")
        XCTAssertEqual(rd.entries.last?.data, [])
    }

    func testLearnerDoesNotVoteOrCount() throws {
        let env = InteractionEnv()
        _ = env.handle("add-nodes", [.init(key: "3", vals: []), .init(key: "voters", vals: ["1", "2"]), .init(key: "learners", vals: ["3"]),
                                     .init(key: "index", vals: ["2"])], input: "")
        try env.nodes[2].raw.campaign()
        XCTAssertEqual(env.nodes[2].raw.status.role, .follower, "a learner does not campaign")
        try env.nodes[0].raw.campaign()
        let rd = try env.nodes[0].raw.ready()
        XCTAssertEqual(rd.messages.map(\.to), [2], "votes are asked of voters only")
        try env.nodes[0].raw.advance(rd)
        // With node 2 silent, the learner's acknowledgements cannot commit anything.
        var vote = RaftMessage(type: .voteResp, to: 1, from: 2, term: 1)
        vote.term = 1
        try env.nodes[0].raw.step(vote)
        XCTAssertEqual(env.nodes[0].raw.status.role, .leader)
        var ack = RaftMessage(type: .appResp, to: 1, from: 3, term: 1)
        ack.index = 3
        try env.nodes[0].raw.step(ack)
        XCTAssertEqual(env.nodes[0].raw.status.commit, 2, "a learner's match does not count toward the quorum")
    }

    func testUncommittedSizeLimitDropsProposals() throws {
        let env = InteractionEnv()
        env.onConfig = { $0.maxUncommittedEntriesSize = 100 }
        _ = env.handle("add-nodes", [.init(key: "3", vals: []), .init(key: "voters", vals: ["1", "2", "3"]), .init(key: "index", vals: ["2"])], input: "")
        _ = env.handle("campaign", [.init(key: "1", vals: [])], input: "")
        _ = env.handle("stabilize", [], input: "")
        // Followers stop answering: proposals pile up uncommitted until the limit.
        var accepted = 0
        var dropped = false
        for _ in 0..<10 {
            do {
                try env.nodes[0].raw.propose([UInt8](repeating: 7, count: 30))
                accepted += 1
            } catch {
                XCTAssertEqual(error, .proposalDropped)
                dropped = true
            }
        }
        XCTAssertTrue(dropped)
        XCTAssertEqual(accepted, 3, "30-byte entries: 30, 60, 90 fit in 100 bytes; a fourth would make 120")
        // Once committed and applied, the budget comes back.
        _ = env.handle("stabilize", [], input: "")
        XCTAssertNoThrow(try env.nodes[0].raw.propose([UInt8](repeating: 7, count: 30)))
    }

    /// etcd's bootstrap: the log starts with committed ConfChangeAddNode entries at term 1.
    func testBootstrapWritesEtcdsConfChangeEntries() throws {
        let s = MemoryStorage()
        let n = try RawNode(config: RaftConfig(id: 1), storage: s)
        try n.bootstrap(peers: [(1, Array("m1".utf8)), (2, Array("m2".utf8))])
        XCTAssertEqual(n.status.confState.voters, [1, 2])
        let rd = try n.ready()
        XCTAssertEqual(rd.entries.map(\.index), [1, 2])
        XCTAssertEqual(rd.entries.map(\.type), [.confChange, .confChange])
        XCTAssertEqual(rd.committedEntries.count, 2)
        XCTAssertEqual(rd.hardState, RaftHardState(term: 1, vote: 0, commit: 2))
        let cc = try ConfChange(entry: rd.entries[1])
        XCTAssertEqual(cc.changes, [ConfChangeSingle(.addNode, 2)])
        XCTAssertEqual(cc.context, Array("m2".utf8))
        try s.append(rd.entries)
        try n.advance(rd)
        XCTAssertThrowsError(try n.bootstrap(peers: [(3, [])]), "a non-empty log cannot be bootstrapped")
    }
}
