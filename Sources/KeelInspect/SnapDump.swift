import Foundation
import KeelIO
import KeelProto
import KeelWAL

/// What `keelutl snap dump` shows of an etcd `.snap` file: its metadata, conf state and the
/// paths of the v2 store it carries (etcd's JSON: membership under `/0/members`, `/0/version`).
public struct SnapDump {
    public let snapshot: Raftpb_Snapshot

    /// Reads and checks (CRC) the file.
    public init(path: String, fileSystem: any FileSystem = POSIXFileSystem()) throws(WALError) {
        let snapper = Snapshotter(fileSystem: fileSystem, directory: parentDirectory(path))
        snapshot = try snapper.read(path: path)
    }

    /// The v2 store's `CurrentIndex`, `CurrentVersion` and every leaf path (with its value,
    /// cut at 80 characters), sorted; nil when the data is not the v2 store's JSON.
    public var v2Store: (currentIndex: String, currentVersion: String, paths: [String])? {
        guard let json = try? JSONSerialization.jsonObject(with: snapshot.data) as? [String: Any] else { return nil }
        var paths: [String] = []
        // Iterative, with a depth bound: the file is input, and a deep one must not overflow the stack.
        var stack: [(node: [String: Any], depth: Int)] = []
        if let root = json["Root"] as? [String: Any] { stack.append((root, 0)) }
        while let (node, depth) = stack.popLast() {
            if let path = node["Path"] as? String, node["Children"] == nil || node["Children"] is NSNull {
                let value = (node["Value"] as? String) ?? ""
                paths.append(value.isEmpty ? path : "\(path) = \(value.count > 80 ? String(value.prefix(80)) + "…" : value)")
            }
            if depth < 64, let children = node["Children"] as? [String: Any] {
                for child in children.values { if let c = child as? [String: Any] { stack.append((c, depth + 1)) } }
            }
        }
        return ("\(json["CurrentIndex"] ?? "?")", "\(json["CurrentVersion"] ?? "?")", paths.sorted())
    }

    /// The report, line by line.
    public var lines: [String] {
        let meta = snapshot.metadata
        var lines = [
            "index: \(meta.index)",
            "term: \(meta.term)",
            "conf state: voters=\(meta.confState.voters.map { String($0, radix: 16) }) learners=\(meta.confState.learners.map { String($0, radix: 16) })",
            "data: \(snapshot.data.count) bytes",
        ]
        if let store = v2Store {
            lines.append("v2 store: CurrentIndex=\(store.currentIndex) CurrentVersion=\(store.currentVersion)")
            lines += store.paths.map { "  " + $0 }
        } else {
            lines.append("v2 store: not JSON")
        }
        return lines
    }
}
