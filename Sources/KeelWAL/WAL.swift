import struct Foundation.Data
import KeelIO
import KeelProto

/// etcd's write-ahead log, in etcd 3.4's format, so etcd's tools read what Keel writes and the
/// other way round (shared/reference/etcd-formats.md §1).
///
/// - Segments `%016x-%016x.wal` of 64,000,000 bytes, preallocated; a new one is cut when the
///   tail passes that size: crc, metadata and state records first, synced, created as `N.tmp`
///   and renamed, then the directory is fsynced.
/// - Records are 8-byte aligned frames with a CRC-32C chained across records and segments.
/// - `save` syncs only when raft requires it (entries, or a term or vote change); `sync`
///   always does. Nothing appended is durable before a sync returns.
/// - A failed fdatasync is fatal for the WAL: every later append throws `.writesDisabled`.
///
/// Not thread-safe: one writer drives it (see `GroupCommitLog` for many writers).
public final class WAL {
    /// etcd's segment size.
    public static let segmentSizeBytes: Int64 = 64_000_000

    public let fileSystem: any FileSystem
    public let directory: String
    public private(set) var metadata: [UInt8]
    /// Segments kept locked, oldest first (etcd keeps every segment from the snapshot on locked).
    private var locked: [(name: String, handle: any FileHandle)] = []
    private var tail: (any FileHandle)?
    private var tailName = ""
    private var tailOffset: Int64 = 0
    private var buffer: [UInt8] = []
    private var crc: UInt32 = 0
    private var hardState = HardState()
    /// Index of the last entry saved.
    public private(set) var lastIndex: UInt64 = 0
    private var failure: String?
    private var readDone = false
    /// Where reading starts (the snapshot given to `open`).
    public let start: WALSnapshot
    /// Segment size before a cut (tests shrink it).
    public var segmentSize: Int64 = WAL.segmentSizeBytes

    private init(fs: any FileSystem, directory: String, metadata: [UInt8], start: WALSnapshot) {
        fileSystem = fs
        self.directory = directory
        self.metadata = metadata
        self.start = start
    }

    // MARK: Create

    /// Creates a new WAL in `directory` (which must not hold one): segment 0 with a crc record,
    /// the metadata and an empty snapshot record, built in `directory.tmp` and renamed in place.
    public static func create(fileSystem fs: any FileSystem, directory: String, metadata: [UInt8],
                              segmentSize: Int64 = WAL.segmentSizeBytes) throws(WALError) -> WAL {
        if fs.exists(directory), let names = try? fs.listDirectory(directory), names.contains(where: { $0.hasSuffix(".wal") }) {
            throw WALError.alreadyExists(directory: directory)
        }
        let temporary = directory + ".tmp"
        try io { () throws(IOError) in
            if fs.exists(temporary) { try fs.removeTree(temporary) }
            try fs.makeDirectoryDurably(temporary)
        }
        let name = SegmentName.make(sequence: 0, index: 0)
        let handle = try io { () throws(IOError) in
            let h = try fs.open(joinPath(temporary, name), options: OpenOptions(writable: true, create: true, exclusive: true, mode: 0o600))
            try h.lockRecord(.exclusive, timeoutSeconds: 0)
            try h.preallocate(offset: 0, length: segmentSize, keepSize: false)
            return h
        }
        let wal = WAL(fs: fs, directory: directory, metadata: metadata, start: WALSnapshot())
        wal.segmentSize = segmentSize
        wal.tail = handle
        wal.tailName = name
        wal.locked = [(name, handle)]
        wal.readDone = true
        try wal.appendRecord(.crc, crcOverride: 0, data: nil)
        try wal.appendRecord(.metadata, data: metadata)
        try wal.saveSnapshot(WALSnapshot())
        // The segment's directory entry first, then the directory's rename into place.
        try io { () throws(IOError) in
            try fs.syncDirectory(temporary)
            if fs.exists(directory) { try fs.removeDirectory(directory) }
            try fs.renameDurably(temporary, to: directory)
        }
        return wal
    }

    // MARK: Open and read

