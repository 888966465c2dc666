import Foundation
import GRPCCore
import KeelGRPC
import KeelMVCC
import KeelNode
import KeelProto
import NIOPosix

/// An etcd 3.4-compatible member: KeelNode (raft, WAL, MVCC) behind etcd's v3 gRPC API, with
/// etcd's HTTP endpoints on `--listen-metrics-urls`.
///
/// ```swift
/// var config = ServerConfig()
/// config.dataDir = "/tmp/my.etcd"
/// config.listenClientURLs = ["http://127.0.0.1:0"]      // port 0: any free port
/// let server = try await KeelServer.start(config)
/// print(server.clientPorts)                              // where etcdctl can connect
/// await server.stop()
/// ```
public final class KeelServer: Sendable {
    /// The etcd API version Keel serves.
    public static let etcdAPIVersion = ServerCore.etcdVersion
    public let config: ServerConfig
    public let node: RaftNode
    let core: ServerCore
    let log: ServerLog
    private let listeners: [ClientPortListener]
    private let connections: GRPCConnectionRegistry
    private let http: [HTTPEndpoints]
    private let background: Task<Void, Never>
    private let state = StopState()
    /// The bound client (gRPC) ports, in `--listen-client-urls` order.
    public let clientPorts: [Int]
    /// The bound metrics (HTTP) ports, in `--listen-metrics-urls` order.
    public let metricsPorts: [Int]

    private init(config: ServerConfig, node: RaftNode, core: ServerCore, log: ServerLog,
                 listeners: [ClientPortListener], connections: GRPCConnectionRegistry, clientPorts: [Int],
                 http: [HTTPEndpoints], background: Task<Void, Never>) {
        self.config = config
        self.node = node
        self.core = core
        self.log = log
        self.listeners = listeners
        self.connections = connections
        self.clientPorts = clientPorts
        self.http = http
        self.metricsPorts = http.map(\.port)
        self.background = background
    }

