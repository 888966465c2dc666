import CKeelShims

/// bbolt file format version 2: byte layout of pages (see shared/reference/bbolt-format.md §1).
///
/// All integers are little-endian (native on every platform Keel runs on) and unaligned loads are
/// used throughout, because inline bucket pages sit at arbitrary offsets inside leaf values.
/// This file and `PageView` hold all of KeelBolt's pointer arithmetic.
public enum PageLayout {
    public static let headerSize = 16
    public static let branchElementSize = 16
    public static let leafElementSize = 16
    public static let bucketHeaderSize = 16
    public static let metaBodySize = 64
    public static let magic: UInt32 = 0xED0C_DAED
    public static let version: UInt32 = 2
    /// meta.freelist when no freelist page is stored (NoFreelistSync).
    public static let noFreelist: UInt64 = .max
    /// The largest key bbolt accepts.
    public static let maxKeySize = 32768
    /// The largest value bbolt accepts.
    public static let maxValueSize = (1 << 31) - 2
    /// A page holds fewer than this many elements.
    public static let maxElementCount = 0xFFFF
    /// The smallest page size Keel will open or create.
    public static let minPageSize = 512
    /// The largest page size Keel will open or create.
    public static let maxPageSize = 1 << 20
}

/// The type bits of a page header.
public struct PageFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let branch = PageFlags(rawValue: 0x01)
    public static let leaf = PageFlags(rawValue: 0x02)
    public static let meta = PageFlags(rawValue: 0x04)
    public static let freelist = PageFlags(rawValue: 0x10)

    /// "branch", "leaf", "meta", "freelist", or "unknown<0x..>" as the bbolt tool prints it.
    public var typeName: String {
        switch self {
        case .branch: return "branch"
        case .leaf: return "leaf"
        case .meta: return "meta"
        case .freelist: return "freelist"
        default: return "unknown<\(String(rawValue, radix: 16).leftPadded(to: 2))>"
        }
    }
}

/// Leaf element flag: the value is a bucket header.
let bucketLeafFlag: UInt32 = 0x01

/// A read-only view of one page (and its overflow pages) in memory, with bounds-checked access to
/// its elements. Every accessor that follows an offset stored in the page checks it against the
/// bytes the page spans and throws `BoltError.corruptPage` instead of reading past them.
public struct PageView {
    /// The first byte of the page header.
    let base: UnsafeRawPointer
    /// How many bytes starting at `base` may be read.
    let capacity: Int

