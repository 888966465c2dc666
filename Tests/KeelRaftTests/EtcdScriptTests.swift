import Foundation
@testable import KeelRaft
import XCTest

/// etcd 3.4's own data-driven Raft scripts (`raft/testdata/*.txt` from Debian's
/// golang-etcd-server-dev) replayed against KeelRaft: every message (type, from, to, term, log
/// term, index, entries, commit, reject hint, snapshot), hard state, soft state (role and
/// leader), entry to persist and committed entry must match etcd's expected output. etcd's
/// log lines are free text and are not compared.
final class EtcdScriptTests: XCTestCase {
    static let directory = "/usr/share/gocode/src/go.etcd.io/etcd/raft/testdata"

    func scripts() throws -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: Self.directory) else {
            let message = "etcd's raft scripts need golang-etcd-server-dev (apt-get install golang-etcd-server-dev)"
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail(message) }
            throw XCTSkip(message)
        }
        return names.filter { $0.hasSuffix(".txt") }.sorted()
    }

    /// Where Keel deliberately differs from etcd 3.4: (script, line of the directive) → how
    /// etcd's expected output changes, and why.
    static let deliberateDifferences: [String: (why: String, edit: @Sendable (String) -> String)] = [
        "confchange_v2_add_single_auto.txt:180": (
            why: "etcd does not mark its automatic leave-joint entry as the pending conf change, so a second leave-joint " +
                "proposal is appended (and would fail when applied); Keel refuses it like any change proposed while one is " +
                "pending, replacing it with an empty normal entry",
            edit: { $0.replacingOccurrences(of: "1/8 EntryConfChangeV2", with: "1/8 EntryNormal \"\"") }),
    ]

    /// Runs one script; returns the mismatches.
    static func run(_ text: String, name: String) -> [String] {
        let env = InteractionEnv()
        var failures: [String] = []
        for d in InteractionEnv.parse(text) {
            let got = InteractionEnv.comparable(env.handle(d.command, d.args, input: d.input))
            var want = InteractionEnv.comparable(d.expected)
            if let difference = deliberateDifferences["\(name):\(d.line)"] { want = difference.edit(want) }
            if got != want {
                failures.append("\(name):\(d.line): \(d.command) \(d.args.map { $0.key }.joined(separator: " "))\n--- etcd\n\(want)\n--- keel\n\(got)")
                break  // later directives depend on this one
            }
        }
        return failures
    }

    func testEveryEtcdScriptMatches() throws {
        let names = try scripts()
        XCTAssertGreaterThanOrEqual(names.count, 9, "etcd 3.4 ships nine interaction scripts")
        var passed = 0
        for name in names {
            let text = try String(contentsOfFile: Self.directory + "/" + name, encoding: .utf8)
            let failures = Self.run(text, name: name)
            for f in failures { XCTFail(f) }
            if failures.isEmpty { passed += 1 }
        }
        print("etcd raft scripts: \(passed)/\(names.count) match")
    }

    /// The comparison can fail: a script whose expected output is altered is reported.
    func testAlteredScriptIsReported() throws {
        let names = try scripts()
        let text = try String(contentsOfFile: Self.directory + "/" + names[0], encoding: .utf8)
        let altered = text.replacingOccurrences(of: "MsgVote ", with: "MsgPreVote ")
        XCTAssertNotEqual(altered, text)
        XCTAssertFalse(Self.run(altered, name: names[0]).isEmpty)
    }
}

extension EtcdScriptTests {
    /// Debugging aid: `KEEL_RAFT_SCRIPT=path swift test --filter testRunScriptFromEnvironment`
    /// prints KeelRaft's output for a script (run the same file through the etcdraft Go program
    /// to compare).
    func testRunScriptFromEnvironment() throws {
        guard let path = ProcessInfo.processInfo.environment["KEEL_RAFT_SCRIPT"] else { throw XCTSkip("set KEEL_RAFT_SCRIPT") }
        let env = InteractionEnv()
        for d in InteractionEnv.parse(try String(contentsOfFile: path, encoding: .utf8)) {
            print("=== \(d.line)\n" + env.handle(d.command, d.args, input: d.input))
        }
    }
}