    /// Opens the WAL in `directory` at `snapshot`; call `readAll` before appending.
    public static func open(fileSystem fs: any FileSystem, directory: String, snapshot: WALSnapshot = WALSnapshot(),
                            forWriting: Bool = true) throws(WALError) -> WAL {
        let names = try segmentNames(fs, directory)
        guard let first = names.lastIndex(where: { SegmentName.parse($0)!.index <= snapshot.index }) else {
            throw WALError.noSegments(directory: directory)
        }
        let wal = WAL(fs: fs, directory: directory, metadata: [], start: snapshot)
        wal.writable = forWriting
        for name in names[first...] {
            let handle = try io { () throws(IOError) in
                try fs.open(joinPath(directory, name), options: forWriting ? .readWrite : .readOnly)
            }
            if forWriting {
                try io { () throws(IOError) in try handle.lockRecord(.exclusive, timeoutSeconds: 0) }
            }
            wal.locked.append((name, handle))
        }
        return wal
    }

    private var writable = true

    /// The segment files in `directory`, in order, checked for contiguous sequence numbers.
    public static func segmentNames(_ fs: any FileSystem, _ directory: String) throws(WALError) -> [String] {
        let all = try io { () throws(IOError) in try fs.listDirectory(directory) }
        let names = all.filter { SegmentName.parse($0) != nil }.sorted()
        guard !names.isEmpty else { throw WALError.noSegments(directory: directory) }
        for (a, b) in zip(names, names.dropFirst()) where SegmentName.parse(b)!.sequence != SegmentName.parse(a)!.sequence + 1 {
            throw WALError.segmentGap(after: a, next: b)
        }
        return names
    }

    /// What `readAll` returns.
    public struct Contents: Sendable {
        public var metadata: [UInt8]
        public var hardState: HardState
        /// Entries after the snapshot's index.
        public var entries: [Entry]
    }

    /// Reads every record from the snapshot on: the metadata, the last hard state and the
    /// entries after the snapshot (a later entry at an index replaces the earlier ones from there).
    /// Then, when open for writing, positions appends after the last record.
    /// - Throws: `.tornTail` (call `repair`), `.crcMismatch`, `.corruptRecord`,
    ///   `.snapshotNotFound`, `.metadataConflict`.
    public func readAll() throws(WALError) -> Contents {
        var reader = SegmentReader(fs: fileSystem, directory: directory, names: locked.map(\.name))
        var entries: [Entry] = []
        var state = HardState()
        var meta: [UInt8]?
        var matched = false
        let start = self.start
        try reader.forEach { record throws(WALError) in
            switch RecordType(rawValue: record.type) {
            case .entry?:
                guard let e = try? Raftpb_Entry(serializedBytes: record.data) else {
                    throw WALError.corruptRecord(segment: record.segment, offset: record.offset, reason: "not a raftpb.Entry")
                }
                if e.index > start.index {
                    let keep = e.index - start.index - 1
                    guard keep <= UInt64(entries.count) else {
                        throw WALError.corruptRecord(segment: record.segment, offset: record.offset,
                                                     reason: "entry \(e.index) leaves a gap after \(start.index + UInt64(entries.count))")
                    }
                    entries.removeSubrange(Int(keep)...)
                    entries.append(Entry(e))
                }
            case .state?:
                guard let h = try? Raftpb_HardState(serializedBytes: record.data) else {
                    throw WALError.corruptRecord(segment: record.segment, offset: record.offset, reason: "not a raftpb.HardState")
                }
                state = HardState(h)
            case .metadata?:
                if let meta, meta != record.data { throw WALError.metadataConflict(segment: record.segment) }
                meta = record.data
            case .crc?:
                break
            case .snapshot?:
                guard let s = try? Walpb_Snapshot(serializedBytes: record.data) else {
                    throw WALError.corruptRecord(segment: record.segment, offset: record.offset, reason: "not a walpb.Snapshot")
                }
                if s.index == start.index {
                    if s.term != start.term {
                        throw WALError.corruptRecord(segment: record.segment, offset: record.offset,
                                                     reason: "snapshot record term \(s.term) differs from \(start.term)")
                    }
                    matched = true
                }
            case nil:
                throw WALError.corruptRecord(segment: record.segment, offset: record.offset, reason: "unknown record type \(record.type)")
            }
        }
        guard matched else { throw WALError.snapshotNotFound(index: start.index, term: start.term) }
        metadata = meta ?? []
        hardState = state
        lastIndex = entries.last?.index ?? start.index
        crc = reader.crc
        readDone = true
        if writable, let last = locked.last {
            tail = last.handle
            tailName = last.name
            tailOffset = reader.lastSegment == last.name ? reader.lastOffset : 0
            // Zero what follows the last good record, keeping the preallocated size.
            try io { () throws(IOError) in
                try last.handle.truncate(to: tailOffset)
                try last.handle.preallocate(offset: 0, length: max(segmentSize, tailOffset), keepSize: false)
            }
        }
        return Contents(metadata: metadata, hardState: state, entries: entries)
    }

