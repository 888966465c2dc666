import KeelIO
import KeelRaft

/// A cluster of RawNodes in one process over a seeded, unreliable network: messages dropped,
/// duplicated, delayed and reordered; partitions that heal; nodes that crash and restart from
/// what they persisted; log compaction with snapshots sent to followers that fall behind;
/// membership changes (learners added, promoted, voters removed and re-added) and leader
/// transfers. After every step: election safety, log matching, leader completeness, and
/// state-machine safety; after healing, a proposal commits within a bounded number of ticks.
///
/// Deterministic: the same seed replays the same run exactly.
public final class RaftSimulation {
    struct Node {
        var storage: MemoryStorage
        var raw: RawNode
        var up = true
        /// The configuration in force at `applied` (for snapshots).
        var confState: ConfState
        var applied: UInt64 = 0
    }

    public struct Options: Sendable {
        public var preVote = false
        public var checkQuorum = true
        /// Membership changes, compactions and leader transfers on top of the basic faults.
        public var membership = true
        public init(preVote: Bool = false, checkQuorum: Bool = true, membership: Bool = true) {
            self.preVote = preVote
            self.checkQuorum = checkQuorum
            self.membership = membership
        }
    }

    /// Every node that exists (voters at start, plus one spare that membership changes add).
    let ids: [UInt64]
    let initialVoters: [UInt64]
    var nodes: [UInt64: Node] = [:]
    var rng: SplitMix64
    /// In-flight messages with the step at which they may arrive.
    var network: [(at: Int, message: RaftMessage)] = []
    public private(set) var step = 0
    /// Nodes cut off from the others (both directions).
    var isolated: Set<UInt64> = []
    public var dropPercent: UInt64 = 10
    /// term → leader seen in that term.
    var leaders: [UInt64: UInt64] = [:]
    /// index → the term of the leader that committed it.
    var commitTerms: [UInt64: UInt64] = [:]
    /// The last commit index each node reported.
    var commitSeen: [UInt64: UInt64] = [:]
    /// index → the entry applied there (by any node).
    public private(set) var applied: [UInt64: RaftEntry] = [:]
    var proposals = 0
    public private(set) var failures: [String] = []
    /// Read requests: context → the highest index applied anywhere when it was asked.
    var reads: [[UInt8]: UInt64] = [:]
    public private(set) var readsAnswered = 0
    public private(set) var snapshotsInstalled = 0
    public private(set) var confChangesApplied = 0
    public private(set) var transfers = 0
    /// Members whose removal was proposed: never added again.
    var removed: Set<UInt64> = []
    let options: Options

    public init(size: Int, seed: UInt64, options: Options = Options()) {
        self.options = options
        initialVoters = (1...UInt64(size)).map { $0 }
        ids = options.membership ? initialVoters + [UInt64(size + 1)] : initialVoters
        rng = SplitMix64(seed: seed)
        for id in ids {
            // Every node, the spare included, starts from the initial configuration (as etcd
            // members bootstrap from the same --initial-cluster); the spare is not in it, so it
            // only listens until a conf change adds it.
            let storage = MemoryStorage(voters: initialVoters)
            nodes[id] = makeNode(id, storage: storage, confState: storage.initialState().confState, applied: 0)
        }
    }

    func makeNode(_ id: UInt64, storage: MemoryStorage, confState: ConfState, applied: UInt64) -> Node {
        var config = RaftConfig(id: id, seed: rng.next() | 1)
        config.electionTicks = 10
        config.heartbeatTicks = 1
        config.preVote = options.preVote
        config.checkQuorum = options.checkQuorum
        config.applied = applied
        config.maxSizePerMessage = 4096
        config.maxInflightMessages = 64
        config.maxUncommittedEntriesSize = 1 << 16
        // A node whose persisted state is inconsistent is a bug of the simulation or of Raft.
        let raw = try! RawNode(config: config, storage: storage)
        return Node(storage: storage, raw: raw, confState: confState, applied: applied)
    }

