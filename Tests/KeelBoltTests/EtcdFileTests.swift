import Foundation
import KeelBolt
import KeelIO
import XCTest

/// A free TCP port on 127.0.0.1 (bind to port 0 and ask).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A real etcd 3.4 started briefly on loopback, in a directory of the test's.
final class EtcdProcess {
    let dataDir: String
    let clientURL: String
    let process = Process()

    init(dataDir: String) throws {
        guard let etcd = Shell.which("etcd"), Shell.which("etcdctl") != nil else {
            let message = "etcd/etcdctl are not installed (apt-get install etcd-server etcd-client)"
            if ProcessInfo.processInfo.environment["CI"] != nil { throw InteropError.missing(message) }
            throw XCTSkip(message)
        }
        self.dataDir = dataDir
        let clientPort = try freeLoopbackPort()
        let peerPort = try freeLoopbackPort()
        clientURL = "http://127.0.0.1:\(clientPort)"
        let peerURL = "http://127.0.0.1:\(peerPort)"
        process.executableURL = URL(fileURLWithPath: etcd)
        process.arguments = [
            "--name", "keeltest", "--data-dir", dataDir,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "keeltest=\(peerURL)", "--log-level", "error",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if (try? ctl(["endpoint", "health"]))?.status == 0 { return }
            usleep(200_000)
        }
        stop()
        throw InteropError.failed("etcd did not become healthy on \(clientURL)")
    }

    @discardableResult
    func ctl(_ arguments: [String]) throws -> Shell.Output {
        try Shell.run(["etcdctl", "--endpoints", clientURL] + arguments, environment: ["ETCDCTL_API": "3"])
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// A real etcd 3.4 backend file (`member/snap/db`) opens read-only in KeelBolt with every bucket
/// and key, exactly as Go bbolt reads it.
final class EtcdFileTests: XCTestCase {
    func testRealEtcdBackendOpensReadOnly() throws {
        let dir = try temporaryDirectory(self)
        let etcd = try EtcdProcess(dataDir: dir + "/etcd")
        defer { etcd.stop() }
        for i in 0..<50 { try etcd.ctl(["put", "/keel/key-\(i)", "value-\(i)"]) }
        try etcd.ctl(["del", "/keel/key-7"])
        let lease = try etcd.ctl(["lease", "grant", "600"]).stdout
        let leaseID = lease.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        try etcd.ctl(["put", "/keel/leased", "x", "--lease=\(leaseID)"])
        etcd.stop()

        let path = dir + "/etcd/member/snap/db"
        var options = Options()
        options.readOnly = true
        let db = try DB.open(path: path, options: options)
        defer { db.close() }
        let names = try db.view { tx throws(BoltError) in try tx.bucketNames().map { String(decoding: $0, as: UTF8.self) } }
        for expected in ["key", "meta", "members", "lease", "cluster", "alarm", "auth"] {
            XCTAssertTrue(names.contains(expected), "bucket \(expected) missing from \(names)")
        }
        // Every put, the delete (a tombstone revision) and the leased put: 52 revisions at least.
        let (revisions, sawValue) = try db.view { tx throws(BoltError) in
            var count = 0
            var saw = false
            try tx.bucket(b("key"))!.forEach { k, v throws(BoltError) in
                count += 1
                XCTAssertTrue(k.count == 17 || k.count == 18, "revision keys are 17 bytes (18 with the tombstone mark), not \(k.count)")
                if let v, v.bytes.containsSubsequence(b("value-49")) { saw = true }
            }
            return (count, saw)
        }
        XCTAssertGreaterThanOrEqual(revisions, 52)
        XCTAssertTrue(sawValue)
        assertConsistent(db)
        XCTAssertEqual(try keelDump(db), try GoOracle.run(["dump", path]).stdout, "Keel and Go bbolt read the etcd file differently")
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for i in 0...(count - needle.count) where self[i] == needle[0] && Array(self[i..<(i + needle.count)]) == needle { return true }
        return false
    }
}
