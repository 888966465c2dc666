import ArgumentParser
import Foundation
import KeelBench

/// `keelutl bench raft`: KeelRaft proposal throughput (compare with Benchmarks/compare-raft.sh).
struct RaftBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft",
        abstract: "Proposals committed per second in a 3-node in-memory KeelRaft cluster.",
        discussion: """
        Benchmarks/compare-raft.sh runs etcd 3.4's raft through the same loop beside it and prints \
        ratios. With LD_PRELOAD=.build/release/libKeelMallocCount.so it also reports allocations \
        per committed entry.
        """)

    @Option(help: "Entries to commit per run.") var count = 200_000
    @Option(help: "Proposals kept in flight, comma-separated for several runs.") var inflight = "1,1000"
    @Option(help: "Entry payload bytes.") var entryBytes = 128
    @Flag(help: "One JSON object per run per line.") var json = false

    func run() throws {
        for f in inflight.split(separator: ",") {
            guard let n = Int(f), n > 0 else { throw ValidationError("--inflight takes positive integers") }
            var c = RaftBench.Config()
            c.count = count
            c.inflight = n
            c.entryBytes = entryBytes
            let r = try RaftBench(config: c).run()
            if json {
                print(r.json)
            } else {
                print("raft 3 nodes, \(n) in flight, \(entryBytes)-byte entries: \(Int(Double(count) / r.seconds)) commits/s" +
                      (r.allocationsPerEntry.map { String(format: ", %.3f allocations per entry", $0) } ?? ""))
            }
            fflush(nil)
        }
    }
}
