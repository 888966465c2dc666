import struct Foundation.Data
import KeelIO
import KeelProto

/// etcd's `.snap` files: `%016x-%016x.snap` (term-index) holding `snappb.snapshot{crc, data}`,
/// where data is a `raftpb.Snapshot` and crc its CRC-32C. Written and fsynced in place, read
/// newest first; a file whose bytes are damaged is renamed `.broken`.
public struct Snapshotter {
    public let fileSystem: any FileSystem
    public let directory: String

    public init(fileSystem: any FileSystem, directory: String) {
        self.fileSystem = fileSystem
        self.directory = directory
    }

    public static func fileName(term: UInt64, index: UInt64) -> String { hex16(term) + "-" + hex16(index) + ".snap" }

    /// Writes `snapshot` (a serialized `raftpb.Snapshot`) for `term`/`index`: to a temporary
    /// name, fdatasynced, renamed into place and the directory fsynced, so a crash leaves either
    /// no file or the whole one.
    public func save(term: UInt64, index: UInt64, snapshot: [UInt8]) throws(WALError) {
        var wrapper = Snappb_snapshot()
        wrapper.crc = CRC32C.checksum(snapshot)
        wrapper.data = Data(snapshot)
        let bytes = [UInt8](try! wrapper.serializedBytes() as [UInt8])
        let path = joinPath(directory, Snapshotter.fileName(term: term, index: index))
        let temporary = path + ".tmp"
        try io { () throws(IOError) in
            let f = try fileSystem.open(temporary, options: OpenOptions(writable: true, create: true, mode: 0o644))
            defer { f.close() }
            try f.truncate(to: 0)
            try f.write(bytes, at: 0)
            try f.sync()
            try fileSystem.renameDurably(temporary, to: path)
        }
    }

    /// Reads and checks one .snap file; returns the `raftpb.Snapshot`.
    public func read(path: String) throws(WALError) -> Raftpb_Snapshot {
        let bytes = try io { () throws(IOError) in
            let f = try fileSystem.open(path, options: .readOnly)
            defer { f.close() }
            return try f.read(count: Int(try f.size()), at: 0)
        }
        guard !bytes.isEmpty else { throw WALError.badSnapshotFile(path: path, reason: "empty file") }
        guard let wrapper = try? Snappb_snapshot(serializedBytes: bytes) else {
            throw WALError.badSnapshotFile(path: path, reason: "not a snappb.snapshot")
        }
        guard wrapper.crc != 0 else { throw WALError.badSnapshotFile(path: path, reason: "crc is zero") }
        let data = [UInt8](wrapper.data)
        let actual = CRC32C.checksum(data)
        guard actual == wrapper.crc else {
            throw WALError.badSnapshotFile(path: path, reason: "crc mismatch: stored 0x\(String(wrapper.crc, radix: 16)), computed 0x\(String(actual, radix: 16))")
        }
        guard let snapshot = try? Raftpb_Snapshot(serializedBytes: data) else {
            throw WALError.badSnapshotFile(path: path, reason: "data is not a raftpb.Snapshot")
        }
        return snapshot
    }

    /// The .snap file names, newest (highest term-index) first.
    public func names() throws(WALError) -> [String] {
        let all = try io { () throws(IOError) in try fileSystem.listDirectory(directory) }
        return all.filter { $0.hasSuffix(".snap") }.sorted(by: >)
    }

    /// The newest readable snapshot; unreadable ones are renamed `.broken` on the way.
    public func loadNewest() throws(WALError) -> Raftpb_Snapshot {
        for name in try names() {
            let path = joinPath(directory, name)
            do throws(WALError) {
                return try read(path: path)
            } catch {
                // Only a file whose bytes are bad is set aside; a read that failed (EMFILE,
                // EACCES, EIO) says nothing about the file, so it is reported as it is.
                guard case .badSnapshotFile = error else { throw error }
                try io { () throws(IOError) in try fileSystem.renameDurably(path, to: path + ".broken") }
            }
        }
        throw WALError.noSnapshot(directory: directory)
    }
}
