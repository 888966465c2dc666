import struct Foundation.Data
import KeelIO
import KeelProto

/// One decoded record with where it was found.
public struct RecordInfo: Sendable {
    public var segment: String
    public var offset: Int64
    public var type: Int64
    public var crc: UInt32
    public var data: [UInt8]
}

/// Reads framed records from a list of segment files in order, checking the chained CRC-32C.
/// A bad record in the last segment whose frame holds an all-zero 512-byte sector is a torn
/// tail (`WALError.tornTail`); any other bad record is corruption, reported with its place.
struct SegmentReader {
    let fs: any FileSystem
    let directory: String
    let names: [String]
    private(set) var crc: UInt32 = 0
    /// The file and offset just past the last good record.
    private(set) var lastSegment = ""
    private(set) var lastOffset: Int64 = 0

    init(fs: any FileSystem, directory: String, names: [String]) {
        self.fs = fs
        self.directory = directory
        self.names = names
    }

    /// Calls `body` for every record; stops at the end of the data.
    mutating func forEach(_ body: (RecordInfo) throws(WALError) -> Void) throws(WALError) {
        for (n, name) in names.enumerated() {
            let isLast = n == names.count - 1
            let path = joinPath(directory, name)
            let bytes: [UInt8] = try io { () throws(IOError) in
                let f = try fs.open(path, options: .readOnly)
                defer { f.close() }
                return try f.read(count: Int(try f.size()), at: 0)
            }
            lastSegment = name
            lastOffset = 0
            var offset = 0
            while offset + 8 <= bytes.count {
                let word = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
                if word == 0 { break }  // preallocated zeros: end of this segment's data
                let (length, padding) = Frame.decodeLengthWord(UInt64(littleEndian: word))
                if length >= Frame.maxRecordBytes {
                    if isLast && isTorn(bytes, from: offset, to: bytes.count) { throw WALError.tornTail(segment: name, offset: Int64(offset)) }
                    throw WALError.recordTooLarge(segment: name, offset: Int64(offset), length: length)
                }
                let end = offset + 8 + Int(length) + padding
                guard end <= bytes.count else {
                    if isLast { throw WALError.tornTail(segment: name, offset: Int64(offset)) }
                    throw WALError.corruptRecord(segment: name, offset: Int64(offset), reason: "frame of \(length) bytes runs past the end of the segment")
                }
                let recordBytes = Array(bytes[(offset + 8)..<(offset + 8 + Int(length))])
                let record: Walpb_Record
                do {
                    record = try Walpb_Record(serializedBytes: recordBytes)
                } catch {
                    if isLast && isTorn(bytes, from: offset, to: end) { throw WALError.tornTail(segment: name, offset: Int64(offset)) }
                    throw WALError.corruptRecord(segment: name, offset: Int64(offset), reason: "not a walpb.Record: \(error)")
                }
                let data = [UInt8](record.data)
                if record.type == RecordType.crc.rawValue {
                    if crc != 0 && record.crc != crc {
                        throw WALError.crcMismatch(segment: name, offset: Int64(offset), expected: crc, actual: record.crc)
                    }
                    crc = record.crc
                } else {
                    let next = CRC32C.update(crc, data)
                    if record.crc != next {
                        if isLast && isTorn(bytes, from: offset, to: end) { throw WALError.tornTail(segment: name, offset: Int64(offset)) }
                        throw WALError.crcMismatch(segment: name, offset: Int64(offset), expected: next, actual: record.crc)
                    }
                    crc = next
                }
                try body(RecordInfo(segment: name, offset: Int64(offset), type: record.type, crc: record.crc, data: data))
                offset = end
                lastOffset = Int64(offset)
            }
        }
    }

    /// Whether any 512-byte sector (by file offset) overlapping the frame is all zeros.
    private func isTorn(_ bytes: [UInt8], from start: Int, to end: Int) -> Bool {
        var sectorStart = start / 512 * 512
        while sectorStart < end {
            let a = max(sectorStart, start)
            let b = min(sectorStart + 512, end, bytes.count)
            if a < b && bytes[a..<b].allSatisfy({ $0 == 0 }) { return true }
            if b >= bytes.count { return true }  // short: the frame runs past the data
            sectorStart += 512
        }
        return false
    }
}