    /// Opens the data directory (creating a new single-member cluster when it is empty),
    /// starts raft, and listens on the client and metrics URLs.
    /// - Throws: `ConfigError` for a bad configuration, `NodeError.dataDirectory` when the data
    ///   directory is in use or damaged, or the transport's error when a port cannot be bound.
    public static func start(_ config: ServerConfig, log: ServerLog = ServerLog(level: "info")) async throws -> KeelServer {
        for u in config.listenClientURLs + config.listenMetricsURLs where u.hasPrefix("https://") {
            throw ConfigError("\(u): TLS listeners are not supported yet (serve plain http:// on loopback, or put a TLS proxy in front)")
        }
        guard let backendKind = BackendKind(rawValue: config.backend) else {
            throw ConfigError("--backend \(config.backend): not bolt, lmdb or crosscheck")
        }
        let retention = try config.compactionRetention()
        for (flag, _) in ServerConfig.notHonoured.sorted(by: { $0.key < $1.key }) where ProcessInfo.processInfo.environment["ETCD_" + flag.dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")] != nil {
            log.warn("flag accepted but not honoured yet", ["flag": flag])
        }
        var nodeConfig = RaftNode.Config(dataDirectory: config.effectiveDataDir)
        // IDs as etcd derives them (a restart takes them from the WAL instead).
        let identity = try config.identity()
        guard identity.members == 1 else {
            throw ConfigError("--initial-cluster names \(identity.members) members: keel runs single-member clusters for now (peers come with the cluster work)")
        }
        nodeConfig.memberID = identity.memberID
        nodeConfig.clusterID = identity.clusterID
        // The bootstrap ConfChangeAddNode carries the member as etcd writes it (etcd panics
        // replaying one without it).
        nodeConfig.peers = [identity.memberID: EtcdIdentity.memberJSON(id: identity.memberID, peerURLs: config.initialAdvertisePeerURLs, name: config.name)]
        nodeConfig.tickMilliseconds = max(1, config.heartbeatMilliseconds)
        nodeConfig.heartbeatTicks = 1
        nodeConfig.electionTicks = max(2, config.electionMilliseconds / max(1, config.heartbeatMilliseconds))
        nodeConfig.maxRequestBytes = config.maxRequestBytes
        nodeConfig.backendKind = backendKind
        if !config.walDir.isEmpty { nodeConfig.walDirectory = config.walDir }
        nodeConfig.snapshotCount = config.snapshotCount
        nodeConfig.maxSnapshots = config.maxSnapshots
        nodeConfig.maxWALs = config.maxWALs
        nodeConfig.log = { msg, fields in log.info(msg, fields) }
        nodeConfig.members = [V2Member(id: nodeConfig.memberID, name: config.name, peerURLs: config.initialAdvertisePeerURLs,
                                       clientURLs: config.advertiseClientURLs)]
        nodeConfig.kvOptions.maxTxnOps = config.maxTxnOps
        nodeConfig.kvOptions.quotaBytes = config.quotaBackendBytes
        nodeConfig.kvOptions.bcryptCost = config.bcryptCost
        // etcd: the shortest lease is 1.5 election timeouts, rounded up to a second.
        nodeConfig.kvOptions.minLeaseTTL = Int64((Double(config.electionMilliseconds) * 1.5 / 1000).rounded(.up))
        log.info("starting keel", ["name": config.name, "data-dir": config.effectiveDataDir, "etcd-api": ServerCore.etcdVersion,
                                   "listen-client-urls": config.listenClientURLs.joined(separator: ","),
                                   "heartbeat-ms": "\(config.heartbeatMilliseconds)", "election-ms": "\(config.electionMilliseconds)"])
        let began = Date()
        let node = try RaftNode.start(config: nodeConfig)
        let st = node.memberStatus()
        log.info("opened data directory", ["applied-index": "\(st.raftAppliedIndex)", "last-index": "\(st.raftIndex)",
                                          "revision": "\(node.kv.currentRevision)", "took": String(format: "%.3fs", Date().timeIntervalSince(began))])
        let metrics = ServerMetrics()
        let core = ServerCore(node: node, config: config, metrics: metrics)
        let routes = GRPCRoutes(core: core)
        let connections = GRPCConnectionRegistry()
        var listeners: [ClientPortListener] = []
        var ports: [Int] = []
        var endpoints: [HTTPEndpoints] = []
        do {
            for url in config.listenClientURLs {
                let (host, port) = try ServerConfig.hostAndPort(url)
                let listener: ClientPortListener
                do {
                    listener = try await ClientPortListener.bind(host: host, port: port, core: core, routes: routes, registry: connections)
                } catch {
                    throw ConfigError("cannot listen on \(url) (is the port in use?): \(error)")
                }
                listeners.append(listener)
                ports.append(listener.port)
                log.info("serving client requests (gRPC and HTTP /health, /version, /metrics)", ["address": "\(host):\(listener.port)"])
            }
            for url in config.listenMetricsURLs {
                let (host, port) = try ServerConfig.hostAndPort(url)
                let h = try await HTTPEndpoints.start(host: host, port: port, core: core, group: MultiThreadedEventLoopGroup.singleton)
                endpoints.append(h)
                log.info("serving /metrics, /health and /version", ["address": "\(host):\(h.port)"])
            }
        } catch {
            for l in listeners { await l.close() }
            for h in endpoints { await h.close() }
            node.stop()
            throw error
        }
        let background = Task.detached { await Self.maintain(core: core, log: log, retention: retention) }
        return KeelServer(config: config, node: node, core: core, log: log, listeners: listeners, connections: connections, clientPorts: ports, http: endpoints, background: background)
    }

    /// Background duties: auto compaction and noticing a fatal node error (watchers catch up
    /// on the node's driver thread, which owns the backend's write transaction).
    static func maintain(core: ServerCore, log: ServerLog, retention: Double) async {
        var compactor = AutoCompactor(mode: core.config.autoCompactionMode, retention: retention)
        var reportedFatal = false
        var published = false
        while !Task.isCancelled {
            if !published && core.node.leaderAndTerm.leader != 0 {
                published = await publish(core: core, log: log)
            }
            try? await Task.sleep(nanoseconds: 100_000_000)
            if let f = core.node.fatalError, !reportedFatal {
                reportedFatal = true
                log.error("member stopped: durable state failed; restart to recover from the WAL", ["error": f.description])
            }
            if let rev = compactor.due(now: Date().timeIntervalSince1970, currentRevision: core.kv.currentRevision, compacted: core.kv.compactRevision) {
                var proposal = Etcdserverpb_InternalRaftRequest()
                proposal.compaction.revision = rev
                do {
                    _ = try await core.propose(proposal)
                    log.info("auto compaction", ["revision": "\(rev)", "mode": core.config.autoCompactionMode])
                } catch {
                    log.warn("auto compaction failed", ["revision": "\(rev)", "error": "\(error)"])
                }
            }
        }
    }

