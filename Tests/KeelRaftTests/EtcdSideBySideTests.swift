import Foundation
import KeelIO
@testable import KeelRaft
import KeelTestSupport
import XCTest

let etcdRaft = GoProgram(name: "etcdraft", requiredPath: "/usr/share/gocode/src/go.etcd.io/etcd/raft/rafttest/interaction_env.go",
                         installHint: "golang-etcd-server-dev")

/// The same seeded schedule — campaigns, proposals, message deliveries and drops, heartbeat
/// ticks, read-index requests, leader transfers, membership changes (v1, v2 joint with each
/// transition, learners, removals, new nodes catching up by snapshot), compactions, unreachable
/// reports — run against etcd 3.4's raft (Tests/Interop/etcdraft, through etcd's own rafttest
/// harness) and against KeelRaft: every Ready, message, hard and soft state, entry and committed
/// entry must be identical.
final class EtcdSideBySideTests: XCTestCase {
    /// Builds a schedule by running it on KeelRaft as it goes (so choices follow the cluster's
    /// state: who leads, what is applied, whether a configuration is joint).
    struct Schedule {
        var rng: SplitMix64
        let env = InteractionEnv()
        var script = ""
        /// Keel's output per directive, by line.
        var outputs: [(line: Int, text: String)] = []
        var line = 1
        var proposals = 0

        init(seed: UInt64) { rng = SplitMix64(seed: seed) }

        mutating func int(_ n: Int) -> Int { Int(rng.next() % UInt64(max(n, 1))) }
        mutating func chance(_ percent: Int) -> Bool { int(100) < percent }

        mutating func emit(_ command: String, input: String = "") {
            let words = command.split(separator: " ").map(String.init)
            let out = env.handle(words[0], words.dropFirst().map(InteractionEnv.parseArg), input: input)
            outputs.append((line, InteractionEnv.comparable(out)))
            script += command + "\n" + (input.isEmpty ? "" : input + "\n") + "----\n\n"
            line += 2 + (input.isEmpty ? 0 : input.split(separator: "\n").count) + 1
        }

        var count: Int { env.nodes.count }
        var leader: Int? { env.nodes.indices.first { env.nodes[$0].raw.status.role == .leader } }

        mutating func build(steps: Int) {
            let size = chance(30) ? 5 : 3
            emit("config prevote=\(chance(50)) checkquorum=\(chance(50))" + (chance(20) ? " maxuncommitted=64" : "") +
                 (chance(20) ? " maxinflight=2 maxsize=60" : ""))
            emit("add-nodes \(size) voters=(\((1...size).map(String.init).joined(separator: ","))) index=2")
            emit("campaign 1")
            emit("stabilize")
            for _ in 0..<steps { step() }
            emit("stabilize")
            for i in 1...count { emit("status \(i)") }
        }

        mutating func step() {
            let n = count
            let any = 1 + int(n)
            switch int(100) {
            case 0..<20:
                proposals += 1
                emit("propose \(leader.map { $0 + 1 } ?? any) p\(proposals)")
            case 20..<35: emit("process-ready \(any)")
            case 35..<50:
                emit(chance(12) ? "deliver-msgs drop=(\(any))" : "deliver-msgs \(any)")
            case 50..<55: emit("stabilize")
            case 55..<60:
                let subset = (1...n).filter { _ in chance(50) }
                emit("stabilize " + (subset.isEmpty ? "1" : subset.map(String.init).joined(separator: " ")))
            case 60..<72:
                if let l = leader { emit("tick-heartbeat \(l + 1)") }
            case 72..<75:
                let voters = env.nodes[any - 1].raw.status.confState.voters
                if !voters.isEmpty { emit("campaign \(voters[int(voters.count)])") }
            case 75..<78:
                if let l = leader {
                    let voters = env.nodes[l].raw.status.confState.voters
                    emit("transfer-leader \(l + 1) \(voters[int(voters.count)])")
                }
            case 78..<84: emit("read-index \(any) r\(int(1000))")
            case 84..<88:
                let st = env.nodes[any - 1].raw.status
                let first = env.nodes[any - 1].storage.memory.firstIndex()
                if st.applied > first { emit("compact \(any) \(first + 1 + UInt64(int(Int(st.applied - first))))") }
            case 88..<96: confChange()
            default:
                if let l = leader { emit("report-unreachable \(l + 1) \(any)") }
            }
        }