    // MARK: Append

    private func checkWritable() throws(WALError) {
        if let failure { throw WALError.writesDisabled(cause: failure) }
        guard readDone, tail != nil else { throw WALError.notWritable }
    }

    /// Frames a record into the buffer, chaining the CRC (crc records carry the running value).
    private func appendRecord(_ type: RecordType, crcOverride: UInt32? = nil, data: [UInt8]?) throws(WALError) {
        try checkWritable()
        let recordCRC: UInt32
        if type == .crc {
            recordCRC = crcOverride ?? crc
        } else {
            crc = CRC32C.update(crc, data ?? [])
            recordCRC = crc
        }
        Frame.append(Frame.encodeRecord(type: type, crc: recordCRC, data: data), to: &buffer)
    }

    /// Appends entries and the hard state; syncs when raft needs it (entries present, or the
    /// term or vote changed), then cuts a new segment if the tail is full.
    public func save(hardState: HardState, entries: [Entry]) throws(WALError) {
        try checkWritable()
        if hardState.isEmpty && entries.isEmpty { return }
        let mustSync = !entries.isEmpty || hardState.term != self.hardState.term || hardState.vote != self.hardState.vote
        for e in entries {
            try appendRecord(.entry, data: e.encoded())
            lastIndex = e.index
        }
        if !hardState.isEmpty {
            try appendRecord(.state, data: hardState.encoded())
            self.hardState = hardState
        }
        if tailOffset + Int64(buffer.count) < segmentSize {
            if mustSync { try sync() }
            return
        }
        try cut()
    }

    /// Records a snapshot and syncs.
    public func saveSnapshot(_ snapshot: WALSnapshot) throws(WALError) {
        try appendRecord(.snapshot, data: snapshot.encoded())
        if lastIndex < snapshot.index { lastIndex = snapshot.index }
        try sync()
    }

    /// Writes the buffered records and fdatasyncs the tail. A failure disables appends for good.
    public func sync() throws(WALError) {
        try checkWritable()
        guard let tail else { throw WALError.notWritable }
        do throws(IOError) {
            if !buffer.isEmpty {
                try tail.write(buffer, at: tailOffset)
                tailOffset += Int64(buffer.count)
                buffer.removeAll(keepingCapacity: true)
            }
            try tail.sync()
        } catch {
            failure = error.description
            throw WALError.io(error)
        }
    }

