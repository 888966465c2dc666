import Foundation
import KeelProto

/// Conversions between KeelRaft's value types and etcd's `raftpb` messages, byte-compatible
/// with etcd's encoding (fields etcd's gogo marshaller always writes are always set).
extension RaftEntry {
    public init(_ e: Raftpb_Entry) {
        self.init(term: e.term, index: e.index, type: EntryType(rawValue: e.type.rawValue) ?? .normal, data: [UInt8](e.data))
    }

    public var proto: Raftpb_Entry {
        var e = Raftpb_Entry()
        e.term = term
        e.index = index
        e.type = Raftpb_EntryType(rawValue: type.rawValue) ?? .entryNormal
        if !data.isEmpty { e.data = Data(data) }
        return e
    }
}

extension RaftHardState {
    public init(_ h: Raftpb_HardState) { self.init(term: h.term, vote: h.vote, commit: h.commit) }

    public var proto: Raftpb_HardState {
        var h = Raftpb_HardState()
        h.term = term
        h.vote = vote
        h.commit = commit
        return h
    }
}

extension RaftMessage {
    /// - Throws: `.corrupt` for a message type etcd does not define.
    public init(_ m: Raftpb_Message) throws(RaftError) {
        guard let type = MessageType(rawValue: m.type.rawValue) else { throw RaftError.corrupt("unknown message type \(m.type.rawValue)") }
        self.init(type: type, to: m.to, from: m.from, term: m.term)
        logTerm = m.logTerm
        index = m.index
        entries = m.entries.map(RaftEntry.init)
        commit = m.commit
        reject = m.reject
        rejectHint = m.rejectHint
        context = [UInt8](m.context)
    }

    public var proto: Raftpb_Message {
        var m = Raftpb_Message()
        m.type = Raftpb_MessageType(rawValue: type.rawValue) ?? .msgHup
        m.to = to
        m.from = from
        m.term = term
        m.logTerm = logTerm
        m.index = index
        m.entries = entries.map(\.proto)
        m.commit = commit
        m.reject = reject
        m.rejectHint = rejectHint
        if !context.isEmpty { m.context = Data(context) }
        return m
    }
}