        mutating func confChange() {
            guard let l = leader else { return }
            let st = env.nodes[l].raw.status
            let cs = st.confState
            if !cs.votersOutgoing.isEmpty {
                // Joint: leave it (only an explicit transition needs this; otherwise refused).
                emit("propose-conf-change \(l + 1)")
                return
            }
            guard st.applied >= env.nodes[l].raw.raft.pendingConfIndex else { return }
            let members = cs.voters + cs.learners
            let newID = UInt64(count + 1)
            var changes: [String] = []
            switch int(6) {
            case 0:
                if count < 7 {
                    emit("add-nodes 1")
                    changes = [(chance(50) ? "v" : "l") + String(newID)]
                }
            case 1:
                if !cs.learners.isEmpty { changes = ["v\(cs.learners[int(cs.learners.count)])"] }
            case 2:
                if cs.voters.count > 3 { changes = ["l\(cs.voters[int(cs.voters.count)])"] }
            case 3:
                if cs.voters.count > 3 || !cs.learners.isEmpty {
                    let victim = cs.voters.count > 3 ? members[int(members.count)] : cs.learners[0]
                    changes = ["r\(victim)"]
                }
            case 4:
                // Two changes at once: a joint configuration.
                if count < 7 {
                    emit("add-nodes 1")
                    // No removal inside a joint change: etcd 3.4 refuses snapshots on a voter
                    // of the outgoing half only (Keel installs them; see Raft.restore).
                    changes = ["v\(newID)", "u\(cs.voters[int(cs.voters.count)])"]
                }
            default:
                changes = ["u\(members[int(members.count)])"]
            }
            guard !changes.isEmpty else { return }
            // Joint configurations here are left explicitly: with automatic leaving, etcd 3.4 does
            // not mark its leave entry pending and appends it again on every Ready until the
            // first is applied, then panics applying the second ("can't leave a non-joint
            // config"). Keel marks it pending (see EtcdScriptTests.deliberateDifferences), so
            // the two cannot agree past that point.
            if changes.count == 1 && chance(40) {
                emit("propose-conf-change \(l + 1) v1=true", input: changes[0])
            } else if changes.count == 1 && chance(50) {
                emit("propose-conf-change \(l + 1) transition=auto", input: changes[0])
            } else {
                emit("propose-conf-change \(l + 1) transition=explicit", input: changes.joined(separator: " "))
            }
        }
    }

    /// Where etcd 3.4 crashes and Keel goes on (see the comments in Raft.swift): a node that
    /// applied its own removal while campaigning wins and dereferences its missing progress; a
    /// leader whose entries for a follower are compacted while its storage has no snapshot yet
    /// panics (Keel waits and probes again).
    static let knownEtcdCrashes = ["runtime error: invalid memory address or nil pointer dereference", "need non-empty snapshot"]
    var etcdCrashes = 0
    var outgoingVoterSnapshots = 0
    var harnessStops = 0

    /// Both harnesses (etcd's rafttest and ours, deliberately the same) store a Ready's entries
    /// before its snapshot; a Ready carrying a snapshot and entries after it then fails in the
    /// in-memory storage — etcd's panics, ours throws. Same output up to there, same failure:
    /// the schedule ends there as a match.
    static func isHarnessAppendBeforeSnapshot(etcd: String, keel: String) -> Bool {
        let e = etcd.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let k = keel.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let eLast = e.last, let kLast = k.last, e.count == k.count, e.dropLast() == k.dropLast() else { return false }
        let digits = { (s: String) in s.split(whereSeparator: { !$0.isNumber }).map(String.init) }
        return eLast.hasPrefix("panic: missing log entry [last: ") && kLast.hasPrefix("raft: missing log entries: last ")
            && digits(eLast) == digits(kLast)
    }

