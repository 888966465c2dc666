import KeelIO
import KeelProto
import SwiftProtobuf

/// The record types of etcd's WAL (`wal/wal.go`).
public enum RecordType: Int64, Sendable, CaseIterable {
    case metadata = 1
    case entry = 2
    case state = 3
    case crc = 4
    case snapshot = 5

    public var name: String {
        switch self {
        case .metadata: return "metadata"
        case .entry: return "entry"
        case .state: return "state"
        case .crc: return "crc"
        case .snapshot: return "snapshot"
        }
    }
}

/// The on-disk framing of one record (see shared/reference/etcd-formats.md §1.3):
/// a little-endian u64 length word whose top byte marks padding, the `walpb.Record` bytes, and
/// zero padding to 8-byte alignment.
public enum Frame {
    /// Records of this many bytes or more are refused (etcd's limit).
    public static let maxRecordBytes: UInt64 = 10 * 1024 * 1024

    /// The length word for a record of `length` bytes, and its padding.
    public static func lengthWord(_ length: Int) -> (word: UInt64, padding: Int) {
        let padding = (8 - length % 8) % 8
        var word = UInt64(length)
        if padding != 0 { word |= UInt64(0x80 | padding) << 56 }
        return (word, padding)
    }

    /// Splits a length word into the record length and padding.
    public static func decodeLengthWord(_ word: UInt64) -> (length: UInt64, padding: Int) {
        let length = word & ~(UInt64(0xFF) << 56)
        var padding = 0
        if word >> 63 == 1 { padding = Int((word >> 56) & 0x7) }
        return (length, padding)
    }

    /// Appends a framed record to `buffer`.
    public static func append(_ record: [UInt8], to buffer: inout [UInt8]) {
        let (word, padding) = lengthWord(record.count)
        withUnsafeBytes(of: word.littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: record)
        if padding > 0 { buffer.append(contentsOf: repeatElement(0, count: padding)) }
    }

    /// The bytes of a `walpb.Record` exactly as etcd's gogo-generated marshaller writes them:
    /// type and crc always, data only when present.
    public static func encodeRecord(type: RecordType, crc: UInt32, data: [UInt8]?) -> [UInt8] {
        var record = Walpb_Record()
        record.type = type.rawValue
        record.crc = crc
        if let data { record.data = Data(data) }
        return [UInt8](try! record.serializedBytes() as [UInt8])
    }
}

import struct Foundation.Data
