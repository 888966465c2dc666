import ArgumentParser
import Foundation
import KeelBolt
import KeelInspect
import KeelNode
import KeelIO

/// Output formats, as etcdctl's `-w`.
enum OutputFormat: String, ExpressibleByArgument {
    case table, json, simple
}

/// Opens a bbolt file read-only for inspection; a clear error and exit 2 when it cannot.
func openReadOnly(_ path: String, command: String) throws -> DB {
    var options = Options()
    options.readOnly = true
    options.lockTimeout = 5
    do {
        return try DB.open(path: path, options: options)
    } catch {
        printError("keelutl \(command): \(error)")
        throw ExitCode(2)
    }
}

/// `keelutl snapshot status FILE`.
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "etcd snapshot files.",
                                                    subcommands: [SnapshotStatusCommand.self, SnapshotRestoreCommand.self])
}

/// `keelutl snapshot restore FILE --data-dir D --name N --initial-cluster … …`, as etcdctl's.
struct SnapshotRestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "A new single- or multi-member data directory from a snapshot, as `etcdctl snapshot restore` makes it (etcd 3.4 and keel both start on it).")

    @Argument(help: "The snapshot file (`etcdctl snapshot save` from etcd or keel; with its sha256 trailer).")
    var file: String
    @Option(help: "The data directory to create; it must not exist (default <name>.etcd).")
    var dataDir: String = ""
    @Option(help: "A separate WAL directory to create (default <data-dir>/member/wal).")
    var walDir: String = ""
    @Option(help: "This member's name.")
    var name: String = "default"
    @Option(help: "The new cluster: name=peer-URL,…")
    var initialCluster: String = "default=http://localhost:2380"
    @Option(help: "The new cluster's token (it enters the member and cluster IDs).")
    var initialClusterToken: String = "etcd-cluster"
    @Option(help: "This member's peer URLs, comma-separated.")
    var initialAdvertisePeerUrls: String = "http://localhost:2380"
    @Flag(help: "Restore a file without a sha256 trailer (member/snap/db copied by hand), or ignore a mismatch.")
    var skipHashCheck = false
    @Option(help: "The backend to restore into: bolt (etcd's file; etcd and keel start on it), lmdb or crosscheck (keel's --backend).")
    var backend: String = "bolt"

    func run() throws {
        var o = SnapshotRestore.Options(snapshotPath: file, dataDir: dataDir.isEmpty ? name + ".etcd" : dataDir, name: name,
                                        initialCluster: initialCluster,
                                        initialAdvertisePeerURLs: initialAdvertisePeerUrls.split(separator: ",").map(String.init))
        o.walDir = walDir
        o.initialClusterToken = initialClusterToken
        o.skipHashCheck = skipHashCheck
        guard let kind = BackendKind(rawValue: backend) else { throw ValidationError("--backend must be bolt, lmdb or crosscheck") }
        o.backend = kind
        do {
            let r = try SnapshotRestore.run(o)
            print("restored snapshot \(file) into \(o.dataDir): member \(String(r.memberID, radix: 16)) of cluster \(String(r.clusterID, radix: 16)) (\(r.members) member\(r.members == 1 ? "" : "s")), db \(r.dbBytes) bytes, sha256 \(r.hashChecked ? "checked" : "not checked")")
        } catch {
            printError("keelutl snapshot restore: \(error)")
            throw ExitCode(1)
        }
    }
}

struct SnapshotStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "HASH, REVISION, TOTAL KEYS and TOTAL SIZE of a bbolt file, exactly as `etcdctl snapshot status`.")

    @Argument(help: "The bbolt file (an etcd snapshot or member/snap/db).")
    var file: String
    @Option(name: .shortAndLong, help: "table, json or simple.")
    var writeOut: OutputFormat = .table

    func run() throws {
        let db = try openReadOnly(file, command: "snapshot status")
        defer { try? db.close() }
        let status: SnapshotStatus
        do {
            status = try SnapshotStatus.compute(db)
        } catch {
            printError("keelutl snapshot status: \(error)")
            throw ExitCode(1)
        }
        switch writeOut {
        case .table: print(status.table)
        case .json: print(status.json)
        case .simple: print(status.simple)
        }
    }
}

/// `keelutl etcd dump FILE`.
struct EtcdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "etcd", abstract: "etcd backend files.",
                                                    subcommands: [EtcdDumpCommand.self])
}

struct EtcdDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Every bucket of an etcd backend file, decoded (key revisions, meta, leases, members, alarms, auth).")

    @Argument(help: "The etcd backend file (member/snap/db).")
    var file: String
    @Option(help: "Only keys starting with this prefix (key bucket).")
    var keyPrefix: String?
    @Option(help: "Only revisions in A:B (key bucket).")
    var revRange: String?
    @Option(help: "At most this many entries per bucket.")
    var limit: Int?
    @Option(name: .shortAndLong, help: "table (indented lines) or json (one object per line: bucket and text).")
    var writeOut: OutputFormat = .table

    func run() throws {
        var range: ClosedRange<Int64>?
        if let revRange {
            let parts = revRange.split(separator: ":").compactMap { Int64($0) }
            guard parts.count == 2, parts[0] <= parts[1] else { throw ValidationError("--rev-range takes A:B with A <= B") }
            range = parts[0]...parts[1]
        }
        let db = try openReadOnly(file, command: "etcd dump")
        defer { try? db.close() }
        let dump = EtcdDump(keyPrefix: keyPrefix.map { Array($0.utf8) }, revisionRange: range, limit: limit)
        do {
            let (lines, problems) = try dump.lines(db)
            var bucket = ""
            for line in lines {
                if writeOut == .json {
                    if line.hasPrefix("bucket ") { bucket = String(line.dropFirst(7)); continue }
                    var json = JSONLine()
                    json.add("bucket", bucket)
                    json.add("entry", line.trimmingCharacters(in: .whitespaces))
                    print(json)
                } else {
                    print(line)
                }
            }
            for problem in problems { printError("problem: \(problem)") }
            if !problems.isEmpty { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            printError("keelutl etcd dump: \(error)")
            throw ExitCode(1)
        }
    }
}

