import KeelIO
import KeelRaft
import KeelTestSupport
import XCTest

/// A cluster of RawNodes in one process over a seeded, unreliable network: messages dropped,
/// duplicated, delayed and reordered, partitions that heal, nodes that crash and restart from
/// what they persisted. After every step: election safety, log matching, leader completeness
/// and state-machine safety; after healing, a proposal commits within a bounded number of ticks.
final class RaftSimulation {
    struct Node {
        var storage: MemoryStorage
        var raw: RawNode
        var up = true
    }

    let ids: [UInt64]
    var nodes: [UInt64: Node] = [:]
    var rng: SplitMix64
    /// In-flight messages with the step at which they may arrive.
    var network: [(at: Int, message: RaftMessage)] = []
    var step = 0
    /// Nodes cut off from the others (both directions).
    var isolated: Set<UInt64> = []
    var dropPercent: UInt64 = 10
    /// term → leader seen in that term.
    var leaders: [UInt64: UInt64] = [:]
    /// index → the entry applied there (by any node).
    var applied: [UInt64: RaftEntry] = [:]
    var proposals = 0
    var failures: [String] = []
    /// Read requests: context → the highest index applied anywhere when it was asked.
    var reads: [[UInt8]: UInt64] = [:]
    var readsAnswered = 0

    let preVote: Bool
    let checkQuorum: Bool

    init(size: Int, seed: UInt64, preVote: Bool = false, checkQuorum: Bool = true) {
        self.preVote = preVote
        self.checkQuorum = checkQuorum
        ids = (1...UInt64(size)).map { $0 }
        rng = SplitMix64(seed: seed)
        for id in ids { nodes[id] = makeNode(id, storage: MemoryStorage(voters: ids)) }
    }

    func makeNode(_ id: UInt64, storage: MemoryStorage) -> Node {
        var config = RaftConfig(id: id, seed: rng.next() | 1)
        config.electionTicks = 10
        config.heartbeatTicks = 1
        config.preVote = preVote
        config.checkQuorum = checkQuorum
        return Node(storage: storage, raw: try! RawNode(config: config, storage: storage))
    }

    func fail(_ message: String) { if failures.count < 5 { failures.append("step \(step): \(message)") } }

    /// Persist, send, apply, advance — in that order.
    func drain(_ id: UInt64) {
        guard var node = nodes[id], node.up else { return }
        var rounds = 0
        while node.raw.hasReady && rounds < 100 {
            rounds += 1
            guard let ready = try? node.raw.ready() else { fail("ready failed on \(id)"); return }
            do { try node.storage.append(ready.entries) } catch { fail("append on \(id): \(error)") }
            if let hs = ready.hardState { node.storage.setHardState(hs) }
            for m in ready.messages {
                network.append((step + 1 + Int(rng.next() % 3), m))
                if rng.next() % 100 < 5 { network.append((step + 1 + Int(rng.next() % 6), m)) }  // duplicate
            }
            for rs in ready.readStates {
                // Linearizability: the read point covers everything committed before the request.
                if let floor = reads[rs.context], rs.index < floor { fail("read \(rs.context) answered at \(rs.index) < \(floor) committed before it") }
                readsAnswered += 1
            }
            for e in ready.committedEntries {
                if let known = applied[e.index], known != e { fail("node \(id) applied \(e) at \(e.index), another applied \(known)") }
                applied[e.index] = e
            }
            do { try node.raw.advance(ready) } catch { fail("advance on \(id): \(error)") }
        }
        nodes[id] = node
        checkLeader(id)
    }

    func checkLeader(_ id: UInt64) {
        guard let node = nodes[id], node.up else { return }
        let st = node.raw.status
        guard st.role == .leader else { return }
        if let other = leaders[st.term], other != id { fail("two leaders in term \(st.term): \(other) and \(id)") }
        if leaders[st.term] == nil {
            leaders[st.term] = id
            // Leader completeness: every entry applied anywhere is in the new leader's log.
            for (index, entry) in applied {
                let mine = (try? node.storage.entries(index, index + 1, maxBytes: .max))?.first
                if mine != entry && index <= node.storage.lastIndex() { fail("leader \(id) of term \(st.term) lacks committed entry \(index)") }
                if index > node.storage.lastIndex() { fail("leader \(id) of term \(st.term) lacks committed entry \(index) (log ends at \(node.storage.lastIndex()))") }
            }
        }
    }

    /// Log matching: entries with the same index and term on two nodes have identical prefixes.
    func checkLogMatching() {
        let logs = ids.compactMap { id -> [RaftEntry]? in
            let s = nodes[id]!.storage
            return try? s.entries(s.firstIndex(), s.lastIndex() + 1, maxBytes: .max)
        }
        for a in 0..<logs.count {
            for b in (a + 1)..<logs.count {
                let x = logs[a], y = logs[b]
                let n = min(x.count, y.count)
                var lastMatch = -1
                for i in 0..<n where x[i].term == y[i].term { lastMatch = i }
                if lastMatch >= 0 && Array(x[0...lastMatch]) != Array(y[0...lastMatch]) {
                    fail("logs \(a + 1) and \(b + 1) agree at index \(lastMatch + 1) but differ before it")
                }
            }
        }
    }

