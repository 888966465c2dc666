import Foundation
@testable import KeelRaft

/// A Swift counterpart of etcd's raft interaction harness (`raft/rafttest`): nodes over an
/// in-memory message list, driven by the commands of etcd's data-driven scripts
/// (`add-nodes`, `campaign`, `propose`, `propose-conf-change`, `process-ready`, `deliver-msgs`,
/// `stabilize`, `tick-heartbeat`, `compact`, `raft-log`, `status`, `log-level`) plus a few of
/// Keel's own (`transfer-leader`, `read-index`, `tick`, `report-unreachable`). Its output uses
/// etcd's renderings of Ready, messages and entries, so scripts compare line by line; Keel
/// writes no log lines, so those are left out of the comparison.
final class InteractionEnv {
    /// The storage of a script node: a MemoryStorage whose `snapshot()` is the node's latest
    /// applied state (as etcd's harness answers).
    final class ScriptStorage: RaftStorage {
        let memory = MemoryStorage()
        var snapshotOverride: (() -> RaftSnapshot)?
        func initialState() -> (hardState: RaftHardState, confState: ConfState) { memory.initialState() }
        func entries(_ low: UInt64, _ high: UInt64, maxBytes: UInt64) throws(RaftError) -> RaftEntries { try memory.entries(low, high, maxBytes: maxBytes) }
        func term(_ index: UInt64) throws(RaftError) -> UInt64 { try memory.term(index) }
        func firstIndex() -> UInt64 { memory.firstIndex() }
        func lastIndex() -> UInt64 { memory.lastIndex() }
        func snapshot() throws(RaftError) -> RaftSnapshot { if let o = snapshotOverride { return o() }; return try memory.snapshot() }
    }

    struct Node {
        var raw: RawNode
        var storage: ScriptStorage
        var config: RaftConfig
    }

    struct Arg {
        var key: String
        var vals: [String]
    }

    var nodes: [Node] = []
    var history: [[RaftSnapshot]] = []
    var messages: [RaftMessage] = []
    var out = ""
    /// 0 debug … 5 none (etcd's levels); at "none" any output is reported as "ok (quiet)".
    var level = 0
    /// Configuration tweaks for every node added (pre-vote, check-quorum, limits).
    var onConfig: ((inout RaftConfig) -> Void)?

    // MARK: Commands

    func handle(_ cmd: String, _ args: [Arg], input: String) -> String {
        out = ""
        var err: String?
        do {
            switch cmd {
            case "config": configure(args)
            case "add-nodes": try addNodes(args)
            case "campaign": try nodes[idx(args)].raw.campaign()
            case "compact": try compact(idx(args), UInt64(args[1].key)!)
            case "deliver-msgs": deliverMsgsCommand(args)
            case "process-ready": try processReady(idx(args))
            case "log-level": setLevel(args[0].key)
            case "raft-log": raftLog(idx(args))
            case "stabilize": try stabilize(args.filter { $0.vals.isEmpty }.map { Int($0.key)! - 1 })
            case "status": status(idx(args))
            case "tick-heartbeat": for _ in 0..<nodes[idx(args)].config.heartbeatTicks { nodes[idx(args)].raw.tick() }
            case "tick": for _ in 0..<(args.count > 1 ? Int(args[1].key)! : 1) { nodes[idx(args)].raw.tick() }
            case "propose": try nodes[idx(args)].raw.propose(Array(args[1].key.utf8))
            case "propose-conf-change": try proposeConfChange(idx(args), args, input: input)
            case "transfer-leader": nodes[idx(args)].raw.transferLeader(to: UInt64(args[1].key)!)
            case "read-index": nodes[idx(args)].raw.readIndex(context: Array(args[1].key.utf8))
            case "report-unreachable": nodes[idx(args)].raw.reportUnreachable(UInt64(args[1].key)!)
            default: err = "unknown command"
            }
        } catch {
            err = "\(error)"
        }
        if let e = err { out += e }
        if out.isEmpty { return "ok" }
        if level == 5 { return err ?? "ok (quiet)" }
        return out
    }

    private func idx(_ args: [Arg]) -> Int { Int(args[0].key)! - 1 }

