import ArgumentParser
import Foundation
import KeelBench
import KeelIO
#if canImport(Glibc)
import Glibc
#endif

/// `keelutl bench`: the storage engines (default) or the WAL.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: the storage engines (default) or the WAL (`keelutl bench wal`).",
        subcommands: [StorageBenchCommand.self, WALBenchCommand.self, MVCCBenchCommand.self, RaftBenchCommand.self],
        defaultSubcommand: StorageBenchCommand.self
    )
}

/// `keelutl bench [storage]`: bbolt bench's flags and phases, plus random reads, a scan and
/// small synced transactions.
struct StorageBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
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
    @Option(help: "Engines to run, comma-separated (bolt, lmdb); with two, a ratio line per phase follows.")
    var backend = "bolt"

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

        let kinds = try backend.split(separator: ",").map { name -> BenchBackendKind in
            guard let kind = BenchBackendKind(rawValue: String(name)) else {
                throw ValidationError("unknown backend '\(name)': use bolt, lmdb or bolt,lmdb")
            }
            return kind
        }
        let base = path ?? temporaryBenchPath()
        var bench = StorageBench(config: config)
        let bar = ProgressBar()
        if bar.enabled { bench.progress = { phase, fraction in bar.show(phase, fraction) } }
        var results: [String: [String: PhaseResult]] = [:]
        func emit(_ kind: BenchBackendKind, _ result: PhaseResult) {
            results[kind.rawValue, default: [:]][result.phase] = result
            print(json ? result.json : result.text.replacingFirst("# ", with: "# \(kind.rawValue) "))
            fflush(nil)
        }
        if kinds.count > 1 {
            // One child process per engine, so each one's peak memory is its own.
            for kind in kinds {
                for result in try runChild(kind) { emit(kind, result) }
            }
        }
        for kind in kinds where kinds.count == 1 {
            do {
                let engine = try kind.open(base: base, config: config)
                try bench.run(engine, dataPath: kind.dataPath(base: base)) { result in
                    bar.clear()
                    emit(kind, result)
                }
                try engine.close()
                if !keep { kind.remove(base: base) }
            } catch {
                bar.clear()
                if !keep { kind.remove(base: base) }
                printError("keelutl bench (\(kind.rawValue)): \(error)")
                throw ExitCode(1)
            }
        }
        if kinds.count == 2, let a = results[kinds[0].rawValue], let b = results[kinds[1].rawValue] {
            for ratio in PhaseRatio.ratios(a, b, engines: (kinds[0].rawValue, kinds[1].rawValue)) {
                print(json ? ratio.json : ratio.text)
            }
            if !json {
                print("# file size \(kinds[0].rawValue) \(a["write"]?.fileBytes ?? 0) bytes, \(kinds[1].rawValue) \(b["write"]?.fileBytes ?? 0) bytes")
            }
        }
        if !json {
            for kind in kinds {
                let rss = results[kind.rawValue]?.values.map(\.peakRSSBytes).max() ?? 0
                print("# \(kind.rawValue) peak memory \(rss / 1_048_576) MiB")
            }
        }
    }

    /// Runs this bench for one engine in a child process and reads its JSON lines.
    private func runChild(_ kind: BenchBackendKind) throws -> [PhaseResult] {
        do {
            return try BenchChild.run(kind: kind, arguments: Array(CommandLine.arguments.dropFirst()))
        } catch {
            printError("keelutl bench (\(kind.rawValue)): \(error)")
            throw ExitCode(1)
        }
    }
}

extension String {
    init(format2 value: Double) { self = formatDecimal(value, 2) }

    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return String(self[..<range.lowerBound]) + replacement + String(self[range.upperBound...])
    }
}

func temporaryBenchPath() -> String {
    let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    return "\(dir)/keel-bench-\(getpid())"
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