    /// Closes the current segment at its end and starts the next one: `N.tmp` gets the crc,
    /// metadata and state records and is synced, renamed to its segment name, and the directory
    /// is fsynced. Appends move to the new segment only after all of that succeeded; any error on
    /// the way disables appends for good (the new segment may or may not be visible after a
    /// crash, so nothing may be acknowledged in it until a restart reads the log again).
    private func cut() throws(WALError) {
        try sync()
        guard let tail else { throw WALError.notWritable }
        let fs = fileSystem
        let size = segmentSize
        let sequence = SegmentName.parse(tailName)!.sequence + 1
        let name = SegmentName.make(sequence: sequence, index: lastIndex + 1)
        let temporary = joinPath(directory, "\(sequence % 2).tmp")
        // The new segment's first records, chained from the running CRC.
        var header: [UInt8] = []
        var newCRC = crc
        Frame.append(Frame.encodeRecord(type: .crc, crc: newCRC, data: nil), to: &header)
        for (type, data) in [(RecordType.metadata, metadata), (.state, hardState.encoded())] {
            newCRC = CRC32C.update(newCRC, data)
            Frame.append(Frame.encodeRecord(type: type, crc: newCRC, data: data), to: &header)
        }
        let tailOffset = self.tailOffset
        let directory = self.directory
        let handle: any FileHandle
        do throws(IOError) {
            try tail.truncate(to: tailOffset)
            try tail.sync()
            if fs.exists(temporary) { try fs.remove(temporary) }
            let h = try fs.open(temporary, options: OpenOptions(writable: true, create: true, mode: 0o600))
            do throws(IOError) {
                try h.lockRecord(.exclusive, timeoutSeconds: 0)
                try h.preallocate(offset: 0, length: size, keepSize: false)
                try h.write(header, at: 0)
                try h.sync()
                try fs.rename(temporary, to: joinPath(directory, name))
                try fs.syncDirectory(directory)
            } catch {
                h.close()
                throw error
            }
            handle = h
        } catch {
            failure = "segment rollover to \(name): \(error.description)"
            throw WALError.io(error)
        }
        self.tail = handle
        tailName = name
        self.tailOffset = Int64(header.count)
        crc = newCRC
        locked.append((name, handle))
    }

    /// Unlocks (so they can be purged) segments before the one holding `index`, by etcd's rule:
    /// keep from the segment before the first whose starting index is >= `index` (or the last).
    public func releaseLock(to index: UInt64) {
        var keepFrom = locked.count - 1
        if let i = locked.firstIndex(where: { SegmentName.parse($0.name)!.index >= index }) { keepFrom = i - 1 }
        guard keepFrom > 0 else { return }
        for entry in locked[..<keepFrom] {
            entry.handle.unlock()
            entry.handle.close()
        }
        locked.removeFirst(keepFrom)
    }

    /// The names of the segments still locked.
    public var lockedSegments: [String] { locked.map(\.name) }

    /// Syncs (when writable) and releases every lock.
    public func close() throws(WALError) {
        defer {
            for entry in locked {
                entry.handle.unlock()
                entry.handle.close()
            }
            locked = []
            tail = nil
        }
        if tail != nil, failure == nil, readDone { try sync() }
    }

    // MARK: Repair

    /// Repairs a torn tail: copies the last segment to `NAME.broken`, truncates it after its
    /// last good record and syncs. Returns false when the log is damaged in another way.
    @discardableResult
    public static func repair(fileSystem fs: any FileSystem, directory: String) throws(WALError) -> Bool {
        let names = try segmentNames(fs, directory)
        var reader = SegmentReader(fs: fs, directory: directory, names: names)
        do throws(WALError) {
            try reader.forEach { _ throws(WALError) in }
            return true
        } catch {
            guard case let .tornTail(segment, offset) = error, segment == names.last else { return false }
            let path = joinPath(directory, segment)
            try io { () throws(IOError) in
                let f = try fs.open(path, options: .readWrite)
                defer { f.close() }
                let bytes = try f.read(count: Int(try f.size()), at: 0)
                let broken = try fs.open(path + ".broken", options: OpenOptions(writable: true, create: true, mode: 0o600))
                defer { broken.close() }
                try broken.truncate(to: 0)
                try broken.write(bytes, at: 0)
                try broken.sync()
                try f.truncate(to: offset)
                try f.sync()
            }
            return true
        }
    }
}

extension WAL {
    /// Every record of every segment in order, with CRC checks (for inspection tools).
    /// - Throws: the first damage met (torn tail, CRC mismatch, …) after reporting what came before.
    public static func dumpRecords(fileSystem fs: any FileSystem, directory: String,
                                   _ body: (RecordInfo) throws(WALError) -> Void) throws(WALError) {
        var reader = SegmentReader(fs: fs, directory: directory, names: try segmentNames(fs, directory))
        try reader.forEach(body)
    }
}
