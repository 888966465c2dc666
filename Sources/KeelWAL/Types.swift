import struct Foundation.Data
import KeelProto

/// A raft log entry as the WAL stores it.
public struct Entry: Equatable, Sendable {
    /// 0 normal, 1 conf change, 2 conf change v2 (raftpb.EntryType).
    public var type: Int
    public var term: UInt64
    public var index: UInt64
    public var data: [UInt8]

    public init(type: Int = 0, term: UInt64, index: UInt64, data: [UInt8] = []) {
        self.type = type
        self.term = term
        self.index = index
        self.data = data
    }

    /// `raftpb.Entry` bytes as etcd writes them: Type, Term, Index always; Data when non-empty.
    public func encoded() -> [UInt8] {
        var e = Raftpb_Entry()
        e.type = Raftpb_EntryType(rawValue: type) ?? .entryNormal
        e.term = term
        e.index = index
        if !data.isEmpty { e.data = Data(data) }
        return [UInt8](try! e.serializedBytes() as [UInt8])
    }

    init(_ e: Raftpb_Entry) {
        type = e.type.rawValue
        term = e.term
        index = e.index
        data = [UInt8](e.data)
    }
}

/// Raft's durable vote and commit state.
public struct HardState: Equatable, Sendable {
    public var term: UInt64
    public var vote: UInt64
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: UInt64 = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public var isEmpty: Bool { term == 0 && vote == 0 && commit == 0 }

    /// `raftpb.HardState` bytes with all three fields, as etcd writes them.
    public func encoded() -> [UInt8] {
        var h = Raftpb_HardState()
        h.term = term
        h.vote = vote
        h.commit = commit
        return [UInt8](try! h.serializedBytes() as [UInt8])
    }

    init(_ h: Raftpb_HardState) {
        term = h.term
        vote = h.vote
        commit = h.commit
    }
}

/// The WAL's record of a snapshot (walpb.Snapshot).
public struct WALSnapshot: Equatable, Hashable, Sendable {
    public var index: UInt64
    public var term: UInt64

    public init(index: UInt64 = 0, term: UInt64 = 0) {
        self.index = index
        self.term = term
    }

    public func encoded() -> [UInt8] {
        var s = Walpb_Snapshot()
        s.index = index
        s.term = term
        return [UInt8](try! s.serializedBytes() as [UInt8])
    }
}

/// etcd's WAL metadata (etcdserverpb.Metadata).
public func encodeMetadata(nodeID: UInt64, clusterID: UInt64) -> [UInt8] {
    var m = Etcdserverpb_Metadata()
    m.nodeID = nodeID
    m.clusterID = clusterID
    return [UInt8](try! m.serializedBytes() as [UInt8])
}

/// Segment file names: `%016x-%016x.wal` (sequence, index of the first entry expected).
public enum SegmentName {
    public static func make(sequence: UInt64, index: UInt64) -> String {
        hex16(sequence) + "-" + hex16(index) + ".wal"
    }

    public static func parse(_ name: String) -> (sequence: UInt64, index: UInt64)? {
        guard name.hasSuffix(".wal") else { return nil }
        let parts = name.dropLast(4).split(separator: "-")
        guard parts.count == 2, parts[0].count == 16, parts[1].count == 16,
              let seq = UInt64(parts[0], radix: 16), let index = UInt64(parts[1], radix: 16) else { return nil }
        return (seq, index)
    }
}

func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - s.count)) + s
}
