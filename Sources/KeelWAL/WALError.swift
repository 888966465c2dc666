import KeelIO

/// Errors of the write-ahead log and the snapshot files. Each names the file and offset.
public enum WALError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A record's CRC does not match the running checksum.
    case crcMismatch(segment: String, offset: Int64, expected: UInt32, actual: UInt32)
    /// A record that cannot be decoded, in the middle of the log (not a torn tail).
    case corruptRecord(segment: String, offset: Int64, reason: String)
    /// The last record of the last segment was torn by a crash (a zeroed 512-byte sector);
    /// `repair` truncates it.
    case tornTail(segment: String, offset: Int64)
    /// A record at `offset` is damaged, yet a record whose CRC chains follows it at
    /// `validRecordAt`: corruption of synced data, not a torn write. `repair` refuses it.
    case damageBeforeValidRecords(segment: String, offset: Int64, validRecordAt: Int64)
    /// A record longer than the 10 MiB limit.
    case recordTooLarge(segment: String, offset: Int64, length: UInt64)
    /// Segment sequence numbers are not contiguous.
    case segmentGap(after: String, next: String)
    /// A segment's metadata differs from the first segment's.
    case metadataConflict(segment: String)
    /// No snapshot record matches the snapshot asked for.
    case snapshotNotFound(index: UInt64, term: UInt64)
    /// The directory holds no WAL, or no segment at or before the snapshot.
    case noSegments(directory: String)
    /// A WAL already exists where one was to be created.
    case alreadyExists(directory: String)
    /// A segment or .snap file name that does not parse.
    case badFileName(String)
    /// An earlier sync failed: the WAL refuses further appends (never retry a failed fsync).
    case writesDisabled(cause: String)
    /// The WAL was closed, or was opened for reading only.
    case notWritable
    /// A .snap file that is empty, damaged or fails its CRC.
    case badSnapshotFile(path: String, reason: String)
    /// No usable .snap file.
    case noSnapshot(directory: String)
    case io(IOError)

    public var description: String {
        switch self {
        case let .crcMismatch(segment, offset, expected, actual):
            return "wal: crc mismatch in \(segment) at offset \(offset): expected 0x\(String(expected, radix: 16)), found 0x\(String(actual, radix: 16))"
        case let .corruptRecord(segment, offset, reason):
            return "wal: corrupt record in \(segment) at offset \(offset): \(reason)"
        case let .tornTail(segment, offset):
            return "wal: torn write at the end of \(segment) (offset \(offset)); repair truncates the tail"
        case let .damageBeforeValidRecords(segment, offset, later):
            return "wal: damaged record in \(segment) at offset \(offset), but a valid record follows at offset \(later): the log is corrupt, not torn, and repair would drop synced entries; restore this member from a snapshot or a healthy peer"
        case let .recordTooLarge(segment, offset, length):
            return "wal: record of \(length) bytes in \(segment) at offset \(offset) exceeds the 10 MiB limit"
        case let .segmentGap(after, next):
            return "wal: segments are not contiguous: \(next) follows \(after)"
        case let .metadataConflict(segment):
            return "wal: metadata in \(segment) conflicts with the first segment's"
        case let .snapshotNotFound(index, term):
            return "wal: no snapshot record for index \(index) term \(term)"
        case let .noSegments(directory):
            return "wal: no usable segment in \(directory)"
        case let .alreadyExists(directory):
            return "wal: \(directory) already holds a WAL"
        case let .badFileName(name):
            return "wal: bad file name \(name)"
        case let .writesDisabled(cause):
            return "wal: appends refused after a failed sync (\(cause)); restart and recover from the log"
        case .notWritable:
            return "wal: not open for appending"
        case let .badSnapshotFile(path, reason):
            return "snap: \(path): \(reason)"
        case let .noSnapshot(directory):
            return "snap: no usable snapshot in \(directory)"
        case let .io(error):
            return error.description
        }
    }
}

@inline(__always)
func io<T>(_ body: () throws(IOError) -> T) throws(WALError) -> T {
    do throws(IOError) { return try body() } catch { throw WALError.io(error) }
}
