import Foundation
import KeelNode

/// The server's configuration, named and defaulted as etcd 3.4's (`embed/config.go`), read from
/// flags (`--name=x` or `--name x`), `ETCD_*` environment variables and a `--config-file` YAML.
/// Precedence as etcd: a config file replaces flags and environment entirely; otherwise a flag
/// beats its environment variable.
public struct ServerConfig: Sendable {
    public var name = "default"
    /// Default `<name>.etcd`, as etcd.
    public var dataDir = ""
    public var walDir = ""
    public var listenClientURLs = ["http://localhost:2379"]
    public var advertiseClientURLs = ["http://localhost:2379"]
    public var listenPeerURLs = ["http://localhost:2380"]
    public var initialAdvertisePeerURLs = ["http://localhost:2380"]
    public var listenMetricsURLs: [String] = []
    public var initialCluster = ""
    public var initialClusterState = "new"
    public var initialClusterToken = "etcd-cluster"
    public var snapshotCount: UInt64 = 100_000
    public var maxSnapshots = 5
    public var maxWALs = 5
    public var heartbeatMilliseconds = 100
    public var electionMilliseconds = 1000
    public var quotaBackendBytes: Int64 = 0
    public var maxRequestBytes = 1_572_864
    public var maxTxnOps = 128
    /// `periodic` or `revision`.
    public var autoCompactionMode = "periodic"
    /// `0` (off); for periodic a duration (`1h`, `30m`, or hours as a bare number), for revision a count.
    public var autoCompactionRetention = "0"
    public var logLevel = "info"
    /// `simple` only (etcd's default); `jwt` is listed as not honoured.
    public var authToken = "simple"
    public var bcryptCost = 10
    /// Keel's own: the storage engine under MVCC.
    public var backend = "bolt"
    public var strictReconfigCheck = true
    public var preVote = false
    /// Seconds between progress notifications to watches that asked for them (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes).
    public var watchProgressNotifyInterval: Double = 600

    public init() {}

    public var effectiveDataDir: String { dataDir.isEmpty ? "\(name).etcd" : dataDir }

    /// Flags etcd 3.4 accepts that Keel parses but does not act on yet: accepted (so existing
    /// command lines keep working), listed by `keel --help`, and logged at start when set.
    public static let notHonoured: [String: String] = [
        "--cert-file": "client TLS (issue: security)", "--key-file": "client TLS", "--trusted-ca-file": "client TLS",
        "--client-cert-auth": "client TLS", "--auto-tls": "client TLS", "--peer-cert-file": "peer TLS",
        "--peer-key-file": "peer TLS", "--peer-trusted-ca-file": "peer TLS", "--peer-client-cert-auth": "peer TLS",
        "--peer-auto-tls": "peer TLS", "--cipher-suites": "TLS", "--enable-pprof": "Go profiling has no Swift equivalent",
        "--enable-v2": "the v2 API is not served", "--discovery": "discovery service", "--discovery-srv": "discovery service",
        "--proxy": "v2 proxy", "--logger": "Keel always logs structured lines", "--log-outputs": "logs go to stderr",
        "--experimental-initial-corrupt-check": "corruption checks", "--grpc-keepalive-min-time": "gRPC keepalive tuning",
        "--grpc-keepalive-interval": "gRPC keepalive tuning", "--grpc-keepalive-timeout": "gRPC keepalive tuning",
        "--max-concurrent-streams": "HTTP/2 stream limit", "--cors": "CORS", "--host-whitelist": "host whitelist",
        "--listen-client-http-urls": "separate HTTP listener", "--metrics": "basic metrics only",
    ]