/// `keelutl wal dump DIR`.
struct WALCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wal", abstract: "etcd WAL directories.",
                                                    subcommands: [WALDumpCommand.self])
}

struct WALDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Every record of a WAL directory (segment, offset, type, term, index; entries decoded), CRCs checked.",
        discussion: "A torn tail or a damaged record is reported with its segment and offset, and the exit status is 1.")

    @Argument(help: "The WAL directory (member/wal).")
    var dir: String
    @Option(help: "Only entries with this index or later.")
    var startIndex: UInt64 = 0
    @Option(help: "normal or conf: only entries of this type.")
    var entryType: String?
    @Option(name: .shortAndLong, help: "table (one line per record) or json (one object per record per line).")
    var writeOut: OutputFormat = .table

    func run() throws {
        let dump = WALDump(startIndex: startIndex, entryType: entryType)
        let (lines, stop) = try dump.records(fileSystem: POSIXFileSystem(), directory: dir)
        for line in lines { print(writeOut == .json ? line.json : line.text) }
        if let stop {
            printError("keelutl wal dump: \(stop)")
            throw ExitCode(1)
        }
    }
}

/// `keelutl info PATH`, `buckets PATH`, `keys PATH BUCKET...`, `get PATH BUCKET... KEY`.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "The page size (and meta) of a bbolt file.")
    @Argument var path: String
    @Option(name: .shortAndLong, help: "table (bbolt's line) or json.")
    var writeOut: OutputFormat = .table
    func run() throws {
        let db = try openReadOnly(path, command: "info")
        defer { try? db.close() }
        let m = db.currentMeta
        if writeOut == .json {
            var json = JSONLine()
            json.add("pageSize", db.pageSize)
            json.add("txid", m.txid)
            json.add("root", m.root)
            json.add("highWaterMark", m.pgid)
            if m.freelist == PageLayout.noFreelist { json.addRaw("freelist", "null") } else { json.add("freelist", m.freelist) }
            print(json)
        } else {
            print("Page Size: \(db.pageSize)")
        }
    }
}

struct BucketsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "buckets", abstract: "Top-level bucket names, one per line.")
    @Argument var path: String
    @Option(name: .shortAndLong, help: "simple (one per line) or json (an array).")
    var writeOut: OutputFormat = .simple
    func run() throws {
        let db = try openReadOnly(path, command: "buckets")
        defer { try? db.close() }
        let names = try db.view({ tx throws(BoltError) in try tx.bucketNames() }).map { String(decoding: $0, as: UTF8.self) }
        if writeOut == .json { print(jsonArray(names)) } else { for name in names { print(name) } }
    }
}

/// A JSON array of strings.
func jsonArray(_ items: [String]) -> String { JSONLine.array(items) }

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "The keys of a (nested) bucket, one per line.")
    @Argument var path: String
    @Argument var buckets: [String]
    @Option(name: .shortAndLong, help: "simple (one per line) or json (an array).")
    var writeOut: OutputFormat = .simple
    func run() throws {
        let db = try openReadOnly(path, command: "keys")
        defer { try? db.close() }
        try db.view { tx throws in
            let bucket = try resolve(tx, buckets)
            var keys: [String] = []
            try bucket.forEach { k, _ throws(BoltError) in keys.append(k.description) }
            if writeOut == .json { print(jsonArray(keys)) } else { for k in keys { print(k) } }
        }
    }
}

struct GetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "The value of a key in a (nested) bucket.")
    @Argument var path: String
    @Argument(help: "Bucket names, then the key.") var names: [String]
    @Option(name: .shortAndLong, help: "simple (the value) or json ({\"key\",\"value\"} base64, as etcdctl).")
    var writeOut: OutputFormat = .simple
    func run() throws {
        guard names.count >= 2 else { throw ValidationError("give at least one bucket and a key") }
        let db = try openReadOnly(path, command: "get")
        defer { try? db.close() }
        try db.view { tx throws in
            let bucket = try resolve(tx, Array(names.dropLast()))
            let key = names.last!
            guard let value = try bucket.get(Array(key.utf8)) else {
                printError("Error key not found for key: \"\(key)\"")
                throw ExitCode(1)
            }
            if writeOut == .json {
                var json = JSONLine()
                json.add("key", Data(key.utf8).base64EncodedString())
                json.add("value", Data(value.bytes).base64EncodedString())
                print(json)
            } else {
                print(value.description)
            }
        }
    }
}

func resolve(_ tx: Tx, _ names: [String]) throws -> Bucket {
    guard let first = names.first, var bucket = try tx.bucket(Array(first.utf8)) else {
        printError("Error bucket not found: \(names.first ?? "")")
        throw ExitCode(1)
    }
    for name in names.dropFirst() {
        guard let next = try bucket.bucket(Array(name.utf8)) else {
            printError("Error bucket not found: \(name)")
            throw ExitCode(1)
        }
        bucket = next
    }
    return bucket
}