    /// `config prevote=true checkquorum=true maxuncommitted=N maxsize=N maxinflight=N`: for nodes added later.
    private func configure(_ args: [Arg]) {
        var tweaks: [(inout RaftConfig) -> Void] = []
        for a in args {
            guard let v = a.vals.first else { continue }
            switch a.key {
            case "prevote": tweaks.append { $0.preVote = v == "true" }
            case "checkquorum": tweaks.append { $0.checkQuorum = v == "true" }
            case "maxuncommitted": tweaks.append { $0.maxUncommittedEntriesSize = UInt64(v)! }
            case "maxsize": tweaks.append { $0.maxSizePerMessage = UInt64(v)! }
            case "maxinflight": tweaks.append { $0.maxInflightMessages = Int(v)! }
            default: break
            }
        }
        onConfig = { c in for t in tweaks { t(&c) } }
    }

    private func setLevel(_ name: String) {
        let names = ["debug", "info", "warn", "error", "fatal", "none"]
        level = names.firstIndex(of: name.lowercased()) ?? 0
    }

    private func addNodes(_ args: [Arg]) throws {
        let n = Int(args[0].key)!
        var snap = RaftSnapshot()
        for a in args.dropFirst() {
            switch a.key {
            case "voters": snap.confState.voters += a.vals.map { UInt64($0)! }
            case "learners": snap.confState.learners += a.vals.map { UInt64($0)! }
            case "index": snap.index = UInt64(a.vals[0])!
            case "content": snap.data = Array(a.vals[0].utf8)
            default: break
            }
        }
        let bootstrap = snap != RaftSnapshot()
        for _ in 0..<n {
            let id = UInt64(nodes.count + 1)
            let storage = ScriptStorage()
            let i = nodes.count
            storage.snapshotOverride = { [unowned self] in self.history[i].last! }
            if bootstrap {
                snap.term = 1
                try storage.memory.applySnapshot(snap)
            }
            var config = RaftConfig(id: id, seed: id)
            config.electionTicks = 3
            config.heartbeatTicks = 1
            config.applied = snap.index
            config.maxSizePerMessage = .max
            config.maxInflightMessages = Int(Int32.max)
            config.checkQuorum = false
            config.preVote = false
            // etcd 3.4's behaviour (see RaftConfig.stepDownWhenRemoved), for comparisons.
            config.stepDownWhenRemoved = false
            onConfig?(&config)
            history.append([snap])
            nodes.append(Node(raw: try RawNode(config: config, storage: storage), storage: storage, config: config))
        }
    }

    private func compact(_ i: Int, _ newFirst: UInt64) throws {
        try nodes[i].storage.memory.compact(to: newFirst)
        raftLog(i)
    }

    private func raftLog(_ i: Int) {
        let s = nodes[i].storage.memory
        let fi = s.firstIndex(), li = s.lastIndex()
        if li < fi {
            out += "log is empty: first index=\(fi), last index=\(li)"
            return
        }
        if let es = try? s.entries(fi, li + 1, maxBytes: .max) { out += Describe.entries(es) }
    }

    private func status(_ i: Int) {
        let st = nodes[i].raw.status
        for id in st.progress.keys.sorted() { out += "\(id): \(st.progress[id]!.description)\n" }
    }

