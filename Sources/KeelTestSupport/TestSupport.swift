import Foundation
import XCTest

// Helpers shared by Keel's test targets. Not part of any product.

/// A seed from KEEL_SEED or a fresh random one; printed so a failure can be replayed.
public func testSeed(_ name: String = #function) -> UInt64 {
    if let text = ProcessInfo.processInfo.environment["KEEL_SEED"], let seed = UInt64(text) {
        print("\(name): seed \(seed) (from KEEL_SEED)")
        return seed
    }
    let seed = UInt64.random(in: 1...UInt64(Int64.max))
    print("\(name): seed \(seed) (replay with KEEL_SEED=\(seed))")
    return seed
}

/// A temporary directory removed at the end of the test.
public func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "keel-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// Runs external programs for interop tests.
public enum Shell {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        /// Whether the program died of a signal (a crash) rather than exiting.
        public var signaled = false

        public init(status: Int32, stdout: String, stderr: String, signaled: Bool = false) {
            self.status = status
            self.stdout = stdout
            self.stderr = stderr
            self.signaled = signaled
        }
    }

    /// Runs `arguments[0]` (looked up in PATH) and waits.
    public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = PipeDrain(out.fileHandleForReading)
        let errData = PipeDrain(err.fileHandleForReading)
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: outData.wait(), stderr: errData.wait(),
                      signaled: process.terminationReason == .uncaughtSignal)
    }

    public static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}

/// Drains a pipe on a background thread so a chatty child cannot block on a full pipe.
public final class PipeDrain: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    public init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    /// The whole output (waits for its end; may be called more than once).
    public func wait() -> String {
        done.wait()
        done.signal()
        return String(decoding: data, as: UTF8.self)
    }
}

public enum InteropError: Error, CustomStringConvertible {
    case missing(String)
    case buildFailed(String)
    case failed(String)

    public var description: String {
        switch self {
        case let .missing(m): return "missing: \(m)"
        case let .buildFailed(m): return "build failed: \(m)"
        case let .failed(m): return m
        }
    }
}

/// A Go program from Tests/Interop, built once per test run in GOPATH mode against Debian's
/// Go packages (/usr/share/gocode). A missing toolchain fails under CI and skips elsewhere.
public final class GoProgram: @unchecked Sendable {
    public let name: String
    private let requiredPath: String
    private let installHint: String
    private let built = TestLocked<String?>(nil)

    /// - Parameters:
    ///   - name: the folder under Tests/Interop.
    ///   - requiredPath: a file that must exist for the build (a Go package from Debian).
    public init(name: String, requiredPath: String, installHint: String) {
        self.name = name
        self.requiredPath = requiredPath
        self.installHint = installHint
    }

    public func binary() throws -> String {
        if let path = built.withLock({ $0 }) { return path }
        guard Shell.which("go") != nil, FileManager.default.fileExists(atPath: requiredPath) else {
            let message = "\(name) needs Go and \(installHint) (apt-get install golang-go \(installHint))"
            if ProcessInfo.processInfo.environment["CI"] != nil { throw InteropError.missing(message) }
            throw XCTSkip(message)
        }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Tests/Interop/\(name)/main.go").standardized.path
        let dir = NSTemporaryDirectory() + "keel-go-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let output = dir + "/" + name
        let result = try Shell.run(["go", "build", "-o", output, source],
                                   environment: ["GO111MODULE": "off", "GOPATH": "\(dir)/gopath:/usr/share/gocode",
                                                 "GOCACHE": NSTemporaryDirectory() + "keel-go-cache"])
        guard result.status == 0 else { throw InteropError.buildFailed(result.stderr) }
        built.withLock { $0 = output }
        return output
    }

    /// Runs the program; throws when it exits non-zero unless `allowFailure`.
    @discardableResult
    public func run(_ arguments: [String], allowFailure: Bool = false) throws -> Shell.Output {
        let result = try Shell.run([try binary()] + arguments)
        if result.status != 0 && !allowFailure {
            throw InteropError.failed("\(name) \(arguments.joined(separator: " ")) exited \(result.status): \(result.stdout)\(result.stderr)")
        }
        return result
    }
}

/// A value behind a lock (test-side, to keep this target free of Keel).
public final class TestLocked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// The `keelutl` binary built next to the test bundle.
public func keelutlPath() throws -> String {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("keelutl").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw XCTSkip("keelutl is not built next to the tests (run swift build first)")
}

/// A free TCP port on 127.0.0.1 (bind to port 0 and ask).
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw InteropError.failed("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard bound == 0 else { throw InteropError.failed("bind() failed") }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A real etcd 3.4 started briefly on loopback ports the test picks, in a directory of the
/// test's; always stopped (at `stop()` or when released). A missing etcd fails under CI and
/// skips elsewhere.
public final class EtcdServer {
    public let dataDir: String
    public let clientURL: String
    public let peerURL: String
    private let process = Process()

    public init(dataDir: String, extraArguments: [String] = []) throws {
        guard let etcd = Shell.which("etcd"), Shell.which("etcdctl") != nil else {
            let message = "etcd/etcdctl are not installed (apt-get install etcd-server etcd-client)"
            if ProcessInfo.processInfo.environment["CI"] != nil { throw InteropError.missing(message) }
            throw XCTSkip(message)
        }
        self.dataDir = dataDir
        clientURL = "http://127.0.0.1:\(try freeLoopbackPort())"
        peerURL = "http://127.0.0.1:\(try freeLoopbackPort())"
        process.executableURL = URL(fileURLWithPath: etcd)
        process.arguments = [
            "--name", "keeltest", "--data-dir", dataDir,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "keeltest=\(peerURL)", "--log-level", "error",
        ] + extraArguments
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

    /// Runs etcdctl (API v3) against this server.
    @discardableResult
    public func ctl(_ arguments: [String]) throws -> Shell.Output {
        try Shell.run(["etcdctl", "--endpoints", clientURL] + arguments, environment: ["ETCDCTL_API": "3"])
    }

    /// Stops the server (SIGTERM) and waits for it.
    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
