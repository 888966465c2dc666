import Foundation
import KeelBackend
import KeelBolt
import KeelIO
import KeelProto
import KeelRaft
import KeelWAL
import SwiftProtobuf

/// `etcdctl snapshot restore`, as etcd 3.4 does it: a backend snapshot (from the Snapshot RPC
/// of etcd or keel) becomes the data directory of a new cluster that etcd 3.4 and keel both
/// start on.
///
/// - The sha256 trailer of a saved snapshot is checked and stripped (a file without one is
///   refused unless `skipHashCheck`; etcd's test: size mod 512 = 32).
/// - In the db, `members` and `members_removed` are replaced by the new cluster's members, and
///   `meta/consistent_index` is the member count.
/// - The WAL has one `ConfChangeAddNode` per member (term 1, the member JSON as context), a
///   hard state committing them, and a `.snap` at that index with the v2 store of the members.
///
/// Everything is built in a scratch directory next to the data directory and renamed into place
/// only when complete, so a failure leaves nothing; an existing data or WAL directory is never
/// touched.
public enum SnapshotRestore {
    public struct Options: Sendable {
        public var snapshotPath: String
        public var dataDir: String
        /// Empty: `<data-dir>/member/wal`.
        public var walDir = ""
        public var name: String
        public var initialCluster: String
        public var initialClusterToken = "etcd-cluster"
        public var initialAdvertisePeerURLs: [String]
        public var skipHashCheck = false
        /// `bolt` (etcd's file: etcd and keel start on it), `lmdb` (keel `--backend lmdb` only)
        /// or `crosscheck` (both files, for keel `--backend crosscheck`).
        public var backend = BackendKind.bolt

        public init(snapshotPath: String, dataDir: String, name: String, initialCluster: String, initialAdvertisePeerURLs: [String]) {
            self.snapshotPath = snapshotPath
            self.dataDir = dataDir
            self.name = name
            self.initialCluster = initialCluster
            self.initialAdvertisePeerURLs = initialAdvertisePeerURLs
        }
    }

    /// What the restore made.
    public struct Result: Sendable {
        public var memberID: UInt64
        public var clusterID: UInt64
        public var members: Int
        public var dbBytes: Int64
        public var hashChecked: Bool
    }

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case configuration(String)
        case exists(String)
        case badSnapshot(path: String, reason: String)
        case io(String)

