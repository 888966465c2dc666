import ArgumentParser
import Foundation
import KeelBackend
import KeelBench
import KeelBolt
import KeelLMDB

/// `keelutl crosscheck`: a seeded random workload through KeelBolt and LMDB side by side.
struct CrossCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crosscheck",
        abstract: "Run a seeded random workload on KeelBolt and LMDB at once and compare every result.",
        discussion: "Prints OK with the counts, or the first divergence with the operations that led there (exit 1)."
    )

    @Option(help: "Operations to run.")
    var ops = 10_000
    @Option(help: "Seed (a random one is printed when omitted).")
    var seed: UInt64?
    @Option(help: "Largest value in bytes (values cross the page size to exercise overflow pages).")
    var valueSizeMax = 10_000
    @Option(help: "Directory for the two stores (default: a temporary one, removed afterwards).")
    var dir: String?
    @Option(help: "KeelBolt page size.")
    var pageSize = 4096

    func run() throws {
        let seed = self.seed ?? UInt64.random(in: 1...UInt64(Int64.max))
        let directory = dir ?? NSTemporaryDirectory() + "keel-crosscheck-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: directory) } }
        let pageSize = self.pageSize
        let check = CrossCheck(operations: ops, seed: seed, valueSizeMax: valueSizeMax) { () throws(BackendError) in
            var boltOptions = Options()
            boltOptions.pageSize = pageSize
            boltOptions.noSync = true
            var lmdbOptions = LMDBOptions()
            lmdbOptions.noSync = true
            lmdbOptions.mapSize = 1 << 20
            return CrossCheckedBackend(primary: try BoltBackend(path: directory + "/bolt.db", options: boltOptions),
                                       secondary: try LMDBBackend(path: directory + "/lmdb", options: lmdbOptions))
        }
        do {
            let report = try check.run()
            print("OK seed \(seed): \(report)")
        } catch {
            print("FAILED seed \(seed): \(error)")
            throw ExitCode(1)
        }
    }
}
