import Foundation
import KeelIO

/// Member and cluster IDs derived as etcd derives them, so the same `--initial-cluster` and
/// `--initial-cluster-token` give the same IDs in Keel and etcd (and in their WALs).
public enum EtcdIdentity {
    /// etcd's `NewMember`: the first 8 bytes (big-endian) of SHA-1 over the member's peer URLs
    /// sorted and concatenated, then the cluster token, then — for a member added at runtime —
    /// the Unix time in decimal.
    public static func memberID(peerURLs: [String], clusterToken: String, addedAt unixSeconds: Int64? = nil) -> UInt64 {
        var b: [UInt8] = []
        for url in peerURLs.sorted() { b += Array(url.utf8) }
        b += Array(clusterToken.utf8)
        if let unixSeconds { b += Array(String(unixSeconds).utf8) }
        return bigEndian(SHA1.hash(b))
    }

    /// etcd's cluster ID: the first 8 bytes of SHA-1 over the member IDs, sorted, each as 8
    /// big-endian bytes.
    public static func clusterID(memberIDs: [UInt64]) -> UInt64 {
        var b: [UInt8] = []
        for id in memberIDs.sorted() { b += (0..<8).reversed().map { UInt8(truncatingIfNeeded: id >> (UInt64($0) * 8)) } }
        return bigEndian(SHA1.hash(b))
    }

    /// A member as etcd 3.4 marshals `membership.Member` to JSON (Go's field order, empty fields
    /// omitted, peer URLs sorted): the context of a `ConfChangeAddNode` (etcd refuses to apply
    /// one without it) and the value of the member's key in the backend's `members` bucket.
    public static func memberJSON(id: UInt64, peerURLs: [String], name: String = "", clientURLs: [String] = [], isLearner: Bool = false) -> [UInt8] {
        var s = "{\"id\":\(id),\"peerURLs\":[" + peerURLs.sorted().map(V2Store.quote).joined(separator: ",") + "]"
        if isLearner { s += ",\"isLearner\":true" }
        if !name.isEmpty { s += ",\"name\":" + V2Store.quote(name) }
        if !clientURLs.isEmpty { s += ",\"clientURLs\":[" + clientURLs.map(V2Store.quote).joined(separator: ",") + "]" }
        return Array((s + "}").utf8)
    }

    /// A member's published attributes as etcd 3.4 marshals `membership.Attributes`.
    public static func attributesJSON(name: String, clientURLs: [String]) -> String {
        var parts: [String] = []
        if !name.isEmpty { parts.append("\"name\":" + V2Store.quote(name)) }
        if !clientURLs.isEmpty { parts.append("\"clientURLs\":[" + clientURLs.map(V2Store.quote).joined(separator: ",") + "]") }
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// A bootstrap configuration etcd would refuse, in etcd's words.
    public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// `--initial-cluster` as etcd reads it: member name → peer URLs (a name may appear more
    /// than once, one URL each time).
    public static func parseInitialCluster(_ s: String) throws(ConfigurationError) -> [String: [String]] {
        var members: [String: [String]] = [:]
        for pair in s.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let name = parts.first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
            let url = parts.count == 2 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""
            guard !name.isEmpty, url.contains("://") else { throw ConfigurationError("--initial-cluster: \"\(pair)\" is not name=URL") }
            members[name, default: []].append(url)
        }
        guard !members.isEmpty else { throw ConfigurationError("--initial-cluster is empty") }
        return members
    }

    /// A new cluster's IDs as etcd derives them, after etcd's checks: `name` is in
    /// `members` with exactly `advertisePeerURLs`, and no two members share an ID.
    /// - Returns: this member's ID, the cluster ID, and every member by ID.
    public static func bootstrap(members: [String: [String]], name: String, advertisePeerURLs: [String], token: String)
        throws(ConfigurationError) -> (memberID: UInt64, clusterID: UInt64, members: [UInt64: (name: String, peerURLs: [String])]) {
        guard let mine = members[name] else {
            throw ConfigurationError("couldn't find local name \"\(name)\" in the initial cluster configuration")
        }
        guard mine.sorted() == advertisePeerURLs.sorted() else {
            throw ConfigurationError("--initial-cluster has \(name)=\(mine.sorted().joined(separator: ",")) but missing from --initial-advertise-peer-urls=\(advertisePeerURLs.joined(separator: ","))")
        }
        var byID: [UInt64: (name: String, peerURLs: [String])] = [:]
        for (n, urls) in members {
            let id = memberID(peerURLs: urls, clusterToken: token)
            guard byID[id] == nil, id != 0 else { throw ConfigurationError("--initial-cluster: member \(n) has the same ID as another member (identical peer URLs)") }
            byID[id] = (n, urls.sorted())
        }
        return (memberID(peerURLs: mine, clusterToken: token), clusterID(memberIDs: Array(byID.keys)), byID)
    }

    private static func bigEndian(_ digest: [UInt8]) -> UInt64 {
        digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
