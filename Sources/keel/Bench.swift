import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import KeelGRPC
import KeelProto

/// `keel bench`: a load generator in the style of etcd's `benchmark` tool, for any
/// etcd-compatible endpoint. Clients share `--conns` HTTP/2 connections round-robin; each
/// records every request's latency; the report gives throughput and percentiles.
enum Bench {
    struct Options {
        var endpoints = ["127.0.0.1:2379"]
        var clients = 1
        var conns = 1
        var total = 10_000
        var keySize = 8
        var valSize = 8
        var keySpace = 1
        var sequentialKeys = false
        var consistency = "l"
        var watchers = 1
        var json = false
    }

    static let usage = """
    Usage: keel bench <put|range|txn-put|watch-latency|lease-keepalive> [flags]
      --endpoints HOST:PORT[,…]   (default 127.0.0.1:2379)
      --clients N                 concurrent clients (default 1)
      --conns N                   gRPC connections shared by the clients (default 1)
      --total N                   requests in all (default 10000)
      --key-size N, --val-size N  bytes (default 8, 8)
      --key-space-size N          distinct keys (default 1; put with 1 key rewrites it)
      --sequential-keys           keys in order instead of random
      --consistency l|s           range: linearizable or serializable (default l)
      --watchers N                watch-latency: watchers on the key (default 1)
      --json                      one JSON object instead of the table
    """

    static func main(_ args: [String]) async -> Int32 {
        guard let workload = args.first, !workload.hasPrefix("-") else {
            print(usage)
            return args.contains("--help") ? 0 : 2
        }
        var o = Options()
        var i = 1
        func value() -> String? {
            i += 1
            return i < args.count ? args[i] : nil
        }
        while i < args.count {
            var a = args[i]
            var inline: String?
            if let eq = a.firstIndex(of: "=") {
                inline = String(a[a.index(after: eq)...])
                a = String(a[..<eq])
            }
            let v = { inline ?? value() }
            switch a {
            case "--endpoints": o.endpoints = (v() ?? "").split(separator: ",").map { String($0).replacingOccurrences(of: "http://", with: "") }
            case "--clients": o.clients = Int(v() ?? "") ?? 0
            case "--conns": o.conns = Int(v() ?? "") ?? 0
            case "--total": o.total = Int(v() ?? "") ?? 0
            case "--key-size": o.keySize = Int(v() ?? "") ?? 0
            case "--val-size": o.valSize = Int(v() ?? "") ?? -1
            case "--key-space-size": o.keySpace = Int(v() ?? "") ?? 0
            case "--sequential-keys": o.sequentialKeys = true
            case "--consistency": o.consistency = v() ?? ""
            case "--watchers": o.watchers = Int(v() ?? "") ?? 0
            case "--json": o.json = true
            case "--help": print(usage); return 0
            default:
                FileHandle.standardError.write(Data("keel bench: unknown flag \(a)\n\(usage)\n".utf8))
                return 2
            }
            i += 1
        }
        guard o.clients > 0, o.conns > 0, o.total > 0, o.keySize > 0, o.valSize >= 0, o.keySpace > 0, o.watchers > 0,
              ["l", "s"].contains(o.consistency), !o.endpoints.isEmpty else {
            FileHandle.standardError.write(Data("keel bench: counts must be positive, --consistency l or s\n".utf8))
            return 2
        }
        do {
            let report = try await run(workload, o)
            print(o.json ? report.json : report.table)
            if let e = firstError.value { FileHandle.standardError.write(Data("keel bench: first error: \(e)\n".utf8)) }
            return 0
        } catch {
            FileHandle.standardError.write(Data("keel bench \(workload): \(error)\n".utf8))
            return 1
        }
    }

    typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

