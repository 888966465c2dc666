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
///
/// What counts as a torn tail follows etcd 3.4's decoder, and is then narrowed:
/// - a length at or above the record limit is always an error (`.recordTooLarge`), never torn;
/// - in the last segment, a frame is torn only when its own bytes run short of the file, or when
///   it fails to decode (or its CRC fails) and one of *its own* 512-byte sector chunks is all
///   zeros;
/// - even then, if a later frame can be decoded whose CRC chains (from the damaged record, or
///   from the frame before it), the records after the damage were written and synced before it:
///   that is corruption (`.damageBeforeValidRecords`), which `repair` refuses to truncate.
/// The same scan runs when the last segment's data seems to end early (a zero length word with
/// records after it). Any other bad record is corruption, reported with its segment and offset.
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
                let word = Frame.word(bytes, at: offset)
                if word == 0 {
                    // Preallocated zeros: the end of this segment's data, unless good records follow.
                    if isLast, let later = FrameScan.chainedFrame(in: bytes, after: offset, crc: crc) {
                        throw WALError.damageBeforeValidRecords(segment: name, offset: Int64(offset), validRecordAt: Int64(later))
                    }
                    break
                }
                let (length, padding) = Frame.decodeLengthWord(word)
                if length >= Frame.maxRecordBytes - UInt64(padding) {
                    throw WALError.recordTooLarge(segment: name, offset: Int64(offset), length: length)
                }
                let end = offset + 8 + Int(length) + padding
                guard end <= bytes.count else {
                    if isLast { try tornOrDamaged(bytes, name, offset) }
                    throw WALError.corruptRecord(segment: name, offset: Int64(offset), reason: "frame of \(length) bytes runs past the end of the segment")
                }
                let record: Walpb_Record
                do {
                    record = try Walpb_Record(serializedBytes: bytes[(offset + 8)..<(offset + 8 + Int(length))])
                } catch {
                    if isLast && FrameScan.hasZeroSector(bytes, from: offset + 8, to: end) { try tornOrDamaged(bytes, name, offset) }
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
                        if isLast && FrameScan.hasZeroSector(bytes, from: offset + 8, to: end) { try tornOrDamaged(bytes, name, offset) }
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

    /// A frame in the last segment that looks torn: torn unless a chained record follows it.
    private func tornOrDamaged(_ bytes: [UInt8], _ name: String, _ offset: Int) throws(WALError) -> Never {
        if let later = FrameScan.chainedFrame(in: bytes, after: offset, crc: crc) {
            throw WALError.damageBeforeValidRecords(segment: name, offset: Int64(offset), validRecordAt: Int64(later))
        }
        throw WALError.tornTail(segment: name, offset: Int64(offset))
    }
}

extension Frame {
    /// The little-endian u64 at `offset` (which must leave 8 bytes).
    @inline(__always)
    static func word(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) })
    }
}

/// Looking past damage in a segment: torn-write sectors, and records that prove the damage is
/// not a torn tail.
enum FrameScan {
    /// etcd's torn-entry test: whether any chunk of `[start, end)` cut at 512-byte file-offset
    /// boundaries is all zeros. `end` may lie past the data (a short frame): that counts as torn.
    static func hasZeroSector(_ bytes: [UInt8], from start: Int, to end: Int) -> Bool {
        if end > bytes.count { return true }
        var a = start
        while a < end {
            let b = min((a / 512 + 1) * 512, end)
            if bytes[a..<b].allSatisfy({ $0 == 0 }) { return true }
            a = b
        }
        return false
    }

    /// A frame decoded at `offset`, if one is there: in bounds, a sane length, a `walpb.Record`
    /// of a known type.
    static func frame(in bytes: [UInt8], at offset: Int) -> (record: Walpb_Record, end: Int)? {
        guard offset >= 0, offset + 9 <= bytes.count else { return nil }
        let word = Frame.word(bytes, at: offset)
        guard word != 0 else { return nil }
        // Every record starts with its type field (tag 0x08); a cheap filter before decoding.
        guard bytes[offset + 8] == 0x08 else { return nil }
        let (length, padding) = Frame.decodeLengthWord(word)
        guard length > 0, length < Frame.maxRecordBytes - UInt64(padding) else { return nil }
        let end = offset + 8 + Int(length) + padding
        guard end <= bytes.count,
              let record = try? Walpb_Record(serializedBytes: bytes[(offset + 8)..<(offset + 8 + Int(length))]),
              RecordType(rawValue: record.type) != nil else { return nil }
        return (record, end)
    }

    /// The offset of a frame after `damage` whose CRC chains, or nil when there is none:
    /// - from the damaged record itself, re-read with the length its successor implies (a
    ///   damaged length word), starting from `crc`, the chain value before the damage; or
    /// - from the frame right before it (two consecutive records that agree).
    /// Such a frame was written after the damaged bytes and synced with them, so truncating at
    /// the damage would drop records a caller was told are durable.
    static func chainedFrame(in bytes: [UInt8], after damage: Int, crc: UInt32) -> Int? {
        var q = damage + 8
        let limit = lastNonZero(bytes, from: q)
        while q <= limit {
            defer { q += 8 }
            guard let (f, fEnd) = frame(in: bytes, at: q), f.type != RecordType.crc.rawValue else { continue }
            let fData = [UInt8](f.data)
            // Two consecutive frames that chain.
            if let (g, _) = frame(in: bytes, at: fEnd), g.type != RecordType.crc.rawValue,
               g.crc == CRC32C.update(f.crc, [UInt8](g.data)) {
                return q
            }
            // The damaged record re-read up to this frame (minus its padding), chaining from `crc`.
            let span = q - damage - 8
            if span > 0, UInt64(span) < Frame.maxRecordBytes {
                for padding in 0...min(7, span - 1) {
                    guard let r = try? Walpb_Record(serializedBytes: bytes[(damage + 8)..<(q - padding)]),
                          RecordType(rawValue: r.type) != nil, r.type != RecordType.crc.rawValue else { continue }
                    if r.crc == CRC32C.update(crc, [UInt8](r.data)), f.crc == CRC32C.update(r.crc, fData) { return q }
                }
            }
        }
        return nil
    }

    /// The offset of the last non-zero byte at or after `start`, or `start - 1` when all are zero.
    static func lastNonZero(_ bytes: [UInt8], from start: Int) -> Int {
        bytes.withUnsafeBytes { raw -> Int in
            var i = raw.count
            // Whole words first (a preallocated segment ends in megabytes of zeros).
            while i - 8 >= start && raw.loadUnaligned(fromByteOffset: i - 8, as: UInt64.self) == 0 { i -= 8 }
            i -= 1
            while i >= start && raw[i] == 0 { i -= 1 }
            return max(i, start - 1)
        }
    }
}