        public var description: String {
            switch self {
            case .configuration(let m): return m
            case .exists(let m): return m
            case .badSnapshot(let path, let reason): return "\(path): \(reason)"
            case .io(let m): return m
            }
        }
    }

    public static func run(_ o: Options, fileSystem fs: any FileSystem = POSIXFileSystem()) throws(Failure) -> Result {
        let cluster: (memberID: UInt64, clusterID: UInt64, members: [UInt64: (name: String, peerURLs: [String])])
        do {
            cluster = try EtcdIdentity.bootstrap(members: try EtcdIdentity.parseInitialCluster(o.initialCluster), name: o.name,
                                                 advertisePeerURLs: o.initialAdvertisePeerURLs, token: o.initialClusterToken)
        } catch {
            throw .configuration(error.description)
        }
        if fs.exists(o.dataDir) { throw .exists("data-dir \"\(o.dataDir)\" exists") }
        if !o.walDir.isEmpty && fs.exists(o.walDir) { throw .exists("wal-dir \"\(o.walDir)\" exists") }

        // 1. The snapshot, its trailer checked.
        var bytes: [UInt8]
        do {
            let f = try fs.open(o.snapshotPath, options: .readOnly)
            defer { f.close() }
            let size = try f.size()
            guard size > 0, size < Int64(Int.max) else { throw Failure.badSnapshot(path: o.snapshotPath, reason: "empty") }
            bytes = try f.read(count: Int(size), at: 0)
        } catch let e as Failure {
            throw e
        } catch {
            throw .io("cannot read the snapshot \(o.snapshotPath): \(error)")
        }
        let hasHash = bytes.count % 512 == 32
        if hasHash {
            let trailer = Array(bytes[(bytes.count - 32)...])
            bytes.removeLast(32)
            if !o.skipHashCheck {
                let actual = SHA256.hash(bytes)
                guard actual == trailer else {
                    throw .badSnapshot(path: o.snapshotPath, reason: "expected sha256 \(hex(trailer)), got \(hex(actual)): the snapshot is damaged")
                }
            }
        } else if !o.skipHashCheck {
            throw .badSnapshot(path: o.snapshotPath, reason: "snapshot missing hash but --skip-hash-check=false")
        }

        // 2. Build in scratch, then rename into place.
        let scratch = o.dataDir + ".restoring-\(getpid())"
        do {
            if fs.exists(scratch) { try fs.removeTree(scratch) }
            try fs.makeDirectoryDurably(scratch + "/member/snap")
        } catch {
            throw .io("cannot create \(scratch): \(error)")
        }
        do throws(Failure) {
            let members = cluster.members.keys.sorted()
            try writeDB(bytes, to: scratch + "/member/snap/db", members: cluster.members, fs: fs, source: o.snapshotPath)
            if o.backend != .bolt { try convertToLMDB(scratch + "/member/snap", keepBolt: o.backend == .crosscheck, fs: fs) }
            let scratchWAL = o.walDir.isEmpty ? scratch + "/member/wal" : o.walDir + ".restoring-\(getpid())"
            try writeWALAndSnap(walDir: scratchWAL, snapDir: scratch + "/member/snap", memberID: cluster.memberID, clusterID: cluster.clusterID,
                                members: cluster.members, order: members, fs: fs)
            do {
                if !o.walDir.isEmpty { try fs.renameDurably(scratchWAL, to: o.walDir) }
                try fs.renameDurably(scratch, to: o.dataDir)
            } catch {
                throw .io("cannot move the restored directory into place at \(o.dataDir): \(error)")
            }
        } catch {
            try? fs.removeTree(scratch)
            if !o.walDir.isEmpty { try? fs.removeTree(o.walDir + ".restoring-\(getpid())") }
            throw error
        }
        return Result(memberID: cluster.memberID, clusterID: cluster.clusterID, members: cluster.members.count,
                      dbBytes: Int64(bytes.count), hashChecked: hasHash && !o.skipHashCheck)
    }

    static func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    /// The db: the snapshot's bytes, then new members and the consistent index.
    static func writeDB(_ bytes: [UInt8], to path: String, members: [UInt64: (name: String, peerURLs: [String])],
                        fs: any FileSystem, source: String) throws(Failure) {
        do {
            let f = try fs.open(path, options: .createReadWrite)
            defer { f.close() }
            try f.write(bytes, at: 0)
            try f.sync()
            try fs.syncDirectory(parentDirectory(path))
        } catch {
            throw .io("cannot write \(path): \(error)")
        }
        let db: DB
        do { db = try DB.open(path: path) } catch {
            throw .badSnapshot(path: source, reason: "not a bbolt file etcd or keel saved: \(error)")
        }
        do {
            try db.update { (tx: Tx) throws(BoltError) in
                for name in ["members", "members_removed"] {
                    if try tx.bucket(Array(name.utf8)) != nil { try tx.deleteBucket(Array(name.utf8)) }
                }
                let bucket = try tx.createBucketIfNotExists(Array("members".utf8))
                _ = try tx.createBucketIfNotExists(Array("members_removed".utf8))
                for (id, m) in members {
                    try bucket.put(Array(String(id, radix: 16).utf8), EtcdIdentity.memberJSON(id: id, peerURLs: m.peerURLs, name: m.name))
                }
                let meta = try tx.createBucketIfNotExists(Array("meta".utf8))
                let count = UInt64(members.count)
                try meta.put(Array("consistent_index".utf8), (0..<8).reversed().map { UInt8(truncatingIfNeeded: count >> (UInt64($0) * 8)) })
            }
        } catch {
            try? db.close()
            throw .badSnapshot(path: source, reason: "cannot update the restored db: \(error)")
        }
        do { try db.close() } catch { throw .io("cannot close \(path) durably: \(error)") }
    }

    /// The restored bolt db copied into an LMDB environment (`db.lmdb`, where keel's
    /// `--backend lmdb` looks); the bolt file is removed unless both are wanted (`crosscheck`).
    static func convertToLMDB(_ snapDir: String, keepBolt: Bool, fs: any FileSystem) throws(Failure) {
        do {
            let bolt = try BoltBackend(path: snapDir + "/db")
            try fs.makeDirectoryDurably(snapDir + "/db.lmdb")
            let lmdb = try LMDBBackend(path: snapDir + "/db.lmdb")
            do {
                try BackendCopy.copyBuckets(from: bolt, to: lmdb)
            } catch {
                lmdb.close()
                try? bolt.close()
                throw error
            }
            lmdb.close()
            try bolt.close()
            if !keepBolt { try fs.remove(snapDir + "/db") }
            try fs.syncDirectory(snapDir)
        } catch {
            throw .io("cannot convert the restored db to LMDB in \(snapDir): \(error)")
        }
    }

    /// The WAL with the members' conf changes and the `.snap` at their index.
    static func writeWALAndSnap(walDir: String, snapDir: String, memberID: UInt64, clusterID: UInt64,
                                members: [UInt64: (name: String, peerURLs: [String])], order: [UInt64], fs: any FileSystem) throws(Failure) {
        do {
            let wal = try WAL.create(fileSystem: fs, directory: walDir, metadata: encodeMetadata(nodeID: memberID, clusterID: clusterID))
            defer { try? wal.close() }
            var entries: [Entry] = []
            for (i, id) in order.enumerated() {
                var cc = Raftpb_ConfChange()
                cc.type = .confChangeAddNode
                cc.nodeID = id
                cc.context = Data(EtcdIdentity.memberJSON(id: id, peerURLs: members[id]!.peerURLs, name: members[id]!.name))
                entries.append(Entry(type: 1, term: 1, index: UInt64(i + 1), data: try cc.serializedBytes()))
            }
            let commit = UInt64(order.count)
            try wal.save(hardState: HardState(term: 1, vote: order[0], commit: commit), entries: entries)
            let v2 = V2Store.json(members: order.map { V2Member(id: $0, name: members[$0]!.name, peerURLs: members[$0]!.peerURLs, clientURLs: []) })
            var snap = RaftSnapshot(data: v2, index: commit, term: 1)
            snap.confState.voters = order
            try Snapshotter(fileSystem: fs, directory: snapDir).save(term: 1, index: commit, snapshot: try snap.proto.serializedBytes())
            try wal.saveSnapshot(WALSnapshot(index: commit, term: 1))
        } catch {
            throw .io("cannot write the WAL and snapshot for the restored member: \(error)")
        }
    }
}
