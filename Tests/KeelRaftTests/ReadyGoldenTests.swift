@testable import KeelRaft
import XCTest

/// Golden `Ready`s of an election and the first replication round in a 3-node cluster, in
/// etcd's rendering. They pin the ordering rules: a vote is granted in the same Ready that
/// persists it (HardState with Vote before the MsgVoteResp is sent); a follower acknowledges
/// entries in the Ready that carries them for persisting; entries are handed out for applying
/// only after the commit index covers them; MustSync only when entries, term or vote changed.
/// (The same rules are checked on every Ready of the safety simulations.)
final class ReadyGoldenTests: XCTestCase {
    static let steps: [(command: String, golden: String)] = [
        ("add-nodes 3 voters=(1,2,3) index=2", "ok"),
        ("campaign 1", "ok"),
        ("process-ready 1", """
            Ready MustSync=true:
            Lead:0 State:StateCandidate
            HardState Term:1 Vote:1 Commit:2
            Messages:
            1->2 MsgVote Term:1 Log:1/2
            1->3 MsgVote Term:1 Log:1/2
            """),
        ("deliver-msgs 2", "1->2 MsgVote Term:1 Log:1/2"),
        // The vote and the term are persisted (MustSync) in the Ready that sends the grant.
        ("process-ready 2", """
            Ready MustSync=true:
            HardState Term:1 Vote:1 Commit:2
            Messages:
            2->1 MsgVoteResp Term:1 Log:0/0
            """),
        ("deliver-msgs 1", "2->1 MsgVoteResp Term:1 Log:0/0"),
        // The new leader's empty entry goes to disk and out in the same Ready, not yet committed.
        ("process-ready 1", """
            Ready MustSync=true:
            Lead:1 State:StateLeader
            Entries:
            1/3 EntryNormal ""
            Messages:
            1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal ""]
            1->3 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal ""]
            """),
        ("deliver-msgs 2", #"1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal ""]"#),
        // The follower acknowledges index 3 in the Ready that persists it.
        ("process-ready 2", """
            Ready MustSync=true:
            Lead:1 State:StateFollower
            Entries:
            1/3 EntryNormal ""
            Messages:
            2->1 MsgAppResp Term:1 Log:0/3
            """),
        ("deliver-msgs 1", "2->1 MsgAppResp Term:1 Log:0/3"),
        // A quorum has it: committed, handed out for applying; only the commit index changed,
        // so no fdatasync is required.
        ("process-ready 1", """
            Ready MustSync=false:
            HardState Term:1 Vote:1 Commit:3
            CommittedEntries:
            1/3 EntryNormal ""
            Messages:
            1->2 MsgApp Term:1 Log:1/3 Commit:3
            """),
        ("deliver-msgs 2", "1->2 MsgApp Term:1 Log:1/3 Commit:3"),
        ("process-ready 2", """
            Ready MustSync=false:
            HardState Term:1 Vote:1 Commit:3
            CommittedEntries:
            1/3 EntryNormal ""
            Messages:
            2->1 MsgAppResp Term:1 Log:0/3
            """),
        ("process-ready 3", "<empty Ready>"),
    ]

    func testElectionAndFirstCommitReadies() {
        let env = InteractionEnv()
        for (command, golden) in Self.steps {
            let words = command.split(separator: " ").map(String.init)
            let got = InteractionEnv.comparable(env.handle(words[0], words.dropFirst().map(InteractionEnv.parseArg), input: ""))
            XCTAssertEqual(got, golden, command)
        }
    }

    /// A single voter commits its own entries at once: they are handed out for persisting and
    /// for applying in the same Ready (the application persists before it applies).
    func testSingleVoterPersistsAndAppliesInOneReady() throws {
        let env = InteractionEnv()
        _ = env.handle("add-nodes", [.init(key: "1", vals: []), .init(key: "voters", vals: ["1"]), .init(key: "index", vals: ["2"])], input: "")
        _ = env.handle("campaign", [.init(key: "1", vals: [])], input: "")
        try env.nodes[0].raw.propose(Array("x".utf8))
        XCTAssertEqual(env.handle("process-ready", [.init(key: "1", vals: [])], input: ""), """
            Ready MustSync=true:
            Lead:1 State:StateLeader
            HardState Term:1 Vote:1 Commit:4
            Entries:
            1/3 EntryNormal ""
            1/4 EntryNormal "x"
            CommittedEntries:
            1/3 EntryNormal ""
            1/4 EntryNormal "x"

            """)
    }
}
