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
        entries = RaftEntries(m.entries.map(RaftEntry.init))
        commit = m.commit
        reject = m.reject
        rejectHint = m.rejectHint
        context = [UInt8](m.context)
        if m.hasSnapshot, m.type == .msgSnap { snapshot = RaftSnapshot(m.snapshot) }
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
        if let s = snapshot { m.snapshot = s.proto }
        return m
    }
}

extension ConfState {
    public init(_ c: Raftpb_ConfState) {
        self.init(voters: c.voters, learners: c.learners, votersOutgoing: c.votersOutgoing, learnersNext: c.learnersNext, autoLeave: c.autoLeave)
    }

    public var proto: Raftpb_ConfState {
        var c = Raftpb_ConfState()
        c.voters = voters
        c.learners = learners
        c.votersOutgoing = votersOutgoing
        c.learnersNext = learnersNext
        c.autoLeave = autoLeave
        return c
    }
}

extension RaftSnapshot {
    public init(_ s: Raftpb_Snapshot) {
        self.init(data: [UInt8](s.data), index: s.metadata.index, term: s.metadata.term, confState: ConfState(s.metadata.confState))
    }

    public var proto: Raftpb_Snapshot {
        var s = Raftpb_Snapshot()
        if !data.isEmpty { s.data = Data(data) }
        s.metadata.confState = confState.proto
        s.metadata.index = index
        s.metadata.term = term
        return s
    }
}

extension ConfChange {
    /// Decodes the conf change an entry of type `confChange` or `confChangeV2` carries.
    /// - Throws: `.corrupt` when the entry is of another type or its data does not decode.
    public init(entry: RaftEntry) throws(RaftError) {
        do {
            switch entry.type {
            case .confChange:
                let c = try Raftpb_ConfChange(serializedBytes: entry.data)
                guard let t = ConfChangeType(rawValue: c.type.rawValue) else { throw RaftError.corrupt("entry \(entry.index): unknown conf change type \(c.type.rawValue)") }
                self.init(v1: t, nodeID: c.nodeID, context: [UInt8](c.context), id: c.id)
            case .confChangeV2:
                let c = try Raftpb_ConfChangeV2(serializedBytes: entry.data)
                var changes: [ConfChangeSingle] = []
                for s in c.changes {
                    guard let t = ConfChangeType(rawValue: s.type.rawValue) else { throw RaftError.corrupt("entry \(entry.index): unknown conf change type \(s.type.rawValue)") }
                    changes.append(ConfChangeSingle(t, s.nodeID))
                }
                guard let tr = ConfChangeTransition(rawValue: c.transition.rawValue) else { throw RaftError.corrupt("entry \(entry.index): unknown transition \(c.transition.rawValue)") }
                self.init(changes: changes, transition: tr, context: [UInt8](c.context))
            case .normal:
                throw RaftError.corrupt("entry \(entry.index) is a normal entry, not a conf change")
            }
        } catch let e as RaftError {
            throw e
        } catch {
            throw RaftError.corrupt("entry \(entry.index): conf change does not decode: \(error)")
        }
    }

    /// The entry data etcd writes for this change (`raftpb.ConfChange` for v1, `ConfChangeV2` otherwise).
    public var encoded: [UInt8] {
        if isV1 {
            var c = Raftpb_ConfChange()
            c.id = id
            c.type = Raftpb_ConfChangeType(rawValue: changes[0].type.rawValue) ?? .confChangeAddNode
            c.nodeID = changes[0].nodeID
            if !context.isEmpty { c.context = Data(context) }
            return (try? c.serializedBytes()) ?? []
        }
        var c = Raftpb_ConfChangeV2()
        // etcd's gogo encoding always writes the transition, even `auto` (0).
        c.transition = Raftpb_ConfChangeTransition(rawValue: transition.rawValue) ?? .auto
        c.changes = changes.map { s in
            var x = Raftpb_ConfChangeSingle()
            x.type = Raftpb_ConfChangeType(rawValue: s.type.rawValue) ?? .confChangeAddNode
            x.nodeID = s.nodeID
            return x
        }
        if !context.isEmpty { c.context = Data(context) }
        return (try? c.serializedBytes()) ?? []
    }

    /// etcd's compact rendering: `v1 l2 r3 u4`.
    public var changesDescription: String {
        changes.map { c -> String in
            let k: String
            switch c.type {
            case .addNode: k = "v"
            case .addLearnerNode: k = "l"
            case .removeNode: k = "r"
            case .updateNode: k = "u"
            }
            return k + String(c.nodeID)
        }.joined(separator: " ")
    }
}
