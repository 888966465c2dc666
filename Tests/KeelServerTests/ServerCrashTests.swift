import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import KeelGRPC
import KeelIO
import KeelProto
import KeelTestSupport
import XCTest

/// The `keel` executable killed with SIGKILL in the middle of a put load from concurrent
/// clients: after a restart every acknowledged put is there, and `keelutl check` passes on the
/// backend file.
final class ServerCrashTests: XCTestCase {
    func keelPath() throws -> String {
        let dir = URL(fileURLWithPath: try keelutlPath()).deletingLastPathComponent()
        let path = dir.appendingPathComponent("keel").path
        guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("keel is not built next to the tests") }
        return path
    }

    func startKeel(dataDir: String, port: Int) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try keelPath())
        p.arguments = ["--data-dir", dataDir, "--listen-client-urls", "http://127.0.0.1:\(port)",
                       "--heartbeat-interval", "10", "--election-timeout", "100", "--log-level", "error"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    func client(port: Int) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
        GRPCClient(transport: try .http2NIOPosix(target: .ipv4(host: "127.0.0.1", port: port), transportSecurity: .plaintext))
    }

    func waitReady(_ kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>) async throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            var r = Etcdserverpb_RangeRequest()
            r.key = Data("probe".utf8)
            if (try? await kv.range(r)) != nil { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTFail("keel did not answer within 30 s")
    }

    func testKillNineLosesNoAcknowledgedPut() async throws {
        let dir = try temporaryDirectory(self) + "/crash.etcd"
        let port = try freeLoopbackPort()
        let seed = testSeed()
        var rng = SplitMix64(seed: seed)
        let killAfter = 0.3 + Double(rng.next() % 700) / 1000
        let first = try startKeel(dataDir: dir, port: port)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let acked = TestLocked<[String: String]>([:])
        do {
            let c = try client(port: port)
            let runner = Task { try await c.runConnections() }
            let kv = Etcdserverpb_KV.Client(wrapping: c)
            try await waitReady(kv)
            // 8 clients put distinct keys as fast as they can; the server is killed under them.
            let killer = Task.detached {
                try await Task.sleep(nanoseconds: UInt64(killAfter * 1e9))
                kill(first.processIdentifier, SIGKILL)
            }
            await withTaskGroup(of: Void.self) { group in
                for w in 0..<8 {
                    group.addTask {
                        var n = 0
                        while true {
                            var p = Etcdserverpb_PutRequest()
                            let key = "w\(w)/\(n)"
                            p.key = Data(key.utf8)
                            p.value = Data("value-\(w)-\(n)".utf8)
                            do {
                                _ = try await kv.put(p)
                                acked.withLock { $0[key] = "value-\(w)-\(n)" }
                            } catch {
                                return   // the server is gone
                            }
                            n += 1
                        }
                    }
                }
            }
            _ = try? await killer.value
            c.beginGracefulShutdown()
            runner.cancel()
        }
        first.waitUntilExit()
        let acknowledged = acked.withLock { $0 }
        XCTAssertGreaterThan(acknowledged.count, 0, "no put was acknowledged before the kill (seed \(seed))")

        let second = try startKeel(dataDir: dir, port: port)
        defer {
            if second.isRunning {
                kill(second.processIdentifier, SIGTERM)
                second.waitUntilExit()
            }
        }
        let c = try client(port: port)
        let runner = Task { try await c.runConnections() }
        let kv = Etcdserverpb_KV.Client(wrapping: c)
        try await waitReady(kv)
        var r = Etcdserverpb_RangeRequest()
        r.key = Data("w".utf8)
        r.rangeEnd = Data("x".utf8)
        let all = try await kv.range(r)
        var stored: [String: String] = [:]
        for e in all.kvs { stored[String(decoding: e.key, as: UTF8.self)] = String(decoding: e.value, as: UTF8.self) }
        var lost = 0
        for (k, v) in acknowledged where stored[k] != v { lost += 1 }
        XCTAssertEqual(lost, 0, "\(lost) of \(acknowledged.count) acknowledged puts are missing after kill -9 (seed \(seed))")
        print("kill -9 after \(String(format: "%.2f", killAfter)) s: \(acknowledged.count) puts acknowledged, \(stored.count) stored, 0 lost")
        c.beginGracefulShutdown()
        runner.cancel()
        kill(second.processIdentifier, SIGTERM)
        second.waitUntilExit()
        XCTAssertEqual(second.terminationStatus, 0, "keel did not stop cleanly on SIGTERM")
        let check = try Shell.run([try keelutlPath(), "check", dir + "/member/snap/db"])
        XCTAssertEqual(check.status, 0, "keelutl check failed: \(check.stdout)\(check.stderr)")
    }
}
