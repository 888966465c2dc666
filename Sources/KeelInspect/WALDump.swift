import Foundation
import KeelIO
import KeelProto
import KeelWAL

/// `keelutl wal dump`: every record of a WAL directory, like etcd-dump-logs, with CRC checks.
public struct WALDump {
    public var startIndex: UInt64 = 0
    /// "normal", "conf" or nil for all entries.
    public var entryType: String?

    public init(startIndex: UInt64 = 0, entryType: String? = nil) {
        self.startIndex = startIndex
        self.entryType = entryType
    }

    public struct Line: Sendable {
        public var segment: String
        public var offset: Int64
        public var type: String
        public var term: UInt64?
        public var index: UInt64?
        public var summary: String

        public var text: String {
            var s = "\(segment) \(String(offset).leftPadded(10)) \(type.padding(10))"
            if let term { s += " term=\(term)" }
            if let index { s += " index=\(index)" }
            if !summary.isEmpty { s += " \(summary)" }
            return s
        }

        public var json: String {
            var json = JSONLine()
            json.add("segment", segment)
            json.add("offset", offset)
            json.add("type", type)
            if let term { json.add("term", term) }
            if let index { json.add("index", index) }
            json.add("summary", summary)
            return json.description
        }
    }

    /// The records, and the error that stopped the walk (a torn tail, corruption), if any.
    public func records(fileSystem: any FileSystem, directory: String) throws -> (lines: [Line], stop: WALError?) {
        var lines: [Line] = []
        do {
            try WAL.dumpRecords(fileSystem: fileSystem, directory: directory) { r throws(WALError) in
                guard let type = RecordType(rawValue: r.type) else {
                    lines.append(Line(segment: r.segment, offset: r.offset, type: "unknown(\(r.type))", summary: ""))
                    return
                }
                switch type {
                case .entry:
                    guard let e = try? Raftpb_Entry(serializedBytes: r.data) else {
                        lines.append(Line(segment: r.segment, offset: r.offset, type: "entry", summary: "<undecodable raftpb.Entry>"))
                        return
                    }
                    if e.index < startIndex { return }
                    let isConf = e.type != .entryNormal
                    if let entryType, (entryType == "conf") != isConf { return }
                    lines.append(Line(segment: r.segment, offset: r.offset, type: "entry", term: e.term, index: e.index,
                                      summary: summarize(e)))
                case .state:
                    let h = try? Raftpb_HardState(serializedBytes: r.data)
                    lines.append(Line(segment: r.segment, offset: r.offset, type: "state", term: h?.term, index: nil,
                                      summary: h.map { "vote=\($0.vote) commit=\($0.commit)" } ?? "<undecodable>"))
                case .snapshot:
                    let s = try? Walpb_Snapshot(serializedBytes: r.data)
                    lines.append(Line(segment: r.segment, offset: r.offset, type: "snapshot", term: s?.term, index: s?.index, summary: ""))
                case .metadata:
                    let m = try? Etcdserverpb_Metadata(serializedBytes: r.data)
                    lines.append(Line(segment: r.segment, offset: r.offset, type: "metadata", summary: m.map {
                        "node=\(String($0.nodeID, radix: 16)) cluster=\(String($0.clusterID, radix: 16))" } ?? "\(r.data.count) bytes"))
                case .crc:
                    lines.append(Line(segment: r.segment, offset: r.offset, type: "crc", summary: "crc=\(String(r.crc, radix: 16))"))
                }
            }
            return (lines, nil)
        } catch let error as WALError {
            return (lines, error)
        }
    }

    private func summarize(_ e: Raftpb_Entry) -> String {
        if e.type == .entryConfChange, let cc = try? Raftpb_ConfChange(serializedBytes: e.data) {
            return "conf \(cc.type) node=\(String(cc.nodeID, radix: 16))"
        }
        if e.data.isEmpty { return "empty" }
        if let r = try? Etcdserverpb_InternalRaftRequest(serializedBytes: e.data) {
            if r.hasPut { return "put key=\(show([UInt8](r.put.key))) value=\(r.put.value.count)B lease=\(r.put.lease)" }
            if r.hasDeleteRange { return "delete key=\(show([UInt8](r.deleteRange.key))) range_end=\(show([UInt8](r.deleteRange.rangeEnd)))" }
            if r.hasTxn { return "txn compare=\(r.txn.compare.count) success=\(r.txn.success.count) failure=\(r.txn.failure.count)" }
            if r.hasCompaction { return "compaction revision=\(r.compaction.revision)" }
            if r.hasLeaseGrant { return "lease-grant id=\(r.leaseGrant.id) ttl=\(r.leaseGrant.ttl)" }
            if r.hasLeaseRevoke { return "lease-revoke id=\(r.leaseRevoke.id)" }
            if r.hasRange { return "range key=\(show([UInt8](r.range.key)))" }
            if r.hasAlarm { return "alarm \(r.alarm.action) \(r.alarm.alarm)" }
            if r.hasV2 { return "v2 \(r.v2.method) \(r.v2.path)" }
        }
        if let v2 = try? Etcdserverpb_Request(serializedBytes: e.data), !v2.method.isEmpty {
            return "v2 \(v2.method) \(v2.path)"
        }
        return "\(e.data.count) bytes"
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
