import Foundation
import KeelServer
import KeelTestSupport
import XCTest

/// A Keel server inside the test process on loopback ports it picks, with fast raft timings
/// and cheap bcrypt, plus etcdctl 3.4 (Debian's etcd-client) pointed at it.
final class ServerHarness: @unchecked Sendable {
    let dataDir: String
    var server: KeelServer?
    var endpoint: String { "127.0.0.1:\(server?.clientPorts.first ?? 0)" }
    var metricsURL: String { "http://127.0.0.1:\(server?.metricsPorts.first ?? 0)" }
    let logs = TestLocked<[String]>([])

    init(dataDir: String) {
        self.dataDir = dataDir
    }

    static func etcdctlAvailable() throws {
        guard Shell.which("etcdctl") != nil else {
            let message = "etcdctl is not installed (apt-get install etcd-client)"
            if ProcessInfo.processInfo.environment["CI"] != nil { throw InteropError.missing(message) }
            throw XCTSkip(message)
        }
    }

    static func testConfig(dataDir: String) -> ServerConfig {
        var c = ServerConfig()
        c.dataDir = dataDir
        c.listenClientURLs = ["http://127.0.0.1:0"]
        c.listenMetricsURLs = ["http://127.0.0.1:0"]
        c.heartbeatMilliseconds = 10
        c.electionMilliseconds = 100
        c.bcryptCost = 4
        c.logLevel = "warn"
        return c
    }

    func start(_ configure: (inout ServerConfig) -> Void = { _ in }) async throws {
        var c = ServerHarness.testConfig(dataDir: dataDir)
        configure(&c)
        let logs = self.logs
        server = try await KeelServer.start(c, log: ServerLog(level: c.logLevel, sink: { line in logs.withLock { $0.append(line) } }))
    }

    func stop() async {
        await server?.stop()
        server = nil
    }

    /// Runs etcdctl (API v3) against the server, with `input` on stdin.
    @discardableResult
    func ctl(_ arguments: [String], input: String? = nil, timeout: Double = 30) throws -> Shell.Output {
        try ServerHarness.run(["etcdctl", "--endpoints", endpoint, "--command-timeout=10s"] + arguments, input: input, timeout: timeout)
    }

    /// etcdctl that must succeed; returns its stdout.
    func ok(_ arguments: [String], input: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let out = try ctl(arguments, input: input)
        XCTAssertEqual(out.status, 0, "etcdctl \(arguments.joined(separator: " ")) failed: \(out.stderr)", file: file, line: line)
        return out.stdout
    }

    /// Runs a program with stdin and a time limit (then SIGTERM), collecting its output.
    static func run(_ arguments: [String], input: String? = nil, timeout: Double = 30, environment: [String: String] = ["ETCDCTL_API": "3"]) throws -> Shell.Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe(), inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        try process.run()
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try? inp.fileHandleForWriting.close()
        let outData = PipeDrain(out.fileHandleForReading), errData = PipeDrain(err.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return Shell.Output(status: process.terminationStatus, stdout: outData.wait(), stderr: errData.wait(),
                            signaled: process.terminationReason == .uncaughtSignal)
    }

    /// A long-running program (a watch, a mirror) stopped with SIGINT/SIGTERM later.
    final class Background: @unchecked Sendable {
        let process = Process()
        private let out = Pipe(), err = Pipe()
        private var outDrain: PipeDrain?, errDrain: PipeDrain?

        init(_ arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            var env = ProcessInfo.processInfo.environment
            env["ETCDCTL_API"] = "3"
            process.environment = env
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            try process.run()
            outDrain = PipeDrain(out.fileHandleForReading)
            errDrain = PipeDrain(err.fileHandleForReading)
        }

        /// Stops it (SIGINT, then SIGKILL after 5 s) and returns stdout and stderr.
        func stop() -> (stdout: String, stderr: String) {
            if process.isRunning { kill(process.processIdentifier, SIGINT) }
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return (outDrain?.wait() ?? "", errDrain?.wait() ?? "")
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    /// GET on the metrics listener, or on the client port (gRPC and HTTP share it).
    func http(_ path: String, clientPort: Bool = false) throws -> (status: Int, body: String) {
        let base = clientPort ? "http://" + endpoint : metricsURL
        let out = try ServerHarness.run(["curl", "-s", "-w", "\n%{http_code}", base + path], timeout: 10, environment: [:])
        var lines = out.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let code = Int(lines.popLast() ?? "") ?? 0
        return (code, lines.joined(separator: "\n"))
    }
}

/// Waits until `condition` holds or `seconds` pass.
func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}
