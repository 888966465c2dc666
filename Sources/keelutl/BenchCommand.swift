import ArgumentParser
import KeelBench
#if canImport(Glibc)
import Glibc
#endif

/// `keelutl bench`: bbolt bench's flags and phases, plus random reads, a scan and small
/// synced transactions.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark the storage engine: write, random point reads, full scan, small synced transactions.",
        discussion: """
        Keys go to bucket "bench": a big-endian counter in the leading bytes (seq) or random bytes (rnd);
        values are --value-size zero bytes. Every write transaction is fdatasync'd twice (pages, then
        meta) unless --no-sync. --json prints one object per phase per line.
        """
    )

    @Option(help: "Database file (default: a temporary file, removed afterwards).")
    var path: String?
    @Flag(help: "Keep the database file afterwards.")
    var keep = false
    @Option(help: "Number of keys to write.")
    var count = 1000
    @Option(help: "Keys per write transaction (0: all in one; must divide --count).")
    var batchSize = 0
    @Option(help: "Key size in bytes.")
    var keySize = 8
    @Option(help: "Value size in bytes.")
    var valueSize = 32
    @Option(help: "seq, rnd, seq-nest or rnd-nest.")
    var writeMode = "seq"
    @Option(help: "seq or rnd: the order of the point reads.")
    var readMode = "seq"
    @Option(help: "Fill percent of split pages (0.1-1.0).")
    var fillPercent = 0.5
    @Flag(help: "Skip fdatasync (unsafe).")
    var noSync = false
    @Option(help: "Single-put synced transactions in the small-txn phase (0 skips it).")
    var smallTxns = 10_000
    @Option(help: "Seed for random keys and read order.")
    var seed: UInt64 = 1
    @Option(help: "Page size of a new file.")
    var pageSize = 4096
    @Flag(help: "One JSON object per phase per line.")
    var json = false

    func run() throws {
        var config = BenchConfig()
        config.path = path
        config.keep = keep
        config.count = count
        config.batchSize = batchSize
        config.keySize = keySize
        config.valueSize = valueSize
        guard let w = WriteMode(rawValue: writeMode) else { throw ValidationError("--write-mode must be seq, rnd, seq-nest or rnd-nest") }
        guard let r = ReadMode(rawValue: readMode) else { throw ValidationError("--read-mode must be seq or rnd") }
        config.writeMode = w
        config.readMode = r
        config.fillPercent = fillPercent
        config.noSync = noSync
        config.smallTransactions = smallTxns
        config.seed = seed
        config.pageSize = pageSize
        if let problem = config.problem() { throw ValidationError(problem) }

        var bench = BoltBench(config: config)
        let bar = ProgressBar()
        if bar.enabled { bench.progress = { phase, fraction in bar.show(phase, fraction) } }
        do {
            try bench.run { result in
                bar.clear()
                print(json ? result.json : result.text)
                fflush(nil)
            }
        } catch {
            bar.clear()
            printError("keelutl bench: \(error)")
            throw ExitCode(1)
        }
        if !json {
            print("# peak memory \(peakRSS() / 1_048_576) MiB")
        }
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal.
final class ProgressBar {
    let enabled = isatty(2) == 1

    func show(_ phase: String, _ fraction: Double) {
        let width = 30
        let done = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: done) + String(repeating: " ", count: width - done)
        printError("\r\((phase + String(repeating: " ", count: max(0, 10 - phase.count)))) [\(bar)] \(Int(fraction * 100))%", newline: false)
    }

    func clear() {
        if enabled { printError("\r\u{1B}[K", newline: false) }
    }
}

func printError(_ message: String, newline: Bool) { writeStandardError(newline ? message + "\n" : message) }
