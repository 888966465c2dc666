import ArgumentParser
import Foundation
import KeelBackend
import KeelInspect
import KeelIO
import KeelLMDB
import KeelWAL

/// `keelutl snap dump FILE`.
struct SnapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snap", abstract: "etcd .snap files.", subcommands: [SnapDumpCommand.self])
}

struct SnapDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dump",
                                                    abstract: "A .snap file: CRC check, metadata, conf state and a summary of the v2 store.")
    @Argument var file: String

    func run() throws {
        do {
            for line in try SnapDump(path: file).lines { print(line) }
        } catch {
            printError("keelutl snap dump: \(error)")
            throw ExitCode(1)
        }
    }
}


/// `keelutl lmdb info|stats|keys|get DIR …`: LMDB environments.
struct LMDBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lmdb", abstract: "LMDB environments: info and stats as mdb_stat, keys and get.",
        subcommands: [LMDBInfoCommand.self, LMDBStatsCommand.self, LMDBKeysCommand.self, LMDBGetCommand.self])
}

func openLMDB(_ dir: String, _ command: String) throws -> LMDBBackend {
    var options = LMDBOptions()
    options.readOnly = true
    do { return try LMDBBackend(path: dir, options: options) } catch {
        printError("keelutl lmdb \(command): \(error)")
        throw ExitCode(2)
    }
}

struct LMDBInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Environment info (mdb_stat -e).")
    @Argument var dir: String
    func run() throws {
        let backend = try openLMDB(dir, "info")
        defer { backend.close() }
        let info = try backend.env.info()
        print("Environment Info")
        print("  Map size: \(info.mapSize)")
        print("  Number of pages used: \(info.lastPage + 1)")
        print("  Last transaction ID: \(info.lastTxnID)")
        print("  Max readers: \(info.maxReaders)")
        print("  Number of readers used: \(info.readers)")
        print("  Page size: \(info.pageSize)")
        print("  Size in use: \(try backend.sizeInUse()) of \(try backend.size()) bytes")
    }
}

struct LMDBStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Buckets and their entry counts.")
    @Argument var dir: String
    func run() throws {
        let backend = try openLMDB(dir, "stats")
        defer { backend.close() }
        let raw = try backend.env.namedDatabases()
        if !raw.isEmpty && !raw.contains("__keel/buckets") {
            // Not made by Keel: list LMDB's named databases as mdb_stat -a does.
            for name in raw { print("\(name): \(try backend.env.rawEntries(database: name).count) entries") }
            return
        }
        let tx = try backend.beginRead()
        defer { tx.end() }
        func walk(_ path: BucketPath) throws {
            for name in try tx.buckets(in: path) {
                let child = path + [name]
                let entries = try tx.bucket(child).entries().count
                print("\(BucketName.display(child)): \(entries) entries")
                try walk(child)
            }
        }
        try walk([])
    }
}

struct LMDBKeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "Keys of a (nested) bucket.")
    @Argument var dir: String
    @Argument var buckets: [String]
    func run() throws {
        let backend = try openLMDB(dir, "keys")
        defer { backend.close() }
        let tx = try backend.beginRead()
        defer { tx.end() }
        do {
            for (key, _) in try tx.bucket(buckets.map { Array($0.utf8) }).entries() { print(displayValue(key)) }
        } catch {
            printError("keelutl lmdb keys: \(error)")
            throw ExitCode(1)
        }
    }
}

struct LMDBGetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "The value of a key in a (nested) bucket.")
    @Argument var dir: String
    @Argument(help: "Bucket names, then the key.") var names: [String]
    func run() throws {
        guard names.count >= 2 else { throw ValidationError("give at least one bucket and a key") }
        let backend = try openLMDB(dir, "get")
        defer { backend.close() }
        let tx = try backend.beginRead()
        defer { tx.end() }
        do {
            guard let value = try tx.bucket(names.dropLast().map { Array($0.utf8) }).get(Array(names.last!.utf8)) else {
                printError("Error key not found for key: \"\(names.last!)\"")
                throw ExitCode(1)
            }
            print(displayValue(value))
        } catch let exit as ExitCode {
            throw exit
        } catch {
            printError("keelutl lmdb get: \(error)")
            throw ExitCode(1)
        }
    }
}