    func deliver() {
        let due = network.enumerated().filter { $0.element.at <= step }
        let keep = network.enumerated().filter { $0.element.at > step }.map(\.element)
        network = keep
        var order = due.map(\.element.message)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        for m in order {
            guard var node = nodes[m.to], node.up else { continue }
            if isolated.contains(m.to) != isolated.contains(m.from) { continue }
            if rng.next() % 100 < dropPercent { continue }
            try? node.raw.step(m)
            nodes[m.to] = node
            drain(m.to)
        }
    }

    func leader() -> UInt64? {
        ids.filter { nodes[$0]!.up && nodes[$0]!.raw.status.role == .leader }.max { nodes[$0]!.raw.status.term < nodes[$1]!.raw.status.term }
    }

    func run(steps: Int, chaos: Bool) {
        for _ in 0..<steps {
            step += 1
            let r = rng.next() % 100
            if chaos && r < 2 {
                // Crash a node: it keeps only what it persisted.
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                nodes[id]!.up = false
            } else if chaos && r < 5 {
                // Restart a crashed node from its storage.
                if let id = ids.first(where: { !nodes[$0]!.up }) {
                    nodes[id] = makeNode(id, storage: nodes[id]!.storage)
                }
            } else if chaos && r < 7 {
                isolated = rng.next() % 2 == 0 ? [] : [ids[Int(rng.next() % UInt64(ids.count))]]
            } else if r < 40 && r >= 30 {
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                if nodes[id]!.up {
                    let context = Array("r\(step)".utf8)
                    reads[context] = applied.keys.max() ?? 0
                    nodes[id]!.raw.readIndex(context: context)
                    drain(id)
                }
            } else if r < 30, let l = leader() {
                proposals += 1
                try? nodes[l]!.raw.propose(Array("p\(proposals)".utf8))
                drain(l)
            }
            for id in ids where nodes[id]!.up {
                nodes[id]!.raw.tick()
                drain(id)
            }
            deliver()
            if step % 25 == 0 { checkLogMatching() }
        }
    }

    /// Heals everything and checks that a new proposal commits within `ticks` steps.
    func healAndCheckProgress(ticks: Int) -> Bool {
        isolated = []
        dropPercent = 0
        for id in ids where !nodes[id]!.up { nodes[id] = makeNode(id, storage: nodes[id]!.storage) }
        let marker = Array("final-\(step)".utf8)
        var proposed = false
        for tick in 0..<ticks {
            step += 1
            // A client retries: an uncommitted proposal can be lost when leadership changes.
            if tick % 50 == 0 { proposed = false }
            if !proposed, let l = leader() {
                proposed = (try? nodes[l]!.raw.propose(marker)) != nil
                drain(l)
            }
            for id in ids {
                nodes[id]!.raw.tick()
                drain(id)
            }
            deliver()
            if proposed, applied.values.contains(where: { $0.data == marker }) { return true }
        }
        return false
    }
}

final class RaftSimulationTests: XCTestCase {
    func simulate(size: Int, seeds: Range<UInt64>, steps: Int, preVote: Bool = false, checkQuorum: Bool = true) {
        let base = testSeed("raft simulation \(size) nodes preVote=\(preVote) checkQuorum=\(checkQuorum)")
        var commits = 0
        var readsAnswered = 0
        for s in seeds {
            let seed = base &+ s
            let sim = RaftSimulation(size: size, seed: seed, preVote: preVote, checkQuorum: checkQuorum)
            sim.run(steps: steps, chaos: true)
            let progressed = sim.healAndCheckProgress(ticks: 400)
            sim.checkLogMatching()
            XCTAssertTrue(sim.failures.isEmpty, "seed \(seed) (KEEL_SEED=\(base) offset \(s)): \(sim.failures)")
            XCTAssertTrue(progressed, "seed \(seed): no progress after healing")
            commits += sim.applied.count
            readsAnswered += sim.readsAnswered
            if !sim.failures.isEmpty || !progressed { return }
        }
        print("\(size) nodes: \(seeds.count) seeds × \(steps) steps, \(commits) entries applied, \(readsAnswered) reads answered")
    }

    func testThreeNodes() { simulate(size: 3, seeds: 0..<120, steps: 400) }
    func testFiveNodes() { simulate(size: 5, seeds: 0..<50, steps: 400) }
    func testThreeNodesPreVote() { simulate(size: 3, seeds: 0..<100, steps: 400, preVote: true) }
    func testFiveNodesPreVoteWithoutCheckQuorum() { simulate(size: 5, seeds: 0..<40, steps: 400, preVote: true, checkQuorum: false) }

    func testElectionAndReplicationWithoutFaults() throws {
        let sim = RaftSimulation(size: 3, seed: 7)
        sim.dropPercent = 0
        sim.run(steps: 60, chaos: false)
        XCTAssertNotNil(sim.leader())
        XCTAssertTrue(sim.failures.isEmpty, "\(sim.failures)")
        XCTAssertGreaterThan(sim.applied.count, 5)
        // Every node applied the same prefix.
        let leader = sim.leader()!
        let commit = sim.nodes[leader]!.raw.status.commit
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