    /// Help text: every flag, its default, and the etcd flags not honoured yet.
    public static var help: String {
        var s = """
        keel: an etcd 3.4-compatible server (gRPC v3 API) on Keel's storage engine.

        Usage: keel [flags]            start a member (etcd's flags and ETCD_* variables)
               keel bench <workload>   load generator (keel bench --help)

        Member:
          --name NAME                          human-readable name (default "default")
          --data-dir DIR                       data directory (default "<name>.etcd")
          --wal-dir DIR                        separate WAL directory (default <data-dir>/member/wal)
          --snapshot-count N                   entries between snapshots (default 100000)
          --max-snapshots N, --max-wals N      files kept (default 5)
          --heartbeat-interval MS              (default 100)
          --election-timeout MS                (default 1000)
          --quota-backend-bytes N              backend quota, 0 = 2 GiB (default 0)
          --max-request-bytes N                (default 1572864)
          --max-txn-ops N                      (default 128)
          --auto-compaction-mode MODE          periodic | revision (default periodic)
          --auto-compaction-retention R        0 = off; periodic: 1h, 30m, 5s or hours; revision: count
          --listen-client-urls URLS            gRPC on these (default http://localhost:2379)
          --advertise-client-urls URLS         (default http://localhost:2379)
          --listen-peer-urls URLS              (default http://localhost:2380)
          --initial-advertise-peer-urls URLS   (default http://localhost:2380)
          --initial-cluster CLUSTER            (default "<name>=<initial-advertise-peer-urls>")
          --initial-cluster-state STATE        new | existing (default new)
          --initial-cluster-token TOKEN        (default etcd-cluster)
          --listen-metrics-urls URLS           HTTP /metrics, /health, /version on these
          --strict-reconfig-check BOOL         (default true)
          --pre-vote BOOL                      (default false)
          --auth-token simple                  (default simple)
          --bcrypt-cost N                      (default 10)
          --log-level LEVEL                    debug | info | warn | error (default info)
          --experimental-watch-progress-notify-interval D   (default 10m)
          --config-file FILE                   YAML with etcd's keys; replaces flags and environment
          --backend ENGINE                     Keel: bolt | lmdb | crosscheck (default bolt)
          --version                            print the version

        Every flag can be given as ETCD_<FLAG> (upper case, dashes as underscores).

        etcd flags accepted but not honoured yet:

        """
        for (flag, why) in notHonoured.sorted(by: { $0.key < $1.key }) {
            s += "  \(flag.padding(toLength: 37, withPad: " ", startingAt: 0))\(why)\n"
        }
        return s
    }

