import Foundation
import KeelIO

/// Structured log lines in etcd's JSON shape (`level`, `ts`, `msg`, then fields), one per
/// line on stderr, filtered by `--log-level`.
public struct ServerLog: Sendable {
    public let level: Int
    /// Where lines go (tests capture them); stderr by default.
    public let sink: @Sendable (String) -> Void

    static let levels = ["debug": 0, "info": 1, "warn": 2, "error": 3, "panic": 4, "fatal": 5]

    public init(level: String, sink: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.level = ServerLog.levels[level] ?? 1
        self.sink = sink
    }

    public func debug(_ msg: String, _ fields: [String: String] = [:]) { write(0, "debug", msg, fields) }
    public func info(_ msg: String, _ fields: [String: String] = [:]) { write(1, "info", msg, fields) }
    public func warn(_ msg: String, _ fields: [String: String] = [:]) { write(2, "warn", msg, fields) }
    public func error(_ msg: String, _ fields: [String: String] = [:]) { write(3, "error", msg, fields) }

    private func write(_ n: Int, _ name: String, _ msg: String, _ fields: [String: String]) {
        guard n >= level else { return }
        let ts = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!,
                                             formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        var line = "{\"level\":\"\(name)\",\"ts\":\"\(ts)\",\"msg\":\(ServerLog.quote(msg))"
        for (k, v) in fields.sorted(by: { $0.key < $1.key }) { line += ",\(ServerLog.quote(k)):\(ServerLog.quote(v))" }
        sink(line + "}")
    }

    static func quote(_ s: String) -> String { JSONLine.quote(s) }
}
