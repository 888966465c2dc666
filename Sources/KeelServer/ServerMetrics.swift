import Foundation
import KeelNode

/// A gauge or counter safe to touch from any thread.
final class MetricValue: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Double = 0
    func add(_ d: Double) { lock.withLock { value += d } }
    func set(_ v: Double) { lock.withLock { value = v } }
    var current: Double { lock.withLock { value } }
}

/// The server's metrics, rendered in Prometheus text format under **etcd's metric names**
/// (so dashboards and alerts written for etcd read them): gRPC counters by service, method
/// and code; proposals; leader state; WAL fsync durations; backend size.
final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    /// Counted per RPC on the hot path: keyed by the raw names, formatted only by `render`.
    private struct RPCKey: Hashable {
        let service: String, method: String, type: String, code: String
        var labels: String {
            (code.isEmpty ? "" : "grpc_code=\"\(code)\",") + "grpc_method=\"\(method)\",grpc_service=\"etcdserverpb.\(service)\",grpc_type=\"\(type)\""
        }
    }
    private var startedCounts: [RPCKey: Double] = [:]
    private var handledCounts: [RPCKey: Double] = [:]
    let proposalsPending = MetricValue()
    let proposalsFailed = MetricValue()
    let clientBytesReceived = MetricValue()

    func started(_ service: String, _ method: String, type: String) {
        let key = RPCKey(service: service, method: method, type: type, code: "")
        lock.withLock { startedCounts[key, default: 0] += 1 }
    }

    func handled(_ service: String, _ method: String, type: String, code: String) {
        let key = RPCKey(service: service, method: method, type: type, code: code)
        lock.withLock { handledCounts[key, default: 0] += 1 }
    }

    /// The exposition text (`/metrics`).
    func render(node: RaftNode) -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples {
                out += name + (labels.isEmpty ? "" : "{\(labels)}") + " " + format(v) + "\n"
            }
        }
        let status = node.memberStatus()
        let nm = node.metrics
        metric("etcd_server_has_leader", "gauge", "Whether or not a leader exists. 1 is existence, 0 is not.", [("", status.leader != 0 ? 1 : 0)])
        metric("etcd_server_is_leader", "gauge", "Whether or not this member is a leader. 1 if is, 0 otherwise.", [("", status.leader == status.memberID ? 1 : 0)])
        metric("etcd_server_leader_changes_seen_total", "counter", "The number of leader changes seen.", [("", Double(nm.leaderChanges.load()))])
        metric("etcd_server_proposals_committed_total", "gauge", "The total number of consensus proposals committed.", [("", Double(nm.committedIndex.load()))])
        metric("etcd_server_proposals_applied_total", "gauge", "The total number of consensus proposals applied.", [("", Double(status.raftAppliedIndex))])
        metric("etcd_server_proposals_pending", "gauge", "The current number of pending proposals to commit.", [("", proposalsPending.current)])
        metric("etcd_server_proposals_failed_total", "counter", "The total number of failed proposals seen.", [("", proposalsFailed.current)])
        metric("etcd_server_id", "gauge", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
               [("server_id=\"\(String(status.memberID, radix: 16))\"", 1)])
        metric("etcd_server_version", "gauge", "Which version is running. 1 for 'server_version' label with current version.",
               [("server_version=\"\(ServerCore.etcdVersion)\"", 1)])
        metric("etcd_mvcc_db_total_size_in_bytes", "gauge", "Total size of the underlying database physically allocated in bytes.", [("", Double(status.dbSize))])
        metric("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge", "Total size of the underlying database logically in use in bytes.", [("", Double(status.dbSizeInUse))])
        metric("etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.", [("", Double(node.kv.indexedKeys))])
        metric("etcd_debugging_mvcc_current_revision", "gauge", "The current revision of store.", [("", Double(node.kv.currentRevision))])
        metric("etcd_debugging_mvcc_compact_revision", "gauge", "The revision of the last compaction in store.", [("", Double(max(node.kv.compactRevision, 0)))])
        histogram(&out, "etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.", nm.walFsync)
        histogram(&out, "etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend.", nm.backendCommit)
        let (started, handled) = lock.withLock { (startedCounts, handledCounts) }
        let labelled = { (counts: [RPCKey: Double]) in counts.map { ($0.key.labels, $0.value) }.sorted { $0.0 < $1.0 } }
        metric("grpc_server_started_total", "counter", "Total number of RPCs started on the server.", labelled(started))
        metric("grpc_server_handled_total", "counter", "Total number of RPCs completed on the server, regardless of success or failure.",
               labelled(handled))
        return out
    }

    private func histogram(_ out: inout String, _ name: String, _ help: String, _ h: DurationHistogram) {
        let s = h.snapshot()
        out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (i, bound) in s.bounds.enumerated() {
            cumulative += s.counts[i]
            out += "\(name)_bucket{le=\"\(format(bound))\"} \(cumulative)\n"
        }
        out += "\(name)_bucket{le=\"+Inf\"} \(s.count)\n\(name)_sum \(format(s.sum))\n\(name)_count \(s.count)\n"
    }

    private func format(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}
