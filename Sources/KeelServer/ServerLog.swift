import Foundation
import KeelIO
import Logging

/// The server's structured log, on swift-log: by default `EtcdJSONLogHandler` writes etcd's
/// JSON lines (`level`, `ts`, `msg`, then the fields) to stderr, filtered by `--log-level`; a
/// program that embeds the server passes its own `Logger` and gets the same messages and
/// fields (as swift-log metadata) in its own backend.
public struct ServerLog: Sendable {
    public let logger: Logger

    /// etcd's `--log-level` names and swift-log's levels.
    static let levels: [String: Logger.Level] = ["debug": .debug, "info": .info, "warn": .warning, "error": .error,
                                                 "panic": .critical, "fatal": .critical]

    /// etcd's JSON lines at `level`, written to `sink` (stderr by default; tests capture them).
    public init(level: String, sink: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        var logger = Logger(label: "keel") { _ in EtcdJSONLogHandler(sink: sink) }
        logger.logLevel = ServerLog.levels[level] ?? .info
        self.logger = logger
    }

    /// Messages go to `logger` (its handler and level decide what is written, and how).
    public init(logger: Logger) {
        self.logger = logger
    }

    public func debug(_ msg: String, _ fields: [String: String] = [:]) { logger.debug("\(msg)", metadata: Self.metadata(fields)) }
    public func info(_ msg: String, _ fields: [String: String] = [:]) { logger.info("\(msg)", metadata: Self.metadata(fields)) }
    public func warn(_ msg: String, _ fields: [String: String] = [:]) { logger.warning("\(msg)", metadata: Self.metadata(fields)) }
    public func error(_ msg: String, _ fields: [String: String] = [:]) { logger.error("\(msg)", metadata: Self.metadata(fields)) }

    static func metadata(_ fields: [String: String]) -> Logger.Metadata? {
        fields.isEmpty ? nil : fields.mapValues { .string($0) }
    }
}

/// A swift-log handler writing etcd's JSON log lines: `{"level":"info","ts":"…","msg":"…",…}`
/// with the metadata as string fields in key order (etcd's level names: `warn`, `panic`).
public struct EtcdJSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    let sink: @Sendable (String) -> Void

    public init(sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "debug"
        case .info, .notice: return "info"
        case .warning: return "warn"
        case .error: return "error"
        case .critical: return "panic"
        }
    }

    public func log(event: LogEvent) {
        let ts = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!,
                                             formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let m = event.metadata { fields.merge(m) { _, new in new } }
        var line = "{\"level\":\"\(Self.name(event.level))\",\"ts\":\"\(ts)\",\"msg\":\(JSONLine.quote(event.message.description))"
        for (k, v) in fields.sorted(by: { $0.key < $1.key }) { line += ",\(JSONLine.quote(k)):\(JSONLine.quote(v.description))" }
        sink(line + "}")
    }
}
