import ArgumentParser
import Foundation
import KeelRaftSim

/// `keelutl raft-sim`: the Raft safety simulation for as long as you like.
struct RaftSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft-sim",
        abstract: "Run seeded Raft cluster simulations (faults, membership changes, snapshots) and check Raft's safety properties.",
        discussion: """
        Each seed runs a cluster in one process over an unreliable network (drops, duplicates, \
        reordering, partitions, crashes and restarts), then heals it and requires progress. \
        Election safety, log matching, leader completeness, state-machine safety and read \
        linearizability are checked after every step. A failing seed is printed and replays \
        exactly with --seed S --seeds 1.
        """)

    @Option(help: "Cluster size (voters at start).") var nodes = 3
    @Option(help: "First seed (default: random).") var seed: UInt64?
    @Option(help: "Number of seeds to run.") var seeds = 100
    @Option(help: "Steps (ticks) per seed.") var steps = 1000
    @Flag(help: "Pre-vote on.") var preVote = false
    @Flag(help: "Check-quorum off.") var noCheckQuorum = false
    @Flag(help: "No membership changes, compactions or leader transfers.") var noMembership = false
    @Flag(help: "Print the final status of every node of a failing seed.") var verbose = false

    func run() throws {
        let first = seed ?? UInt64.random(in: 1...UInt64(Int64.max))
        let options = RaftSimulation.Options(preVote: preVote, checkQuorum: !noCheckQuorum, membership: !noMembership)
        let start = Date()
        var totalSteps = 0, applied = 0, snapshots = 0, changes = 0, reads = 0
        for k in 0..<UInt64(seeds) {
            let s = first &+ k
            let (sim, failures) = RaftSimulation.runSeed(size: nodes, seed: s, steps: steps, options: options)
            totalSteps += sim.step
            applied += sim.applied.count
            snapshots += sim.snapshotsInstalled
            changes += sim.confChangesApplied
            reads += sim.readsAnswered
            if !failures.isEmpty {
                print("seed \(s) FAILED (replay: keelutl raft-sim --nodes \(nodes) --seed \(s) --seeds 1 --steps \(steps)\(preVote ? " --pre-vote" : "")\(noCheckQuorum ? " --no-check-quorum" : "")\(noMembership ? " --no-membership" : "")):")
                for f in failures { print("  " + f) }
                if verbose { print(sim.describe()) }
                throw ExitCode(1)
            }
        }
        let secs = Date().timeIntervalSince(start)
        print("\(seeds) seeds from \(first), \(nodes) nodes: \(totalSteps) steps in \(String(format: "%.1f", secs)) s, \(applied) entries applied, \(reads) reads answered, \(snapshots) snapshots installed, \(changes) conf changes applied; every invariant held")
    }
}