    private func proposeConfChange(_ i: Int, _ args: [Arg], input: String) throws {
        var v1 = false
        var transition = ConfChangeTransition.auto
        for a in args.dropFirst() {
            for v in a.vals {
                switch a.key {
                case "v1": v1 = v == "true"
                case "transition": transition = ["auto": .auto, "implicit": .jointImplicit, "explicit": .jointExplicit][v] ?? .auto
                default: break
                }
            }
        }
        var changes: [ConfChangeSingle] = []
        for tok in input.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let kind: ConfChangeType = ["v": .addNode, "l": .addLearnerNode, "r": .removeNode, "u": .updateNode][tok.first!]!
            changes.append(ConfChangeSingle(kind, UInt64(tok.dropFirst())!))
        }
        let cc = v1 ? ConfChange(v1: changes[0].type, nodeID: changes[0].nodeID) : ConfChange(changes: changes, transition: transition)
        try nodes[i].raw.proposeConfChange(cc)
    }

    func processReady(_ i: Int) throws {
        let raw = nodes[i].raw, s = nodes[i].storage.memory
        let rd = try raw.ready()
        out += Describe.ready(rd)
        if let hs = rd.hardState { s.setHardState(hs) }
        try s.append(rd.entries)
        if let snap = rd.snapshot { try s.applySnapshot(snap) }
        for e in rd.committedEntries {
            var update = e.data
            var cs: ConfState?
            if e.type != .normal {
                let cc = try ConfChange(entry: e)
                update = cc.context
                cs = try raw.applyConfChange(cc)
            }
            let last = history[i].last!
            history[i].append(RaftSnapshot(data: last.data + update, index: e.index, term: e.term, confState: cs ?? last.confState))
        }
        messages += rd.messages
        try raw.advance(rd)
    }

    private func deliverMsgsCommand(_ args: [Arg]) {
        var rs: [(UInt64, Bool)] = []
        for a in args {
            if a.vals.isEmpty { rs.append((UInt64(a.key)!, false)) }
            if a.key == "drop" { for v in a.vals { rs.append((UInt64(v)!, true)) } }
        }
        if deliverMsgs(rs) == 0 { out += "no messages\n" }
    }

    @discardableResult
    func deliverMsgs(_ recipients: [(id: UInt64, drop: Bool)]) -> Int {
        var n = 0
        for (id, drop) in recipients {
            let mine = messages.filter { $0.to == id }
            messages.removeAll { $0.to == id }
            n += mine.count
            for m in mine {
                out += (drop ? "dropped: " : "") + Describe.message(m) + "\n"
                if drop { continue }
                do { try nodes[Int(m.to) - 1].raw.step(m) } catch { out += "\(error)" }
            }
        }
        return n
    }

    func stabilize(_ idxs: [Int]) throws {
        let set = idxs.isEmpty ? Array(nodes.indices) : idxs
        func indented(_ body: () throws -> Void) rethrows {
            let saved = out
            out = ""
            try body()
            let inner = out.split(separator: "\n", omittingEmptySubsequences: false)
            out = saved
            for (k, line) in inner.enumerated() where !(k == inner.count - 1 && line.isEmpty) { out += "  " + line + "\n" }
        }
        while true {
            var done = true
            for i in set where nodes[i].raw.hasReady {
                done = false
                out += "> \(i + 1) handling Ready\n"
                try indented { try processReady(i) }
            }
            for i in set {
                let id = UInt64(i + 1)
                if messages.contains(where: { $0.to == id }) {
                    out += "> \(id) receiving messages\n"
                    indented { deliverMsgs([(id, false)]) }
                    done = false
                }
            }
            if done { return }
        }
    }

    // MARK: Scripts

    struct Directive {
        var line: Int
        var command: String
        var args: [Arg]
        var input: String
        var expected: String
    }

    /// Parses a data-driven script: `command args…`, optional input lines, `----`, the
    /// expected output up to a blank line.
    static func parse(_ text: String) -> [Directive] {
        let lines = text.components(separatedBy: "\n")
        var out: [Directive] = []
        var i = 0
        while i < lines.count {
            let line = lines[i]
            if line.hasPrefix("#") || line.trimmingCharacters(in: .whitespaces).isEmpty {
                i += 1
                continue
            }
            let start = i + 1
            let words = line.split(separator: " ").map(String.init)
            var input: [String] = []
            i += 1
            while i < lines.count && lines[i] != "----" {
                input.append(lines[i])
                i += 1
            }
            i += 1
            var expected: [String] = []
            while i < lines.count && !lines[i].isEmpty {
                expected.append(lines[i])
                i += 1
            }
            out.append(Directive(line: start, command: words[0], args: words.dropFirst().map(parseArg), input: input.joined(separator: "\n"),
                                 expected: expected.joined(separator: "\n")))
        }
        return out
    }

    static func parseArg(_ word: String) -> Arg {
        guard let eq = word.firstIndex(of: "=") else { return Arg(key: word, vals: []) }
        var v = String(word[word.index(after: eq)...])
        if v.hasPrefix("(") && v.hasSuffix(")") { v = String(v.dropFirst().dropLast()) }
        return Arg(key: String(word[..<eq]), vals: v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
    }

    /// The output without log lines (Keel writes none; etcd's are free text), trailing
    /// whitespace trimmed, "ok" when nothing is left.
    static func comparable(_ s: String) -> String {
        let kept = s.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            let t = line.drop { $0 == " " }
            return !(t.hasPrefix("DEBUG ") || t.hasPrefix("INFO ") || t.hasPrefix("WARN ") || t.hasPrefix("ERROR ") || t.hasPrefix("FATAL "))
        }
        let text = kept.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "ok" : text
    }
}

