import Foundation
import KeelBolt
import KeelIO
import KeelProto

/// `keelutl etcd dump`: every bucket of an etcd backend file, decoded.
public struct EtcdDump {
    public var keyPrefix: [UInt8]?
    public var revisionRange: ClosedRange<Int64>?
    public var limit: Int?

    public init(keyPrefix: [UInt8]? = nil, revisionRange: ClosedRange<Int64>? = nil, limit: Int? = nil) {
        self.keyPrefix = keyPrefix
        self.revisionRange = revisionRange
        self.limit = limit
    }

    /// The decoded lines, bucket by bucket, and the problems met on the way (undecodable values
    /// are reported, not fatal).
    public func lines(_ db: DB) throws -> (lines: [String], problems: [String]) {
        var out: [String] = []
        var problems: [String] = []
        try db.view { tx throws in
            for name in try tx.bucketNames() {
                let bucketName = String(decoding: name, as: UTF8.self)
                guard let bucket = try tx.bucket(name) else { continue }
                out.append("bucket \(bucketName)")
                var shown = 0
                let c = bucket.cursor()
                var entry = try c.first()
                while let e = entry {
                    defer { }
                    if let limit, shown >= limit { break }
                    if let line = describe(bucketName, e.key.bytes, e.value?.bytes, &problems) {
                        out.append("  " + line)
                        shown += 1
                    }
                    entry = try c.next()
                }
            }
        }
        return (out, problems)
    }

    private func describe(_ bucket: String, _ key: [UInt8], _ value: [UInt8]?, _ problems: inout [String]) -> String? {
        guard let value else { return "\(show(key)) <nested bucket>" }
        switch bucket {
        case "key":
            guard let rev = Revision(key) else {
                problems.append("key bucket: \(show(key)) is not a revision")
                return "\(show(key)) <not a revision>"
            }
            if let range = revisionRange, !range.contains(rev.main) { return nil }
            guard let kv = try? Mvccpb_KeyValue(serializedBytes: value) else {
                problems.append("key bucket: revision \(rev) holds a value that is not an mvccpb.KeyValue")
                return "rev=\(rev) <undecodable value>"
            }
            if let prefix = keyPrefix, !kv.key.starts(with: prefix) { return nil }
            if rev.tombstone { return "rev=\(rev) tombstone key=\(show([UInt8](kv.key)))" }
            return "rev=\(rev) key=\(show([UInt8](kv.key))) value=\(show([UInt8](kv.value))) create=\(kv.createRevision) mod=\(kv.modRevision) version=\(kv.version) lease=\(kv.lease)"
        case "meta":
            let name = String(decoding: key, as: UTF8.self)
            if name == "consistent_index" || name == "term", value.count == 8 {
                return "\(name)=\(value.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })"
            }
            if let rev = Revision(value) { return "\(name)=\(rev.main)" }
            return "\(name)=\(show(value))"
        case "lease":
            guard let lease = try? Leasepb_Lease(serializedBytes: value) else {
                problems.append("lease bucket: \(show(key)) is not a leasepb.Lease")
                return "\(show(key)) <undecodable lease>"
            }
            return "lease id=\(lease.id) ttl=\(lease.ttl) remaining=\(lease.remainingTtl)"
        case "authUsers":
            guard let user = try? Authpb_User(serializedBytes: value) else { return "\(show(key)) <undecodable user>" }
            return "user name=\(show([UInt8](user.name))) password=<hidden> roles=\(user.roles.joined(separator: ","))"
        case "authRoles":
            guard let role = try? Authpb_Role(serializedBytes: value) else { return "\(show(key)) <undecodable role>" }
            let perms = role.keyPermission.map { "\($0.permType):\(show([UInt8]($0.key)))-\(show([UInt8]($0.rangeEnd)))" }
            return "role name=\(show([UInt8](role.name))) permissions=[\(perms.joined(separator: " "))]"
        case "alarm":
            if let alarm = try? Etcdserverpb_AlarmMember(serializedBytes: key) {
                return "alarm member=\(String(alarm.memberID, radix: 16)) alarm=\(alarm.alarm)"
            }
            return "\(show(key))"
        default:
            return "\(show(key)) = \(show(value))"
        }
    }
}

/// Printable UTF-8 as is (quoted when it has spaces), anything else as hex.
func show(_ bytes: [UInt8]) -> String { printableOrHex(bytes, quoting: .whenItHasSpaces, hexPrefix: "0x") }
