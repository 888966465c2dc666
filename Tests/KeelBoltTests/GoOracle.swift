import Foundation
import KeelBolt
import XCTest

/// Runs external programs for interop tests.
enum Shell {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `arguments[0]` (looked up in PATH) and waits.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Output {
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
        let outData = ReadAll(out.fileHandleForReading)
        let errData = ReadAll(err.fileHandleForReading)
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: outData.wait(), stderr: errData.wait())
    }

    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}

/// Drains a pipe on a background thread so a chatty child cannot block on a full pipe.
final class ReadAll: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    func wait() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}

/// The Go bbolt 1.3.6 oracle (Tests/Interop/bboltoracle), built once per test run.
enum GoOracle {
    /// A missing Go toolchain fails the test under CI (where .ci/run installs it) and skips it elsewhere.
    static func binary() throws -> String {
        if let cached = cache.path { return cached }
        guard Shell.which("go") != nil, FileManager.default.fileExists(atPath: "/usr/share/gocode/src/go.etcd.io/bbolt/db.go") else {
            let message = "Go or golang-github-coreos-bbolt-dev is not installed (apt-get install golang-go golang-github-coreos-bbolt-dev)"
            if ProcessInfo.processInfo.environment["CI"] != nil { throw OracleError.missing(message) }
            throw XCTSkip(message)
        }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Interop/bboltoracle/main.go").standardized.path
        let dir = NSTemporaryDirectory() + "keel-go-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let output = dir + "/bboltoracle"
        let result = try Shell.run(["go", "build", "-o", output, source],
                                   environment: ["GO111MODULE": "off", "GOPATH": "\(dir)/gopath:/usr/share/gocode",
                                                 "GOCACHE": NSTemporaryDirectory() + "keel-go-cache", "GOFLAGS": "-mod=mod"])
        guard result.status == 0 else { throw OracleError.buildFailed(result.stderr) }
        cache.path = output
        return output
    }

    enum OracleError: Error { case missing(String), buildFailed(String), failed(String) }

    final class Cache: @unchecked Sendable { var path: String? }
    static let cache = Cache()

    /// Runs the oracle; throws when it exits non-zero unless `allowFailure`.
    @discardableResult
    static func run(_ arguments: [String], allowFailure: Bool = false) throws -> Shell.Output {
        let result = try Shell.run([try binary()] + arguments)
        if result.status != 0 && !allowFailure {
            throw OracleError.failed("bboltoracle \(arguments.joined(separator: " ")) exited \(result.status): \(result.stdout)\(result.stderr)")
        }
        return result
    }
}

/// The same dump format as the oracle's, from KeelBolt.
func keelDump(_ db: DB) throws -> String {
    var lines: [String] = []
    func hex(_ v: ByteView) -> String { v.map { String($0, radix: 16).leftPad2 }.joined() }
    func walk(_ bucket: Bucket, _ path: String) throws {
        let c = bucket.cursor()
        var entry = try c.first()
        while let e = entry {
            if e.value == nil, let child = try bucket.bucket(e.key.bytes) {
                // Emit in cursor order: recurse right here.
                let p = path + "/" + hex(e.key)
                lines.append("bucket \(p) seq=\(child.sequence)")
                try walk(child, p)
            } else {
                lines.append("key \(path) \(hex(e.key)) \(hex(e.value ?? .empty))")
            }
            entry = try c.next()
        }
    }
    try db.view { tx in try walk(tx.rootBucket, "") }
    return lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
}

extension String {
    var leftPad2: String { count >= 2 ? self : "0" + self }
}