/// etcd's renderings of Raft values (`DescribeReady`, `DescribeMessage`, `DescribeEntry`, ...).
enum Describe {
    static func goQuote(_ b: [UInt8]) -> String {
        var s = "\""
        for c in b {
            switch c {
            case UInt8(ascii: "\""): s += "\\\""
            case UInt8(ascii: "\\"): s += "\\\\"
            case 0x0A: s += "\\n"
            case 0x09: s += "\\t"
            case 0x0D: s += "\\r"
            case 0x20...0x7E: s += String(UnicodeScalar(c))
            default: s += String(format: "\\x%02x", c)
            }
        }
        return s + "\""
    }

    static func entryTypeName(_ t: EntryType) -> String {
        switch t {
        case .normal: return "EntryNormal"
        case .confChange: return "EntryConfChange"
        case .confChangeV2: return "EntryConfChangeV2"
        }
    }

    static func entry(_ e: RaftEntry) -> String {
        var formatted: String
        if e.type == .normal {
            formatted = goQuote(e.data)
        } else {
            formatted = (try? ConfChange(entry: e).changesDescription) ?? "<undecodable>"
        }
        if !formatted.isEmpty { formatted = " " + formatted }
        return "\(e.term)/\(e.index) \(entryTypeName(e.type))\(formatted)"
    }

    static func entries<C: Collection<RaftEntry>>(_ es: C) -> String { es.map { entry($0) + "\n" }.joined() }

    static func ids(_ a: [UInt64]) -> String { "[" + a.map(String.init).joined(separator: " ") + "]" }

    static func confState(_ c: ConfState) -> String {
        "Voters:\(ids(c.voters)) VotersOutgoing:\(ids(c.votersOutgoing)) Learners:\(ids(c.learners)) LearnersNext:\(ids(c.learnersNext)) AutoLeave:\(c.autoLeave)"
    }

    static func snapshot(_ s: RaftSnapshot) -> String { "Index:\(s.index) Term:\(s.term) ConfState:\(confState(s.confState))" }

    static func message(_ m: RaftMessage) -> String {
        var s = "\(String(m.from, radix: 16))->\(String(m.to, radix: 16)) \(m.type.name) Term:\(m.term) Log:\(m.logTerm)/\(m.index)"
        if m.reject { s += " Rejected (Hint: \(m.rejectHint))" }
        if m.commit != 0 { s += " Commit:\(m.commit)" }
        if !m.entries.isEmpty { s += " Entries:[" + m.entries.map(entry).joined(separator: ", ") + "]" }
        if let snap = m.snapshot, !snap.isEmpty { s += " Snapshot: " + snapshot(snap) }
        return s
    }

    static func hardState(_ h: RaftHardState) -> String {
        "Term:\(h.term)" + (h.vote != 0 ? " Vote:\(h.vote)" : "") + " Commit:\(h.commit)"
    }

    static func ready(_ rd: Ready) -> String {
        var b = ""
        if let ss = rd.softState { b += "Lead:\(ss.lead) State:\(ss.role.name)\n" }
        if let hs = rd.hardState, !hs.isEmpty { b += "HardState \(hardState(hs))\n" }
        if !rd.readStates.isEmpty {
            b += "ReadStates [" + rd.readStates.map { "{\($0.index) [" + $0.context.map(String.init).joined(separator: " ") + "]}" }.joined(separator: " ") + "]\n"
        }
        if !rd.entries.isEmpty { b += "Entries:\n" + entries(rd.entries) }
        if let s = rd.snapshot, !s.isEmpty { b += "Snapshot \(snapshot(s))\n" }
        if !rd.committedEntries.isEmpty { b += "CommittedEntries:\n" + entries(rd.committedEntries) }
        if !rd.messages.isEmpty { b += "Messages:\n" + rd.messages.map { message($0) + "\n" }.joined() }
        return b.isEmpty ? "<empty Ready>" : "Ready MustSync=\(rd.mustSync):\n" + b
    }
}