    /// A crashed node comes back with what it persisted: its log, hard state and snapshot.
    func restart(_ id: UInt64) {
        let s = nodes[id]!.storage
        let snap = (try? s.snapshot()) ?? RaftSnapshot()
        let cs = snap.isEmpty ? s.initialState().confState : snap.confState
        nodes[id] = makeNode(id, storage: s, confState: cs, applied: snap.index)
    }

    func fail(_ message: String) { if failures.count < 5 { failures.append("step \(step): \(message)") } }

    /// Persist, send, apply, advance — in that order.
    func drain(_ id: UInt64) {
        guard var node = nodes[id], node.up else { return }
        var rounds = 0
        while node.raw.hasReady && rounds < 100 {
            rounds += 1
            let ready: Ready
            do { ready = try node.raw.ready() } catch { fail("ready failed on \(id): \(error)"); return }
            if let snap = ready.snapshot {
                // Installing a snapshot replaces the log and the state machine.
                do { try node.storage.applySnapshot(snap) } catch { fail("applySnapshot on \(id): \(error)") }
                if let known = applied[snap.index], known.term != snap.term { fail("node \(id) installed a snapshot at \(snap.index) of term \(snap.term); entry applied there has term \(known.term)") }
                node.confState = snap.confState
                node.applied = snap.index
                snapshotsInstalled += 1
            }
            let before = node.storage.hardState
            do { try node.storage.append(ready.entries) } catch { fail("append on \(id): \(error)") }
            if let hs = ready.hardState { node.storage.setHardState(hs) }
            // Ready's rules: what a message acknowledges is durable once this Ready is persisted,
            // and MustSync says whether that needs an fdatasync.
            let hs = node.storage.hardState
            let mustSync = !ready.entries.isEmpty || hs.term != before.term || hs.vote != before.vote
            if ready.mustSync != mustSync { fail("node \(id): MustSync \(ready.mustSync), expected \(mustSync)") }
            for m in ready.messages {
                if m.type == .appResp && !m.reject && m.term == hs.term && m.index > node.storage.lastIndex() {
                    fail("node \(id) acknowledges index \(m.index) beyond its persisted log \(node.storage.lastIndex())")
                }
                if (m.type == .voteResp) && !m.reject && (hs.vote != m.to || hs.term != m.term) {
                    fail("node \(id) grants its vote to \(m.to) in term \(m.term) before persisting it (hard state \(hs))")
                }
            }
            for m in ready.messages {
                network.append((step + 1 + Int(rng.next() % 3), m))
                if rng.next() % 100 < 5 { network.append((step + 1 + Int(rng.next() % 6), m)) }  // duplicate
            }
            for rs in ready.readStates {
                // Linearizability: the read point covers everything committed before the request.
                if let floor = reads[rs.context], rs.index < floor { fail("read \(rs.context) answered at \(rs.index) < \(floor) committed before it") }
                readsAnswered += 1
            }
            if let h = ready.hardState, node.raw.role == .leader, node.raw.term == h.term {
                // Entries a leader commits are committed in its term: every leader of a later
                // term must hold them.
                let from = (commitSeen[id] ?? 0) + 1
                if h.commit >= from { for i in from...h.commit where commitTerms[i] == nil { commitTerms[i] = h.term } }
            }
            if let h = ready.hardState { commitSeen[id] = h.commit }
            for e in ready.committedEntries {
                if let h = ready.hardState, e.index > h.commit { fail("node \(id) asked to apply \(e.index) beyond commit \(h.commit)") }
                if let known = applied[e.index], known != e { fail("node \(id) applied \(e) at \(e.index), another applied \(known)") }
                applied[e.index] = e
                if e.type != .normal {
                    do {
                        node.confState = try node.raw.applyConfChange(ConfChange(entry: e))
                        confChangesApplied += 1
                    } catch {
                        fail("node \(id) could not apply conf change \(e.index): \(error)")
                    }
                }
                node.applied = e.index
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
            // Leader completeness: every entry committed in an earlier term is in the new
            // leader's log (or covered by its snapshot). A leader of an older term can still
            // win with votes cast before the newer term began, and need not hold newer entries.
            let first = node.storage.firstIndex(), last = node.storage.lastIndex()
            for (index, entry) in applied where index >= first && (commitTerms[index] ?? .max) < st.term {
                if index > last { fail("leader \(id) of term \(st.term) lacks committed entry \(index) (log ends at \(last))"); continue }
                let mine = (try? node.storage.entries(index, index + 1, maxBytes: .max))?.first
                if mine != entry { fail("leader \(id) of term \(st.term) lacks committed entry \(index): has \(mine.map { "\($0)" } ?? "nothing"), applied elsewhere \(entry)") }
            }
        }
    }

    /// Log matching: entries with the same index and term on two nodes have identical prefixes
    /// (over the indexes both still hold).
    public func checkLogMatching() {
        let logs = ids.map { id -> (first: UInt64, entries: [RaftEntry]) in
            let s = nodes[id]!.storage
            return (s.firstIndex(), (try? s.entries(s.firstIndex(), s.lastIndex() + 1, maxBytes: .max))?.array ?? [])
        }
        for a in 0..<logs.count {
            for b in (a + 1)..<logs.count {
                let x = logs[a], y = logs[b]
                let lo = max(x.first, y.first)
                let hi = min(x.first + UInt64(x.entries.count), y.first + UInt64(y.entries.count))
                guard lo < hi else { continue }
                var lastMatch: UInt64?
                for i in lo..<hi where x.entries[Int(i - x.first)].term == y.entries[Int(i - y.first)].term { lastMatch = i }
                guard let m = lastMatch else { continue }
                for i in lo...m where x.entries[Int(i - x.first)] != y.entries[Int(i - y.first)] {
                    fail("logs of \(ids[a]) and \(ids[b]) agree at index \(m) but differ at \(i)")
                    return
                }
            }
        }
    }

    func deliver() {
        var due: [RaftMessage] = []
        var keep: [(at: Int, message: RaftMessage)] = []
        for item in network { if item.at <= step { due.append(item.message) } else { keep.append(item) } }
        network = keep
        for i in stride(from: due.count - 1, to: 0, by: -1) { due.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        for m in due {
            // Like etcd's transport, the sender learns whether a snapshot got through; without
            // that report the leader would wait for it forever.
            let lost = nodes[m.to]?.up != true || isolated.contains(m.to) != isolated.contains(m.from) || rng.next() % 100 < dropPercent
            if m.type == .snap, let sender = nodes[m.from], sender.up {
                sender.raw.reportSnapshot(m.to, failed: lost)
                drain(m.from)
            }
            guard !lost, let node = nodes[m.to] else { continue }
            try? node.raw.step(m)
            drain(m.to)
        }
    }

    /// Every node's state, for a failing seed's report.
    public func describe() -> String {
        var out = ""
        for id in ids {
            let n = nodes[id]!
            let st = n.raw.status
            out += "node \(id) \(n.up ? "up" : "down")\(isolated.contains(id) ? " isolated" : ""): \(st.role) term \(st.term) lead \(st.lead) commit \(st.commit) applied \(st.applied) log [\(n.storage.firstIndex()), \(n.storage.lastIndex())] voters \(st.confState.voters) outgoing \(st.confState.votersOutgoing) learners \(st.confState.learners)\n"
            for (p, pr) in st.progress.sorted(by: { $0.key < $1.key }) { out += "    \(p): \(pr.description)\n" }
        }
        return out
    }

    /// A node's status (nil for an unknown ID).
    public func status(_ id: UInt64) -> RaftStatus? { nodes[id]?.raw.status }

    public func leader() -> UInt64? {
        ids.filter { nodes[$0]!.up && nodes[$0]!.raw.role == .leader }.max { nodes[$0]!.raw.term < nodes[$1]!.raw.term }
    }

    /// Compacts a node's log up to what it applied, keeping a snapshot there.
    func compact(_ id: UInt64) {
        guard let node = nodes[id], node.up else { return }
        let s = node.storage
        let at = node.applied
        guard at > s.firstIndex() + 2, at <= s.lastIndex() else { return }
        do {
            try s.createSnapshot(at: at, confState: node.confState, data: Array("state@\(at)".utf8))
            try s.compact(to: at)
        } catch {
            fail("compaction of \(id) at \(at): \(error)")
        }
    }

    /// The leader proposes a membership change: add the spare as a learner, promote it, or
    /// remove a voter (keeping at least three), as v1 or v2 changes.
    func proposeConfChange(_ l: UInt64) {
        let cs = nodes[l]!.raw.confState
        guard cs.votersOutgoing.isEmpty else {
            try? nodes[l]!.raw.proposeConfChange(ConfChange(changes: []))
            return
        }
        // A removed member never comes back under the same ID (etcd refuses it too: a node
        // that missed its removal could not be caught up by a snapshot that excludes it).
        let outside = ids.filter { !cs.voters.contains($0) && !cs.learners.contains($0) && !removed.contains($0) }
        var change: ConfChangeSingle?
        switch rng.next() % 3 {
        case 0: if let id = outside.first { change = ConfChangeSingle(.addLearnerNode, id) }
        case 1:
            if let id = cs.learners.first(where: { !removed.contains($0) }) { change = ConfChangeSingle(.addNode, id) } else if let id = outside.first { change = ConfChangeSingle(.addNode, id) }
        default:
            if cs.voters.count > 3 { change = ConfChangeSingle(.removeNode, cs.voters[Int(rng.next() % UInt64(cs.voters.count))]) }
        }
        guard let c = change else { return }
        if c.type == .removeNode { removed.insert(c.nodeID) }
        let cc: ConfChange
        switch rng.next() % 3 {
        case 0: cc = ConfChange(v1: c.type, nodeID: c.nodeID)
        case 1: cc = ConfChange(changes: [c])
        default: cc = ConfChange(changes: [c], transition: rng.next() % 2 == 0 ? .jointImplicit : .jointExplicit)
        }
        try? nodes[l]!.raw.proposeConfChange(cc)
    }

    /// Runs `steps` steps; with `chaos`, nodes crash and restart, links partition and heal.
    public func run(steps: Int, chaos: Bool) {
        for _ in 0..<steps {
            step += 1
            let r = rng.next() % 100
            if chaos && r < 2 {
                // Crash a node: it keeps only what it persisted.
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                nodes[id]!.up = false
            } else if chaos && r < 5 {
                if let id = ids.first(where: { !nodes[$0]!.up }) { restart(id) }
            } else if chaos && r < 7 {
                isolated = rng.next() % 2 == 0 ? [] : [ids[Int(rng.next() % UInt64(ids.count))]]
            } else if options.membership && r < 9 {
                compact(ids[Int(rng.next() % UInt64(ids.count))])
            } else if options.membership && r < 10, let l = leader() {
                proposeConfChange(l)
                drain(l)
            } else if options.membership && r < 11, let l = leader() {
                let target = ids[Int(rng.next() % UInt64(ids.count))]
                nodes[l]!.raw.transferLeader(to: target)
                transfers += 1
                drain(l)
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
    public func healAndCheckProgress(ticks: Int) -> Bool {
        isolated = []
        dropPercent = 0
        for id in ids where !nodes[id]!.up { restart(id) }
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

    /// One seed's whole run: chaos, then heal, then the checks. Returns the failures (empty
    /// when every invariant held and the healed cluster made progress).
    public static func runSeed(size: Int, seed: UInt64, steps: Int, options: Options) -> (sim: RaftSimulation, failures: [String]) {
        let sim = RaftSimulation(size: size, seed: seed, options: options)
        sim.run(steps: steps, chaos: true)
        let progressed = sim.healAndCheckProgress(ticks: 600)
        sim.checkLogMatching()
        var failures = sim.failures
        if !progressed { failures.append("no progress within 600 ticks after healing") }
        return (sim, failures)
    }
}
