import Foundation
import KeelIO

/// etcd 3.4's v2 store as the JSON it keeps in `.snap` files: the cluster membership under
/// `/0/members/<id>/{raftAttributes,attributes}`, the cluster version at `/0/version`, and an
/// empty `/1`, with etcd's field order (Go's struct order; maps by sorted key) and its watcher
/// history of the bootstrap writes.
public struct V2Member: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner = false

    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

public enum V2Store {
    /// The store after bootstrapping `members` (each member's raftAttributes created, its
    /// attributes and the cluster version set, as etcd's first entries do).
    public static func json(members: [V2Member], clusterVersion: String = "3.4.0") -> [UInt8] {
        var index: UInt64 = 0
        var events: [String] = []
        var memberNodes: [String] = []
        var stats = (created: 0, sets: 0)
        let sorted = members.sorted { String($0.id, radix: 16) < String($1.id, radix: 16) }
        // Creation order as etcd: every raftAttributes (conf changes), then attributes, then the version.
        var created: [UInt64: UInt64] = [:]
        for m in members.sorted(by: { $0.id < $1.id }) {
            index += 1
            created[m.id] = index
            let path = "/0/members/\(String(m.id, radix: 16))/raftAttributes"
            events.append(event("create", path, raftAttributes(m), index))
            stats.created += 1
        }
        var attributesIndex: [UInt64: UInt64] = [:]
        for m in members.sorted(by: { $0.id < $1.id }) {
            index += 1
            attributesIndex[m.id] = index
            events.append(event("set", "/0/members/\(String(m.id, radix: 16))/attributes", attributes(m), index))
            stats.sets += 1
        }
        index += 1
        let versionIndex = index
        events.append(event("set", "/0/version", clusterVersion, versionIndex))
        stats.sets += 1
        for m in sorted {
            let hex = String(m.id, radix: 16)
            let c = created[m.id] ?? 0, a = attributesIndex[m.id] ?? 0
            memberNodes.append(quote(hex) + ":" + dir("/0/members/\(hex)", c, c, [
                ("attributes", leaf("/0/members/\(hex)/attributes", a, attributes(m))),
                ("raftAttributes", leaf("/0/members/\(hex)/raftAttributes", c, raftAttributes(m))),
            ].map { quote($0.0) + ":" + $0.1 }.joined(separator: ",")))
        }
        let membersIndex: UInt64 = members.isEmpty ? 0 : 1
        let zero = dir("/0", 0, 0, [
            quote("members") + ":" + dir("/0/members", membersIndex, membersIndex, memberNodes.joined(separator: ",")),
            quote("version") + ":" + leaf("/0/version", versionIndex, clusterVersion),
        ].joined(separator: ","))
        let root = dir("/", 0, 0, quote("0") + ":" + zero + "," + quote("1") + ":" + dir("/1", 0, 0, ""))
        let capacity = 1000
        let queue = (events + [String](repeating: "null", count: capacity - events.count)).joined(separator: ",")
        var s = "{\"Root\":" + root
        s += ",\"WatcherHub\":{\"EventHistory\":{\"Queue\":{\"Events\":[" + queue + "],\"Size\":\(events.count),\"Front\":0,\"Back\":\(events.count),\"Capacity\":\(capacity)}"
        s += ",\"StartIndex\":1,\"LastIndex\":\(index)}}"
        s += ",\"CurrentIndex\":\(index)"
        s += ",\"Stats\":{\"getsSuccess\":0,\"getsFail\":\(members.count),\"setsSuccess\":\(stats.sets),\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,"
        s += "\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":\(stats.created),\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,"
        s += "\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0},\"CurrentVersion\":2}"
        return Array(s.utf8)
    }

    static func raftAttributes(_ m: V2Member) -> String {
        "{\"peerURLs\":[" + m.peerURLs.map(quote).joined(separator: ",") + "]" + (m.isLearner ? ",\"isLearner\":true" : "") + "}"
    }

    static func attributes(_ m: V2Member) -> String {
        "{\"name\":" + quote(m.name) + ",\"clientURLs\":[" + m.clientURLs.map(quote).joined(separator: ",") + "]}"
    }

    static func dir(_ path: String, _ created: UInt64, _ modified: UInt64, _ children: String) -> String {
        "{\"Path\":\(quote(path)),\"CreatedIndex\":\(created),\"ModifiedIndex\":\(modified),\"ExpireTime\":\"0001-01-01T00:00:00Z\",\"Value\":\"\",\"Children\":{\(children)}}"
    }

    static func leaf(_ path: String, _ index: UInt64, _ value: String) -> String {
        "{\"Path\":\(quote(path)),\"CreatedIndex\":\(index),\"ModifiedIndex\":\(index),\"ExpireTime\":\"0001-01-01T00:00:00Z\",\"Value\":\(quote(value)),\"Children\":null}"
    }

    static func event(_ action: String, _ key: String, _ value: String, _ index: UInt64) -> String {
        "{\"action\":\"\(action)\",\"node\":{\"key\":\(quote(key)),\"value\":\(quote(value)),\"modifiedIndex\":\(index),\"createdIndex\":\(index)}}"
    }

    /// A JSON string as Go's encoding/json writes it: with its HTML-safe escapes.
    static func quote(_ s: String) -> String {
        JSONLine.quote(s).replacingOccurrences(of: "<", with: "\\u003c").replacingOccurrences(of: ">", with: "\\u003e")
            .replacingOccurrences(of: "&", with: "\\u0026")
    }
}

extension V2Store {
    /// What Keel keeps from a `.snap`'s v2 store JSON (etcd's or Keel's): each member's
    /// published attributes (`/0/members/<id>/attributes`) and the cluster version.
    /// - Throws: `NodeError.dataDirectory` when the bytes are not a v2 store.
    public static func published(_ json: [UInt8], file: String) throws(NodeError) -> (attributes: [UInt64: RaftNode.V2Attributes], clusterVersion: String?) {
        guard let root = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any],
              let top = root["Root"] as? [String: Any] else {
            throw NodeError.dataDirectory("\(file): the snapshot's data is not etcd's v2 store JSON")
        }
        func children(_ node: [String: Any]?) -> [String: Any] { node?["Children"] as? [String: Any] ?? [:] }
        let zero = children(top)["0"] as? [String: Any]
        var attributes: [UInt64: RaftNode.V2Attributes] = [:]
        for (hex, member) in children(children(zero)["members"] as? [String: Any]) {
            guard let id = UInt64(hex, radix: 16),
                  let value = (children(member as? [String: Any])["attributes"] as? [String: Any])?["Value"] as? String,
                  let a = try? JSONDecoder().decode(RaftNode.V2Attributes.self, from: Data(value.utf8)) else { continue }
            attributes[id] = a
        }
        let version = (children(zero)["version"] as? [String: Any])?["Value"] as? String
        return (attributes, version)
    }
}