    /// Parses etcd's flags; with no `--config-file`, unset flags come from `ETCD_*` variables.
    /// - Throws: `ConfigError` naming the flag or value that is wrong.
    public static func parse(arguments: [String], environment: [String: String]) throws(ConfigError) -> ServerConfig {
        var flags: [(String, String)] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            guard a.hasPrefix("-") else { throw ConfigError("unexpected argument \"\(a)\" (flags start with --; see keel --help)") }
            let body = a.drop { $0 == "-" }
            var name = String(body), value: String?
            if let eq = body.firstIndex(of: "=") {
                name = String(body[..<eq])
                value = String(body[body.index(after: eq)...])
            }
            let key = "--" + name
            guard knownFlags.contains(key) || notHonoured[key] != nil else {
                throw ConfigError("unknown flag \(key) (see keel --help)")
            }
            if value == nil {
                if booleanFlags.contains(key) {
                    if i + 1 < arguments.count, ["true", "false"].contains(arguments[i + 1]) { value = arguments[i + 1]; i += 1 } else { value = "true" }
                } else {
                    guard i + 1 < arguments.count else { throw ConfigError("flag \(key) needs a value") }
                    value = arguments[i + 1]
                    i += 1
                }
            }
            flags.append((key, value!))
            i += 1
        }
        if let file = flags.last(where: { $0.0 == "--config-file" })?.1 ?? (flags.isEmpty ? environment["ETCD_CONFIG_FILE"] : nil) {
            return try fromYAML(path: file)
        }
        var c = ServerConfig()
        var given = Set<String>()
        for (k, v) in flags {
            try c.set(k, v)
            given.insert(k)
        }
        for (envName, v) in environment where envName.hasPrefix("ETCD_") {
            let key = "--" + envName.dropFirst(5).lowercased().replacingOccurrences(of: "_", with: "-")
            if given.contains(key) || key == "--config-file" { continue }
            guard knownFlags.contains(key) || notHonoured[key] != nil else {
                throw ConfigError("environment variable \(envName) names no flag (\(key))")
            }
            try c.set(key, v)
        }
        return c
    }

    static let booleanFlags: Set<String> = ["--strict-reconfig-check", "--pre-vote", "--client-cert-auth", "--auto-tls",
                                            "--peer-client-cert-auth", "--peer-auto-tls", "--enable-pprof", "--enable-v2",
                                            "--experimental-initial-corrupt-check"]
    static let knownFlags: Set<String> = [
        "--name", "--data-dir", "--wal-dir", "--listen-client-urls", "--advertise-client-urls", "--listen-peer-urls",
        "--initial-advertise-peer-urls", "--listen-metrics-urls", "--initial-cluster", "--initial-cluster-state",
        "--initial-cluster-token", "--snapshot-count", "--max-snapshots", "--max-wals", "--heartbeat-interval",
        "--election-timeout", "--quota-backend-bytes", "--max-request-bytes", "--max-txn-ops", "--auto-compaction-mode",
        "--auto-compaction-retention", "--log-level", "--auth-token", "--bcrypt-cost", "--backend", "--strict-reconfig-check",
        "--pre-vote", "--config-file", "--experimental-watch-progress-notify-interval",
    ]

    mutating func set(_ key: String, _ v: String) throws(ConfigError) {
        func int(_ v: String) throws(ConfigError) -> Int {
            guard let n = Int(v), n >= 0 else { throw ConfigError("flag \(key): \"\(v)\" is not a non-negative integer") }
            return n
        }
        func bool(_ v: String) throws(ConfigError) -> Bool {
            switch v.lowercased() {
            case "true", "1": return true
            case "false", "0": return false
            default: throw ConfigError("flag \(key): \"\(v)\" is not true or false")
            }
        }
        func urls(_ v: String) throws(ConfigError) -> [String] {
            let list = v.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for u in list {
                guard u.hasPrefix("http://") || u.hasPrefix("https://") || u.hasPrefix("unix://") else {
                    throw ConfigError("flag \(key): URL \"\(u)\" must start with http:// or https://")
                }
            }
            return list
        }
        switch key {
        case "--name": name = v
        case "--data-dir": dataDir = v
        case "--wal-dir": walDir = v
        case "--listen-client-urls": listenClientURLs = try urls(v)
        case "--advertise-client-urls": advertiseClientURLs = try urls(v)
        case "--listen-peer-urls": listenPeerURLs = try urls(v)
        case "--initial-advertise-peer-urls": initialAdvertisePeerURLs = try urls(v)
        case "--listen-metrics-urls": listenMetricsURLs = try urls(v)
        case "--initial-cluster": initialCluster = v
        case "--initial-cluster-state":
            guard v == "new" || v == "existing" else { throw ConfigError("flag --initial-cluster-state: \"\(v)\" is not new or existing") }
            initialClusterState = v
        case "--initial-cluster-token": initialClusterToken = v
        case "--snapshot-count": snapshotCount = UInt64(try int(v))
        case "--max-snapshots": maxSnapshots = try int(v)
        case "--max-wals": maxWALs = try int(v)
        case "--heartbeat-interval": heartbeatMilliseconds = try int(v)
        case "--election-timeout": electionMilliseconds = try int(v)
        case "--quota-backend-bytes": quotaBackendBytes = Int64(try int(v))
        case "--max-request-bytes": maxRequestBytes = try int(v)
        case "--max-txn-ops": maxTxnOps = try int(v)
        case "--auto-compaction-mode":
            guard v == "periodic" || v == "revision" else { throw ConfigError("flag --auto-compaction-mode: \"\(v)\" is not periodic or revision") }
            autoCompactionMode = v
        case "--auto-compaction-retention": autoCompactionRetention = v
        case "--log-level":
            guard ["debug", "info", "warn", "error", "panic", "fatal"].contains(v) else { throw ConfigError("flag --log-level: unknown level \"\(v)\"") }
            logLevel = v
        case "--auth-token":
            guard v.split(separator: ",").first == "simple" else { throw ConfigError("flag --auth-token: only \"simple\" tokens are supported (got \"\(v)\")") }
            authToken = "simple"
        case "--bcrypt-cost":
            let n = try int(v)
            guard (4...31).contains(n) else { throw ConfigError("flag --bcrypt-cost: \(n) is outside 4…31") }
            bcryptCost = n
        case "--backend":
            guard ["bolt", "lmdb", "crosscheck"].contains(v) else { throw ConfigError("flag --backend: \"\(v)\" is not bolt, lmdb or crosscheck") }
            backend = v
        case "--strict-reconfig-check": strictReconfigCheck = try bool(v)
        case "--pre-vote": preVote = try bool(v)
        case "--experimental-watch-progress-notify-interval":
            guard let seconds = ServerConfig.duration(v), seconds > 0 else { throw ConfigError("flag \(key): \"\(v)\" is not a duration such as 10m or 500ms") }
            watchProgressNotifyInterval = seconds
        default:
            if ServerConfig.notHonoured[key] != nil { return }
            throw ConfigError("unknown flag \(key) (see keel --help)")
        }
    }

    /// Reads etcd's YAML config file: top-level `key: value` lines with etcd's key names
    /// (`data-dir`, `listen-client-urls`, …). Nested sections (`client-transport-security`)
    /// are accepted and not honoured yet, like the TLS flags.
    static func fromYAML(path: String) throws(ConfigError) -> ServerConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read config file \(path)") }
        var c = ServerConfig()
        var lineNumber = 0
        for raw in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = String(raw)
            if let hash = line.firstIndex(of: "#"), !line[..<hash].contains("'"), !line[..<hash].contains("\"") { line = String(line[..<hash]) }
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("---") { continue }
            if line.first == " " || line.first == "\t" { continue }   // inside a nested section
            guard let colon = line.firstIndex(of: ":") else { throw ConfigError("\(path):\(lineNumber): expected \"key: value\"") }
            let key = "--" + line[..<colon].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, (value.hasPrefix("'") && value.hasSuffix("'")) || (value.hasPrefix("\"") && value.hasSuffix("\"")) {
                value = String(value.dropFirst().dropLast())
            }
            if value.isEmpty || value == "null" || value == "~" { continue }
            let nested: Set<String> = ["--client-transport-security", "--peer-transport-security"]
            if nested.contains(key) { continue }
            guard knownFlags.contains(key) || notHonoured[key] != nil else {
                // etcd's file has keys for features Keel has no flag for; say so instead of failing.
                throw ConfigError("\(path):\(lineNumber): unknown key \"\(key.dropFirst(2))\"")
            }
            do { try c.set(key, value) } catch { throw ConfigError("\(path):\(lineNumber): \(error.message)") }
        }
        return c
    }

    /// A Go duration (`10m`, `1h30m`, `500ms`, `2s`) in seconds.
    static func duration(_ text: String) -> Double? {
        var total = 0.0, number = "", rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        while let ch = rest.first {
            if ch.isNumber || ch == "." { number.append(ch); rest = rest.dropFirst(); continue }
            guard let n = Double(number) else { return nil }
            let units: [(String, Double)] = [("ms", 0.001), ("h", 3600), ("m", 60), ("s", 1)]
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            total += n * scale
            rest = rest.dropFirst(unit.count)
            number = ""
        }
        return number.isEmpty ? total : nil
    }

    /// `--initial-cluster` or the default `<name>=<first initial advertise peer URL>`.
    public var effectiveInitialCluster: String {
        initialCluster.isEmpty ? initialAdvertisePeerURLs.map { "\(name)=\($0)" }.joined(separator: ",") : initialCluster
    }

    /// `--initial-cluster` as etcd reads it: member name → peer URLs.
    public func initialMembers() throws(ConfigError) -> [String: [String]] {
        do { return try EtcdIdentity.parseInitialCluster(effectiveInitialCluster) } catch { throw ConfigError(error.description) }
    }

    /// This member's ID and the cluster's for a new cluster, derived from `--initial-cluster`
    /// and `--initial-cluster-token` as etcd derives them; the member is the one named
    /// `--name`, and its URLs must be `--initial-advertise-peer-urls` (etcd's checks).
    public func identity() throws(ConfigError) -> (memberID: UInt64, clusterID: UInt64, members: Int) {
        let members = try initialMembers()
        do {
            let b = try EtcdIdentity.bootstrap(members: members, name: name, advertisePeerURLs: initialAdvertisePeerURLs, token: initialClusterToken)
            return (b.memberID, b.clusterID, b.members.count)
        } catch {
            throw ConfigError(error.description)
        }
    }

    /// Host and port of a client URL (`localhost` binds 127.0.0.1, as a loopback-only default).
    public static func hostAndPort(_ url: String) throws(ConfigError) -> (host: String, port: Int) {
        var rest = Substring(url)
        if let r = rest.range(of: "://") { rest = rest[r.upperBound...] }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (0...65535).contains(port) else {
            throw ConfigError("URL \"\(url)\" has no port")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host.isEmpty { host = "127.0.0.1" }
        return (host, port)
    }

    /// The auto-compaction retention: seconds for `periodic`, revisions for `revision`; 0 is off.
    public func compactionRetention() throws(ConfigError) -> Double {
        let r = autoCompactionRetention
        if autoCompactionMode == "revision" {
            guard let n = Int64(r), n >= 0 else { throw ConfigError("--auto-compaction-retention: \"\(r)\" is not a revision count") }
            return Double(n)
        }
        if let hours = Double(r) { return hours * 3600 }
        var total = 0.0, number = ""
        for ch in r {
            if ch.isNumber || ch == "." { number.append(ch); continue }
            guard let n = Double(number) else { throw ConfigError("--auto-compaction-retention: cannot read \"\(r)\"") }
            switch ch {
            case "h": total += n * 3600
            case "m": total += n * 60
            case "s": total += n
            default: throw ConfigError("--auto-compaction-retention: unknown unit \"\(ch)\" in \"\(r)\"")
            }
            number = ""
        }
        guard number.isEmpty else { throw ConfigError("--auto-compaction-retention: \"\(r)\" ends without a unit") }
        return total
    }
}

/// A configuration mistake, with the flag, key or value at fault.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