    init(base: UnsafeRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    @inline(__always) func u16(_ offset: Int) -> UInt16 { base.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    @inline(__always) func u32(_ offset: Int) -> UInt32 { base.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) func u64(_ offset: Int) -> UInt64 { base.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }

    /// The id the page says it has.
    public var id: UInt64 { u64(0) }
    public var flags: PageFlags { PageFlags(rawValue: u16(8)) }
    public var count: Int { Int(u16(10)) }
    public var overflow: UInt32 { u32(12) }
    public var isLeaf: Bool { (u16(8) & PageFlags.leaf.rawValue) != 0 }
    public var isBranch: Bool { (u16(8) & PageFlags.branch.rawValue) != 0 }

    /// The page id used in error messages: the id it was read at.
    func corrupt(_ at: UInt64, _ reason: String) -> BoltError { .corruptPage(id: at, reason: reason) }

    /// Checks that the element array fits inside the page. `pageID` is where the page was read.
    /// A branch page must hold at least one element (every read of a branch goes through here,
    /// so no caller indexes into an empty one).
    func validateElements(pageID: UInt64) throws(BoltError) {
        let n = count
        if n == 0 {
            if isBranch { throw corrupt(pageID, "branch page with no elements") }
            return
        }
        let elementSize = isLeaf ? PageLayout.leafElementSize : PageLayout.branchElementSize
        if PageLayout.headerSize + n * elementSize > capacity {
            throw corrupt(pageID, "\(n) elements do not fit in \(capacity) bytes")
        }
    }

    // MARK: Leaf elements

    /// The flags of leaf element `i` (bucketLeafFlag for a nested bucket).
    @inline(__always)
    func leafFlags(_ i: Int) -> UInt32 { u32(PageLayout.headerSize + i * PageLayout.leafElementSize) }

    /// The key of leaf element `i`, bounds-checked.
    @inline(__always)
    func leafKey(_ i: Int, pageID: UInt64) throws(BoltError) -> ByteView {
        let e = PageLayout.headerSize + i * PageLayout.leafElementSize
        let pos = Int(u32(e + 4))
        let ksize = Int(u32(e + 8))
        let start = e + pos
        guard start <= capacity, ksize <= capacity - start else {
            throw corrupt(pageID, "leaf element \(i) key (pos \(pos), size \(ksize)) runs past the page end")
        }
        return ByteView(base: base + start, count: ksize)
    }

    /// The value of leaf element `i`, bounds-checked.
    @inline(__always)
    func leafValue(_ i: Int, pageID: UInt64) throws(BoltError) -> ByteView {
        let e = PageLayout.headerSize + i * PageLayout.leafElementSize
        let pos = Int(u32(e + 4))
        let ksize = Int(u32(e + 8))
        let vsize = Int(u32(e + 12))
        let start = e + pos
        guard start <= capacity, ksize <= capacity - start, vsize <= capacity - start - ksize else {
            throw corrupt(pageID, "leaf element \(i) value (pos \(pos), key \(ksize), value \(vsize)) runs past the page end")
        }
        return ByteView(base: base + start + ksize, count: vsize)
    }

    // MARK: Branch elements

    /// The key of branch element `i`, bounds-checked.
    @inline(__always)
    func branchKey(_ i: Int, pageID: UInt64) throws(BoltError) -> ByteView {
        let e = PageLayout.headerSize + i * PageLayout.branchElementSize
        let pos = Int(u32(e))
        let ksize = Int(u32(e + 4))
        let start = e + pos
        guard start <= capacity, ksize <= capacity - start else {
            throw corrupt(pageID, "branch element \(i) key (pos \(pos), size \(ksize)) runs past the page end")
        }
        return ByteView(base: base + start, count: ksize)
    }

    /// The child page id of branch element `i`.
    @inline(__always)
    func branchChild(_ i: Int) -> UInt64 { u64(PageLayout.headerSize + i * PageLayout.branchElementSize + 8) }

    // MARK: Freelist

    /// The page ids a freelist page lists (free and pending), bounds-checked.
    func freelistIDs(pageID: UInt64) throws(BoltError) -> [UInt64] {
        var n = count
        var start = PageLayout.headerSize
        if n == PageLayout.maxElementCount {
            guard capacity >= PageLayout.headerSize + 8 else { throw corrupt(pageID, "freelist count word missing") }
            let big = u64(PageLayout.headerSize)
            guard big <= UInt64(capacity / 8) else {
                throw corrupt(pageID, "freelist claims \(big) ids but spans only \(capacity) bytes")
            }
            n = Int(big)
            start += 8
        }
        guard start + n * 8 <= capacity else {
            throw corrupt(pageID, "freelist of \(n) ids does not fit in \(capacity) bytes")
        }
        var ids = [UInt64](repeating: 0, count: n)
        ids.withUnsafeMutableBytes { raw in
            if n > 0 { raw.baseAddress!.copyMemory(from: base + start, byteCount: n * 8) }
        }
        return ids
    }
}

/// Writes into a page buffer the caller owns.
struct PageWriter {
    let base: UnsafeMutableRawPointer

    @inline(__always) func setU16(_ offset: Int, _ v: UInt16) { base.storeBytes(of: v, toByteOffset: offset, as: UInt16.self) }
    @inline(__always) func setU32(_ offset: Int, _ v: UInt32) { base.storeBytes(of: v, toByteOffset: offset, as: UInt32.self) }
    @inline(__always) func setU64(_ offset: Int, _ v: UInt64) { base.storeBytes(of: v, toByteOffset: offset, as: UInt64.self) }

    func setHeader(id: UInt64, flags: PageFlags, count: Int, overflow: UInt32) {
        setU64(0, id)
        setU16(8, flags.rawValue)
        setU16(10, UInt16(truncatingIfNeeded: count))
        setU32(12, overflow)
    }

    func copy(_ bytes: ByteView, to offset: Int) {
        if bytes.count > 0 { (base + offset).copyMemory(from: bytes.base!, byteCount: bytes.count) }
    }

    /// Writes a whole leaf or branch page into a zeroed buffer of at least
    /// `PageLayout.pageBytes` bytes: the header, the element array, then keys and values in
    /// element order (bbolt's layout). `element(i)` gives each element's flags (leaf), child
    /// page id (branch), key and value (leaf).
    func writeElements(id: UInt64, isLeaf: Bool, count: Int, overflow: UInt32,
                       _ element: (Int) -> (flags: UInt32, pgid: UInt64, key: ByteView, value: ByteView)) {
        precondition(count < PageLayout.maxElementCount, "writeElements: \(count) elements overflow the page count")
        setHeader(id: id, flags: isLeaf ? .leaf : .branch, count: count, overflow: overflow)
        var offset = PageLayout.headerSize + count * PageLayout.leafElementSize
        for i in 0..<count {
            let item = element(i)
            let e = PageLayout.headerSize + i * PageLayout.leafElementSize
            if isLeaf {
                setU32(e, item.flags)
                setU32(e + 4, UInt32(offset - e))
                setU32(e + 8, UInt32(item.key.count))
                setU32(e + 12, UInt32(item.value.count))
            } else {
                setU32(e, UInt32(offset - e))
                setU32(e + 4, UInt32(item.key.count))
                setU64(e + 8, item.pgid)
            }
            copy(item.key, to: offset)
            offset += item.key.count
            copy(item.value, to: offset)
            offset += item.value.count
        }
    }
}

extension PageWriter {
    /// `writeElements` for a branch from decoded elements: the same bytes, in one tight loop
    /// (branches are rewritten on every commit that touches a leaf below them).
    func writeBranch(id: UInt64, elements: UnsafeBufferPointer<INode>, overflow: UInt32) {
        let count = elements.count
        precondition(count < PageLayout.maxElementCount, "writeBranch: \(count) elements overflow the page count")
        setHeader(id: id, flags: .branch, count: count, overflow: overflow)
        var offset = PageLayout.headerSize + count * PageLayout.branchElementSize
        var e = PageLayout.headerSize
        for item in elements {
            let n = item.key.count
            setU32(e, UInt32(truncatingIfNeeded: offset - e))
            setU32(e + 4, UInt32(truncatingIfNeeded: n))
            setU64(e + 8, item.pgid)
            if let source = item.key.base {
                if n == 16 {
                    // The common etcd and benchmark key size, without a memcpy call.
                    base.storeBytes(of: source.loadUnaligned(as: UInt64.self), toByteOffset: offset, as: UInt64.self)
                    base.storeBytes(of: source.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: offset + 8, as: UInt64.self)
                } else if n > 0 {
                    (base + offset).copyMemory(from: source, byteCount: n)
                }
            }
            offset += n
            e += PageLayout.branchElementSize
        }
    }
}

extension PageLayout {
    /// The bytes one element adds to a page: its 16-byte slot, key and value (branch elements
    /// have no value; leaf and branch slots are the same size in format 2).
    @inline(__always)
    static func elementBytes(key: Int, value: Int) -> Int { leafElementSize + key + value }
}

/// The 16-byte value header of a nested bucket: its root page (0 for an inline bucket, whose
/// page image follows the header in the same value) and its sequence.
struct BucketHeader {
    var root: UInt64
    var sequence: UInt64

    /// Decodes a bucket value; `inline` is the page image after the header when `root` is 0.
    /// `at` names the page holding the value, for errors.
    static func decode(_ value: ByteView, at pageID: UInt64) throws(BoltError) -> (header: BucketHeader, inline: PageView?) {
        guard value.count >= PageLayout.bucketHeaderSize, let base = value.base else {
            throw BoltError.corruptPage(id: pageID, reason: "bucket value of \(value.count) bytes is shorter than a bucket header")
        }
        let header = BucketHeader(root: base.loadUnaligned(as: UInt64.self), sequence: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard header.root == 0 else { return (header, nil) }
        guard value.count >= PageLayout.bucketHeaderSize + PageLayout.headerSize else {
            throw BoltError.corruptPage(id: pageID, reason: "inline bucket value of \(value.count) bytes has no page header")
        }
        return (header, PageView(base: base + PageLayout.bucketHeaderSize, capacity: value.count - PageLayout.bucketHeaderSize))
    }

    /// Decodes the header of a bucket value given as bytes (for tools); nil when too short.
    static func decode(_ bytes: [UInt8]) -> BucketHeader? {
        guard bytes.count >= PageLayout.bucketHeaderSize else { return nil }
        return bytes.withUnsafeBytes { BucketHeader(root: $0.loadUnaligned(as: UInt64.self), sequence: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }

    /// Writes the 16 bytes at `base`.
    func write(into base: UnsafeMutableRawPointer) {
        base.storeBytes(of: root, toByteOffset: 0, as: UInt64.self)
        base.storeBytes(of: sequence, toByteOffset: 8, as: UInt64.self)
    }
}

extension PageView {
    /// The bytes a leaf or branch page's header, elements, keys and values take (bbolt's
    /// "in use" figure). Elements whose key or value cannot be read count as their slot only.
    func usedBytes(pageID: UInt64) -> Int {
        var used = PageLayout.headerSize + count * PageLayout.leafElementSize
        for i in 0..<count {
            if isLeaf {
                used += ((try? leafKey(i, pageID: pageID).count) ?? 0) + ((try? leafValue(i, pageID: pageID).count) ?? 0)
            } else {
                used += (try? branchKey(i, pageID: pageID).count) ?? 0
            }
        }
        return used
    }

    /// The key of element `i` of a leaf or branch page.
    func key(_ i: Int, pageID: UInt64) throws(BoltError) -> ByteView {
        isLeaf ? try leafKey(i, pageID: pageID) : try branchKey(i, pageID: pageID)
    }

    /// The index of the first element whose key is >= `key`, and whether it is equal. Keys in a
    /// page are unique, so the search stops at an equal one. Every key read is bounds-checked.
    @inline(__always)
    func search(_ key: ByteView, pageID: UInt64) throws(BoltError) -> (index: Int, exact: Bool) {
        isLeaf ? try search(key, pageID: pageID, keyAt: leafKey) : try search(key, pageID: pageID, keyAt: branchKey)
    }

    @inline(__always)
    private func search(_ key: ByteView, pageID: UInt64, keyAt: (Int, UInt64) throws(BoltError) -> ByteView) throws(BoltError) -> (index: Int, exact: Bool) {
        let prefix = key.orderPrefix
        var lo = 0
        var hi = count
        // Each probe reads an element, then the key it points to: two dependent cache misses
        // on a page not in cache. Loading the whole element array at once (its lines in
        // parallel) leaves one miss per probe, as in formats that keep keys beside their slots.
        let elementsEnd = Swift.min(PageLayout.headerSize + hi * PageLayout.leafElementSize, capacity)
        var line = PageLayout.headerSize
        while line < elementsEnd {
            keel_prefetch(base + line)
            line += 64
        }
        while lo < hi {
            let mid = (lo + hi) >> 1
            let c = try keyAt(mid, pageID).compare(key, otherPrefix: prefix)
            if c == 0 { return (mid, true) }
            if c < 0 { lo = mid + 1 } else { hi = mid }
        }
        return (lo, false)
    }

    /// Checks that `child`, reached through element `index` of this branch page, starts inside
    /// the key range that element covers: at or after its separator and before the next one.
    /// Ranges of different elements are disjoint, so a walk that checks this never enters the
    /// same page twice, however a damaged file makes branches share children.
    func checkChild(_ child: PageView, childID: UInt64, index: Int, pageID: UInt64) throws(BoltError) {
        guard child.count > 0 else { return }
        let first = try child.key(0, pageID: childID)
        let lower = try branchKey(index, pageID: pageID)
        if first.compare(lower) < 0 {
            throw corrupt(childID, "its first key sorts before separator \(index) of its parent branch page \(pageID)")
        }
        if index + 1 < count, first.compare(try branchKey(index + 1, pageID: pageID)) >= 0 {
            throw corrupt(childID, "its first key is not below separator \(index + 1) of its parent branch page \(pageID) (pages shared between branches?)")
        }
    }
}