    static func connect(_ endpoint: String) throws -> Client {
        let parts = endpoint.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw RPCError(code: .invalidArgument, message: "endpoint \(endpoint) is not HOST:PORT") }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        return GRPCClient(transport: try .http2NIOPosix(target: .ipv4(host: host, port: port), transportSecurity: .plaintext,
                                                        config: .defaults { $0.connection.maxIdleTime = nil }))
    }

    static func key(_ n: Int, _ o: Options) -> Data {
        var k = [UInt8](repeating: 0, count: o.keySize)
        var v = UInt64(n)
        for j in stride(from: o.keySize - 1, through: 0, by: -1) where v > 0 {
            k[j] = UInt8(truncatingIfNeeded: v)
            v >>= 8
        }
        return Data(k)
    }

    static func run(_ workload: String, _ o: Options) async throws -> Report {
        let clients = try (0..<o.conns).map { try connect(o.endpoints[$0 % o.endpoints.count]) }
        let runners = clients.map { c in Task { try await c.runConnections() } }
        defer {
            for c in clients { c.beginGracefulShutdown() }
            for r in runners { r.cancel() }
        }
        let value = Data(repeating: 0x76, count: o.valSize)
        let perClient = (0..<o.clients).map { o.total / o.clients + ($0 < o.total % o.clients ? 1 : 0) }
        let began = Date()
        var latencies: [Double] = []
        var errors = 0
        switch workload {
        case "put", "txn-put", "range":
            if workload == "range" {
                // Something to read.
                var p = Etcdserverpb_PutRequest()
                p.key = key(0, o)
                p.value = value
                _ = try await Etcdserverpb_KV.Client(wrapping: clients[0]).put(p)
            }
            try await withThrowingTaskGroup(of: ([Double], Int).self) { group in
                for c in 0..<o.clients {
                    let kv = Etcdserverpb_KV.Client(wrapping: clients[c % clients.count])
                    let count = perClient[c]
                    group.addTask {
                        var lat: [Double] = []
                        lat.reserveCapacity(count)
                        var errs = 0
                        var rng = SystemRandomNumberGenerator()
                        for n in 0..<count {
                            let k = key(o.sequentialKeys ? (c * count + n) % o.keySpace : Int.random(in: 0..<o.keySpace, using: &rng), o)
                            let t0 = DispatchTime.now().uptimeNanoseconds
                            do {
                                switch workload {
                                case "put":
                                    var p = Etcdserverpb_PutRequest()
                                    p.key = k
                                    p.value = value
                                    _ = try await kv.put(p)
                                case "txn-put":
                                    var p = Etcdserverpb_PutRequest()
                                    p.key = k
                                    p.value = value
                                    var op = Etcdserverpb_RequestOp()
                                    op.requestPut = p
                                    var t = Etcdserverpb_TxnRequest()
                                    t.success = [op]
                                    _ = try await kv.txn(t)
                                default:
                                    var r = Etcdserverpb_RangeRequest()
                                    r.key = key(0, o)
                                    r.serializable = o.consistency == "s"
                                    _ = try await kv.range(r)
                                }
                                lat.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                            } catch {
                                errs += 1
                                firstError.set("\(error)")
                            }
                        }
                        return (lat, errs)
                    }
                }
                for try await (l, e) in group {
                    latencies += l
                    errors += e
                }
            }
        case "lease-keepalive":
            try await withThrowingTaskGroup(of: ([Double], Int).self) { group in
                for c in 0..<o.clients {
                    let lease = Etcdserverpb_Lease.Client(wrapping: clients[c % clients.count])
                    let count = perClient[c]
                    group.addTask {
                        var g = Etcdserverpb_LeaseGrantRequest()
                        g.ttl = 60
                        let id = try await lease.leaseGrant(g).id
                        let (requests, feed) = AsyncStream<Void>.makeStream()
                        return try await lease.leaseKeepAlive(requestProducer: { writer in
                            for await _ in requests {
                                var k = Etcdserverpb_LeaseKeepAliveRequest()
                                k.id = id
                                try await writer.write(k)
                            }
                        }, onResponse: { response in
                            var lat: [Double] = []
                            var t0 = DispatchTime.now().uptimeNanoseconds
                            feed.yield()
                            for try await _ in response.messages {
                                lat.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                                if lat.count == count { break }
                                t0 = DispatchTime.now().uptimeNanoseconds
                                feed.yield()
                            }
                            feed.finish()
                            return (lat, count - lat.count)
                        })
                    }
                }
                for try await (l, e) in group {
                    latencies += l
                    errors += e
                }
            }
        case "watch-latency":
            let kv = Etcdserverpb_KV.Client(wrapping: clients[0])
            let watchKey = key(0, o)
            let sentAt = SentTimes()
            let (ready, readyFeed) = AsyncStream<Void>.makeStream()
            try await withThrowingTaskGroup(of: ([Double], Int).self) { group in
                for w in 0..<o.watchers {
                    let watch = Etcdserverpb_Watch.Client(wrapping: clients[w % clients.count])
                    group.addTask {
                        let (stop, stopFeed) = AsyncStream<Void>.makeStream()
                        return try await watch.watch(requestProducer: { writer in
                            var c = Etcdserverpb_WatchCreateRequest()
                            c.key = watchKey
                            var r = Etcdserverpb_WatchRequest()
                            r.createRequest = c
                            try await writer.write(r)
                            for await _ in stop {}
                        }, onResponse: { response in
                            var lat: [Double] = []
                            for try await m in response.messages {
                                if m.created { readyFeed.yield(); continue }
                                let now = DispatchTime.now().uptimeNanoseconds
                                for e in m.events {
                                    if let t0 = sentAt.get(e.kv.modRevision) { lat.append(Double(now - t0) / 1e9) }
                                }
                                if lat.count >= o.total { break }
                            }
                            stopFeed.finish()
                            return (lat, 0)
                        })
                    }
                }
                var n = 0
                for await _ in ready {
                    n += 1
                    if n == o.watchers { break }
                }
                for i in 0..<o.total {
                    var p = Etcdserverpb_PutRequest()
                    p.key = watchKey
                    p.value = value
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    // The revision is known only from the answer; record the send time under
                    // the revision it will get (puts are sequential, one writer).
                    let expected = try await nextRevision(kv, i == 0)
                    sentAt.set(expected, t0)
                    _ = try await kv.put(p)
                }
                for try await (l, e) in group {
                    latencies += l
                    errors += e
                }
            }
        default:
            throw RPCError(code: .invalidArgument, message: "unknown workload \"\(workload)\" (\(usage))")
        }
        return Report(workload: workload, options: o, seconds: Date().timeIntervalSince(began), latencies: latencies.sorted(), errors: errors)
    }

    /// The revision the next put gets (the current one + 1), read once and then counted.
    nonisolated(unsafe) static var lastRevision: Int64 = 0
    static func nextRevision(_ kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>, _ first: Bool) async throws -> Int64 {
        if first {
            var r = Etcdserverpb_RangeRequest()
            r.key = Data([0])
            r.countOnly = true
            lastRevision = try await kv.range(r).header.revision
        }
        lastRevision += 1
        return lastRevision
    }

    /// The first request error, shown with the report.
    static let firstError = FirstError()
    final class FirstError: @unchecked Sendable {
        private let lock = NSLock()
        private var message: String?
        func set(_ m: String) { lock.withLock { if message == nil { message = m } } }
        var value: String? { lock.withLock { message } }
    }

    final class SentTimes: @unchecked Sendable {
        private let lock = NSLock()
        private var times: [Int64: UInt64] = [:]
        func set(_ rev: Int64, _ t: UInt64) { lock.withLock { times[rev] = t } }
        func get(_ rev: Int64) -> UInt64? { lock.withLock { times[rev] } }
    }

    struct Report {
        let workload: String
        let options: Options
        let seconds: Double
        let latencies: [Double]
        let errors: Int

        func percentile(_ q: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            return latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))]
        }

        var throughput: Double { Double(latencies.count) / max(seconds, 1e-9) }
        var average: Double { latencies.isEmpty ? 0 : latencies.reduce(0, +) / Double(latencies.count) }

        var table: String {
            func ms(_ s: Double) -> String { String(format: "%.4f ms", s * 1000) }
            return """
            Summary (\(workload), \(options.clients) clients, \(options.conns) conns, \(options.total) requests):
              Total:        \(String(format: "%.4f", seconds)) secs
              Requests/sec: \(String(format: "%.1f", throughput))
              Errors:       \(errors)
              Slowest:      \(ms(latencies.last ?? 0))
              Fastest:      \(ms(latencies.first ?? 0))
              Average:      \(ms(average))
              p50:          \(ms(percentile(0.5)))
              p90:          \(ms(percentile(0.9)))
              p99:          \(ms(percentile(0.99)))
              p99.9:        \(ms(percentile(0.999)))
            """
        }

        var json: String {
            let fields: [(String, String)] = [
                ("workload", "\"\(workload)\""), ("clients", "\(options.clients)"), ("conns", "\(options.conns)"),
                ("total", "\(options.total)"), ("completed", "\(latencies.count)"), ("errors", "\(errors)"),
                ("seconds", String(format: "%.6f", seconds)), ("requests_per_second", String(format: "%.2f", throughput)),
                ("average_ms", String(format: "%.4f", average * 1000)), ("p50_ms", String(format: "%.4f", percentile(0.5) * 1000)),
                ("p90_ms", String(format: "%.4f", percentile(0.9) * 1000)), ("p99_ms", String(format: "%.4f", percentile(0.99) * 1000)),
                ("p999_ms", String(format: "%.4f", percentile(0.999) * 1000)), ("max_ms", String(format: "%.4f", (latencies.last ?? 0) * 1000)),
            ]
            return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
    }
}
