import ArgumentParser
import KeelBench
import KeelIO

/// `keelutl bench wal`: group-committed appends through KeelWAL.
struct WALBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wal",
        abstract: "Append entries through KeelWAL from concurrent writers sharing fdatasyncs (group commit).",
        discussion: """
        The WAL is created in --dir itself, exactly as etcd creates one, so etcd's reader opens it
        from an empty snapshot. Reports entries/s, fdatasyncs/s, entries per fdatasync and the
        append-to-durable latency.
        """
    )

    @Option(help: "Directory for the WAL (must not hold one).")
    var dir: String
    @Flag(help: "Keep the WAL afterwards.")
    var keep = false
    @Option(help: "Entries to append.")
    var entries = 10_000
    @Option(help: "Bytes of data per entry.")
    var entrySize = 256
    @Option(help: "Concurrent writers.")
    var writers = 1
    @Flag(help: "JSON on the last line.")
    var json = false

    func run() throws {
        var config = WALBench.Config(directory: dir)
        config.entries = entries
        config.entrySize = entrySize
        config.writers = writers
        let result: WALBench.Result
        do {
            result = try WALBench(config: config).run()
        } catch {
            printError("keelutl bench wal: \(error)")
            throw ExitCode(1)
        }
        if !keep { removeWAL(dir) }
        if json {
            print(result.json)
        } else {
            print("# wal \(result.entries) entries of \(entrySize) B from \(writers) writers in \(String(format2: result.seconds)) s")
            print("# \(Int(result.entriesPerSecond)) entries/s, \(Int(result.fdatasyncsPerSecond)) fdatasyncs/s, \(String(format2: result.entriesPerFdatasync)) entries per fdatasync")
            print("# append-to-durable latency p50 \(Int(result.microseconds(0.5))) us, p99 \(Int(result.microseconds(0.99))) us")
        }
    }

    private func removeWAL(_ dir: String) {
        let fs = POSIXFileSystem()
        for name in (try? fs.listDirectory(dir)) ?? [] where name.hasSuffix(".wal") || name.hasSuffix(".tmp") {
            try? fs.remove(dir + "/" + name)
        }
    }
}
