import KeelIO
import KeelRaft
import KeelRaftSim
import KeelTestSupport
import XCTest

final class RaftSimulationTests: XCTestCase {
    func simulate(size: Int, seeds: Range<UInt64>, steps: Int, options: RaftSimulation.Options = .init()) {
        let base = testSeed("raft simulation \(size) nodes \(options)")
        var commits = 0, reads = 0, snapshots = 0, changes = 0
        for s in seeds {
            let seed = base &+ s
            let (sim, failures) = RaftSimulation.runSeed(size: size, seed: seed, steps: steps, options: options)
            XCTAssertTrue(failures.isEmpty, "seed \(seed) (KEEL_SEED=\(base) offset \(s); replay: keelutl raft-sim --nodes \(size) --seed \(seed) --seeds 1 --steps \(steps)): \(failures)")
            commits += sim.applied.count
            reads += sim.readsAnswered
            snapshots += sim.snapshotsInstalled
            changes += sim.confChangesApplied
            if !failures.isEmpty { return }
        }
        print("\(size) nodes: \(seeds.count) seeds × \(steps) steps, \(commits) entries applied, \(reads) reads answered, \(snapshots) snapshots installed, \(changes) conf changes applied")
    }

    // About 2,000 seeds per run, each a different schedule of faults (replay a failure with
    // its KEEL_SEED or with `keelutl raft-sim`, which runs millions of steps).
    func testThreeNodes() { simulate(size: 3, seeds: 0..<700, steps: 300) }
    func testFiveNodes() { simulate(size: 5, seeds: 0..<300, steps: 300) }
    func testThreeNodesPreVote() { simulate(size: 3, seeds: 0..<500, steps: 300, options: .init(preVote: true)) }
    func testFiveNodesPreVoteWithoutCheckQuorum() { simulate(size: 5, seeds: 0..<250, steps: 300, options: .init(preVote: true, checkQuorum: false)) }
    func testThreeNodesWithoutMembershipChanges() { simulate(size: 3, seeds: 0..<250, steps: 300, options: .init(membership: false)) }

    func testElectionAndReplicationWithoutFaults() throws {
        let sim = RaftSimulation(size: 3, seed: 7, options: .init(membership: false))
        sim.dropPercent = 0
        sim.run(steps: 60, chaos: false)
        XCTAssertNotNil(sim.leader())
        XCTAssertTrue(sim.failures.isEmpty, "\(sim.failures)")
        XCTAssertGreaterThan(sim.applied.count, 5)
        // Every node applied the same prefix.
        let leader = sim.leader()!
        let commit = sim.status(leader)!.commit
        XCTAssertEqual(sim.applied.count, Int(commit))
    }

    func testProposalWithoutLeaderIsDropped() throws {
        let storage = MemoryStorage(voters: [1, 2, 3])
        let node = try RawNode(config: RaftConfig(id: 1), storage: storage)
        XCTAssertThrowsError(try node.propose([1])) { XCTAssertEqual($0 as? RaftError, .proposalDropped) }
    }

    /// A single-node cluster elects itself and commits its proposals.
    func testSingleNode() throws {
        let storage = MemoryStorage(voters: [1])
        let node = try RawNode(config: RaftConfig(id: 1), storage: storage)
        try node.campaign()
        XCTAssertEqual(node.status.role, .leader)
        try node.propose(Array("x".utf8))
        let ready = try node.ready()
        XCTAssertEqual(ready.entries.map(\.index), [1, 2], "the leader's empty entry, then the proposal")
        XCTAssertEqual(ready.committedEntries.map(\.index), [1, 2])
        XCTAssertEqual(ready.hardState, RaftHardState(term: 1, vote: 1, commit: 2))
        XCTAssertTrue(ready.messages.isEmpty)
        try storage.append(ready.entries)
        try node.advance(ready)
        XCTAssertFalse(node.hasReady)
    }
}
