import Foundation
import KeelIO

/// Running one engine's benchmark in a child process (so each engine's peak memory is its own)
/// and reading its results back.
public enum BenchChild {
    /// What went wrong with a child run.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The child's arguments: this command's `arguments` (without the program name) with any
    /// `--backend` replaced by `kind` and JSON output forced; a bare `bench` becomes
    /// `bench storage` so the child runs the storage bench.
    public static func arguments(from arguments: [String], kind: BenchBackendKind) -> [String] {
        var arguments = arguments
        if arguments.first == "bench" && arguments.dropFirst().first != "storage" { arguments.insert("storage", at: 1) }
        var filtered: [String] = []
        var skipNext = false
        for a in arguments {
            if skipNext { skipNext = false; continue }
            if a == "--backend" { skipNext = true; continue }
            if a.hasPrefix("--backend=") || a == "--json" { continue }
            filtered.append(a)
        }
        return filtered + ["--backend", kind.rawValue, "--json"]
    }

    /// Runs `executable` (by default this program again) with `arguments(from:kind:)` and
    /// returns the phase results it printed.
    public static func run(kind: BenchBackendKind, arguments: [String], executable: String = "/proc/self/exe") throws -> [PhaseResult] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = self.arguments(from: arguments, kind: kind)
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "the \(kind.rawValue) bench child failed with status \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { PhaseResult(jsonLine: String($0), backend: kind.rawValue) }
    }
}

extension PhaseResult {
    /// Parses one line of `json` output; nil for any other line.
    public init?(jsonLine line: String, backend: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let phase = object["phase"] as? String, let ops = object["ops"] as? Int,
              let seconds = (object["seconds"] as? NSNumber)?.doubleValue else { return nil }
        self.init(backend: backend, phase: phase, ops: ops, seconds: seconds,
                  p50Microseconds: (object["p50_us"] as? NSNumber)?.doubleValue,
                  p99Microseconds: (object["p99_us"] as? NSNumber)?.doubleValue,
                  fileBytes: (object["file_bytes"] as? NSNumber)?.int64Value ?? 0,
                  peakRSSBytes: (object["peak_rss_bytes"] as? NSNumber)?.int64Value ?? 0)
        cpuSeconds = (object["cpu_seconds"] as? NSNumber)?.doubleValue ?? 0
    }
}

/// One phase of two engines side by side: throughput ratio and p50 latency ratio.
public struct PhaseRatio: Sendable {
    public let phase: String
    public let engines: (String, String)
    public let opsPerSecond: Double
    public let p50Latency: Double?

    /// The ratios for the phases both runs have, in bench order.
    public static func ratios(_ a: [String: PhaseResult], _ b: [String: PhaseResult], engines: (String, String)) -> [PhaseRatio] {
        ["write", "read", "scan", "small-txn"].compactMap { phase in
            guard let x = a[phase], let y = b[phase], y.opsPerSecond > 0 else { return nil }
            var p50: Double?
            if let p50x = x.p50Microseconds, let p50y = y.p50Microseconds, p50y > 0 { p50 = p50x / p50y }
            return PhaseRatio(phase: phase, engines: engines, opsPerSecond: x.opsPerSecond / y.opsPerSecond, p50Latency: p50)
        }
    }

    public var text: String {
        var line = "# ratio \(phase) \(engines.0)/\(engines.1): ops/s \(formatDecimal(opsPerSecond, 2))"
        if let p50Latency { line += ", p50 latency \(formatDecimal(p50Latency, 2))" }
        return line
    }

    public var json: String {
        var fields = JSONLine()
        fields.add("ratio", "\(engines.0)/\(engines.1)")
        fields.add("phase", phase)
        fields.add("ops_per_sec", opsPerSecond, decimals: 2)
        if let p50Latency { fields.add("p50_us", p50Latency, decimals: 2) }
        return fields.description
    }
}
