import ArgumentParser
import Foundation
import KeelBench

/// `keelutl bench mvcc`: etcd's MVCC workloads on KeelMVCC (compare with Benchmarks/compare-mvcc.sh).
struct MVCCBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mvcc",
        abstract: "Put, single-key range, 100-key range and txn put through KeelMVCC on the bbolt-format backend.",
        discussion: "Benchmarks/compare-mvcc.sh runs the same workload on etcd 3.4's Go mvcc beside it and prints ratios.")

    @Option(help: "Database file (removed afterwards).")
    var path = NSTemporaryDirectory() + "keel-bench-mvcc.db"
    @Option(help: "Keys to put.")
    var count = 100_000
    @Option(help: "Key size in bytes.")
    var keySize = 32
    @Option(help: "Value size in bytes.")
    var valueSize = 256
    @Option(help: "Seed of the key generator (the Go side uses the same).")
    var seed: UInt64 = 1
    @Flag(help: "One JSON object per phase per line.")
    var json = false

    func run() throws {
        var config = MVCCBench.Config(path: path)
        config.count = count
        config.keySize = keySize
        config.valueSize = valueSize
        config.seed = seed
        do {
            try MVCCBench(config: config).run { result in
                print(json ? result.json : result.text.replacingFirst("# ", with: "# mvcc "))
                fflush(nil)
            }
        } catch {
            printError("keelutl bench mvcc: \(error)")
            throw ExitCode(1)
        }
    }
}