    /// Keel installs a snapshot on a node that is only an outgoing voter of a joint
    /// configuration (as etcd does from 3.5 on); etcd 3.4 ignores it and the node's log then
    /// differs. True when the first difference between the two outputs is such an install: the
    /// schedule is compared up to there.
    static func isOutgoingVoterSnapshot(etcd: String, keel: String) -> Bool {
        let e = etcd.split(separator: "\n", omittingEmptySubsequences: false)
        let k = keel.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = k.indices.first(where: { $0 >= e.count || e[$0] != k[$0] }),
              let header = k[...first].lastIndex(where: { $0.hasPrefix("> ") && $0.hasSuffix(" handling Ready") }),
              let node = Int(k[header].dropFirst(2).split(separator: " ")[0]) else { return false }
        let section = k[(header + 1)...].prefix { !$0.hasPrefix("> ") }
        guard let snap = section.first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("Snapshot Index:") }) else { return false }
        func ids(_ field: String) -> Set<Int> {
            guard let r = snap.range(of: " " + field + ":[") ?? snap.range(of: ":" + field + ":[") else { return [] }
            let rest = snap[r.upperBound...].prefix { $0 != "]" }
            return Set(rest.split(separator: " ").compactMap { Int($0) })
        }
        return ids("VotersOutgoing").contains(node) && !ids("Voters").contains(node) && !ids("Learners").contains(node)
    }

    /// Parses the Go program's output: "=== line" markers, each followed by that directive's output.
    static func parseGo(_ text: String) -> [Int: String] {
        var out: [Int: String] = [:]
        var current: Int?
        var buf: [Substring] = []
        func flush() { if let c = current { out[c] = InteractionEnv.comparable(buf.joined(separator: "\n")) } }
        for l in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if l.hasPrefix("=== "), let n = Int(l.dropFirst(4)) {
                flush()
                current = n
                buf = []
            } else {
                buf.append(l)
            }
        }
        flush()
        return out
    }

    func compare(seed: UInt64, steps: Int) throws -> String? {
        var schedule = Schedule(seed: seed)
        schedule.build(steps: steps)
        let path = NSTemporaryDirectory() + "keel-raft-schedule-\(getpid())-\(seed).txt"
        try schedule.script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        // A time limit: a schedule must never hang the suite (coreutils' timeout exits 124).
        // Once a Go run was seen stuck at start with no CPU time used; a timed-out run is tried
        // again once before it counts.
        var result = try Shell.run(["/bin/sh", "-c", "timeout 60 \"\(try etcdRaft.binary())\" < \"\(path)\""])
        if result.status == 124 {
            result = try Shell.run(["/bin/sh", "-c", "timeout 60 \"\(try etcdRaft.binary())\" < \"\(path)\""])
        }
        guard result.status == 0 else {
            let kept = NSTemporaryDirectory() + "keel-raft-failed-\(seed).txt"
            try? schedule.script.write(toFile: kept, atomically: true, encoding: .utf8)
            return "seed \(seed): etcdraft exited \(result.status)\(result.status == 124 ? " (timed out after 60 s)" : "") on \(kept): \(result.stderr.suffix(2000))"
        }
        let etcd = Self.parseGo(result.stdout)
        for (line, keel) in schedule.outputs {
            let want = etcd[line] ?? "<missing>"
            if let crash = Self.knownEtcdCrashes.first(where: { want.hasSuffix("panic: " + $0) }) {
                // etcd 3.4 crashed where Keel deliberately does not: everything before the crash
                // must agree, and the schedule ends there.
                // A panic inside `stabilize` loses the harness's indentation and outer lines, so
                // etcd's last lines are checked as an in-order subsequence of Keel's.
                let before = want.dropLast(("panic: " + crash).count).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                var keelLines = keel.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }[...]
                var matched = true
                for l in before where !l.isEmpty {
                    guard let at = keelLines.firstIndex(of: l) else { matched = false; break }
                    keelLines = keelLines[(at + 1)...]
                }
                if !matched {
                    return "seed \(seed), directive at line \(line): etcd crashed (\(crash)) after output Keel does not produce\n--- etcd\n\(want)\n--- keel\n\(keel)"
                }
                etcdCrashes += 1
                return nil
            }
            if want != keel, Self.isHarnessAppendBeforeSnapshot(etcd: want, keel: keel) {
                harnessStops += 1
                return nil
            }
            if want != keel, Self.isOutgoingVoterSnapshot(etcd: want, keel: keel) {
                outgoingVoterSnapshots += 1
                return nil
            }
            if want != keel {
                let kept = NSTemporaryDirectory() + "keel-raft-differs-\(seed).txt"
                try? schedule.script.write(toFile: kept, atomically: true, encoding: .utf8)
                let prefix = schedule.script.split(separator: "\n", omittingEmptySubsequences: false).prefix(line + 1).joined(separator: "\n")
                return "seed \(seed), directive at line \(line) differs (whole script: \(kept))\n--- etcd\n\(want)\n--- keel\n\(keel)\n--- script up to it\n\(prefix.suffix(3000))"
            }
        }
        return nil
    }

    func testSeededSchedulesMatchEtcd() throws {
        let base = testSeed()
        let seeds = Int(ProcessInfo.processInfo.environment["KEEL_RAFT_SIDE_BY_SIDE_SEEDS"] ?? "") ?? 60
        var compared = 0
        for k in 0..<UInt64(seeds) {
            if let failure = try compare(seed: base &+ k, steps: 150) {
                XCTFail(failure)
                return
            }
            compared += 1
        }
        print("side by side with etcd raft: \(compared) schedules of 150 steps identical (\(etcdCrashes) of them cut short where etcd 3.4 crashed, \(outgoingVoterSnapshots) where etcd 3.4 ignores a snapshot sent to an outgoing voter, \(harnessStops) where both harnesses stored entries before a snapshot; seeds \(base)…\(base &+ UInt64(seeds) - 1))")
    }
}