    /// As etcd 3.4 at every start: this member's attributes (name, client URLs) through raft
    /// as a v2 PUT, and on the leader the cluster version if none is set. Written to the WAL as
    /// etcd writes them, so etcd replaying the log (and the backend's `members` and
    /// `cluster/clusterVersion`) sees what it would have written itself.
    static func publish(core: ServerCore, log: ServerLog) async -> Bool {
        let node = core.node
        let hex = String(node.config.memberID, radix: 16)
        do {
            try await node.publishV2(path: "/0/members/\(hex)/attributes",
                                     value: EtcdIdentity.attributesJSON(name: core.config.name, clientURLs: core.config.advertiseClientURLs))
            if node.leaderAndTerm.leader == node.config.memberID && node.published.clusterVersion == nil {
                try await node.publishV2(path: "/0/version", value: ServerCore.clusterVersion)
            }
            log.info("published local member to cluster through raft", ["local-member-id": hex, "cluster-id": String(node.config.clusterID, radix: 16)])
            return true
        } catch {
            log.warn("failed to publish local member to cluster through raft; will retry", ["error": "\(error)"])
            return false
        }
    }

    /// Why the member stopped by itself (a failed fdatasync), if it did.
    public var fatalError: NodeError? { node.fatalError }

    /// Stops gracefully: no new RPCs, in-flight ones answered (streams get up to 2 s), then the
    /// WAL and the backend are closed. Idempotent.
    public func stop() async {
        guard state.begin() else { return }
        log.info("stopping", [:])
        for l in listeners { await l.close() }
        connections.forEach { $0.beginShutdown() }
        let deadline = Date().addingTimeInterval(2)
        while connections.count > 0 && Date() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        connections.forEach { $0.close() }
        let closing = Date().addingTimeInterval(1)
        while connections.count > 0 && Date() < closing {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        for h in http { await h.close() }
        background.cancel()
        await background.value
        node.stop()
        log.info("stopped", [:])
    }
}

/// Whether `stop` began (it runs once).
final class StopState: @unchecked Sendable {
    private let lock = NSLock()
    private var stopping = false
    func begin() -> Bool { lock.withLock { defer { stopping = true }; return !stopping } }
}

/// etcd's auto compaction: `periodic` keeps `retention` seconds of history (sampling the
/// revision every tenth of it, at least every second), `revision` keeps `retention` revisions
/// (checked every `revisionInterval` seconds, 5 minutes as etcd).
struct AutoCompactor {
    let mode: String
    let retention: Double
    var revisionInterval: Double = 300
    private var samples: [(time: Double, revision: Int64)] = []
    private var lastCheck: Double = 0

    init(mode: String, retention: Double) {
        self.mode = mode
        self.retention = retention
    }

    /// The revision to compact to now, if any.
    mutating func due(now: Double, currentRevision: Int64, compacted: Int64) -> Int64? {
        guard retention > 0 else { return nil }
        if mode == "revision" {
            guard now - lastCheck >= revisionInterval else { return nil }
            lastCheck = now
            // The retention comes from a flag: clamp before converting (Int64(2^63) traps).
            let keep = retention >= 9.2e18 ? Int64.max : Int64(retention)
            let target = currentRevision - keep
            return target > max(compacted, 0) ? target : nil
        }
        let interval = max(retention / 10, 1)
        if samples.isEmpty || now - samples[samples.count - 1].time >= interval { samples.append((now, currentRevision)) }
        // The newest sample at least `retention` old is the revision to keep from.
        guard let i = samples.lastIndex(where: { now - $0.time >= retention }) else { return nil }
        let target = samples[i].revision
        samples.removeFirst(i + 1)
        return target > max(compacted, 0) ? target : nil
    }
}
