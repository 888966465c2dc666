#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A leaf page being edited in place by a write transaction: a one-page buffer in the writer's
/// arena laid out as a valid bbolt leaf page, so that at commit it is written as it stands instead
/// of being rebuilt from decoded elements.
///
/// Layout: the 16-byte header, the element array right after it (bbolt's fixed place), a gap, and
/// the keys and values packed against the end of the page, growing down. Each element's `pos` is
/// relative to the element itself, as the format requires, so the order of the data does not
/// matter to any bbolt reader.
///
/// **View safety.** Keys and values handed out (`key(_:)`, `value(_:)`) point into the data area.
/// Edits never write to bytes a view can point to: new data goes into the gap, a replaced or
/// deleted element's bytes are left as dead space, and compaction copies into a *new* buffer,
/// leaving the old one intact in the arena until the transaction ends. Only the element array and
/// the gap are written in place, and no view ever points there.
///
/// Invariant: `size < pageSize`, so an image never needs splitting; an edit that would break it
/// is refused (`canHold` false) and the caller turns the leaf into a node instead.
struct LeafImage {
    /// The page buffer (arena memory, `pageSize` bytes).
    private(set) var base: UnsafeMutableRawPointer
    let pageSize: Int
    private(set) var count: Int
    /// The lowest byte of the data area; data occupies `dataStart..<pageSize`.
    private(set) var dataStart: Int
    /// Bytes in the data area that no element refers to (replaced or deleted elements).
    private(set) var dead: Int

    private static let header = PageLayout.headerSize
    private static let slot = PageLayout.leafElementSize

    /// The serialised size of the live page: header, elements, live keys and values.
    var size: Int { Self.header + count * Self.slot + (pageSize - dataStart - dead) }

    /// Free bytes between the element array and the data area.
    var gap: Int { dataStart - (Self.header + count * Self.slot) }

    // MARK: Making one

    /// Copies leaf `page` into `buffer` in the editing layout. Returns nil when the page cannot
    /// be edited as an image (it spans more than one page, it is full, an element points outside
    /// the page, or data overlaps the element array or other data); the caller then decodes it
    /// into a node, whose checks report any damage with the element that is wrong.
    static func copy(of page: PageView, pageSize: Int, into buffer: UnsafeMutableRawPointer) -> LeafImage? {
        guard page.isLeaf, page.overflow == 0, page.capacity == pageSize else { return nil }
        let n = page.count
        let elementsEnd = header + n * slot
        guard elementsEnd <= pageSize else { return nil }
        let source = page.base
        var low = pageSize
        var high = elementsEnd
        var live = 0
        // Each element's data must end inside the page. The sums cannot overflow: every term is
        // below 2^32 and the page offsets below 2^31, so wrapping arithmetic is exact here.
        var e = header
        for _ in 0..<n {
            let start = e &+ Int(source.loadUnaligned(fromByteOffset: e &+ 4, as: UInt32.self))
            let bytes = Int(source.loadUnaligned(fromByteOffset: e &+ 8, as: UInt32.self))
                &+ Int(source.loadUnaligned(fromByteOffset: e &+ 12, as: UInt32.self))
            let end = start &+ bytes
            if end > pageSize { return nil }
            if start < low { low = start }
            if end > high { high = end }
            live &+= bytes
            e &+= slot
        }
        if n == 0 { low = elementsEnd; high = elementsEnd }
        // Data overlapping the element array or another element's data (a damaged page) is
        // left to the decoded form, whose checks name the damage.
        guard low >= elementsEnd, live <= high - low, elementsEnd + live < pageSize else { return nil }
        // Header and elements in place; the data block moved to end at the page's end.
        buffer.copyMemory(from: source, byteCount: elementsEnd)
        let span = high - low
        let dataStart = pageSize - span
        if span > 0 { (buffer + dataStart).copyMemory(from: source + low, byteCount: span) }
        let shift = UInt32(truncatingIfNeeded: dataStart - low)
        // Pages Keel wrote from an image already keep their data at the page's end.
        if shift != 0 {
            for i in 0..<n {
                let e = header + i * slot
                let pos = buffer.loadUnaligned(fromByteOffset: e + 4, as: UInt32.self)
                buffer.storeBytes(of: pos &+ shift, toByteOffset: e + 4, as: UInt32.self)
            }
        }
        return LeafImage(base: buffer, pageSize: pageSize, count: n, dataStart: dataStart, dead: span - live)
    }

    // MARK: Reading

    @inline(__always) private func u32(_ offset: Int) -> UInt32 { base.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) private func set32(_ offset: Int, _ v: UInt32) { base.storeBytes(of: v, toByteOffset: offset, as: UInt32.self) }

    @inline(__always) func flags(_ i: Int) -> UInt32 { u32(Self.header + i * Self.slot) }

    @inline(__always) func key(_ i: Int) -> ByteView {
        let e = Self.header + i * Self.slot
        return ByteView(base: UnsafeRawPointer(base + e + Int(u32(e + 4))), count: Int(u32(e + 8)))
    }

    @inline(__always) func value(_ i: Int) -> ByteView {
        let e = Self.header + i * Self.slot
        return ByteView(base: UnsafeRawPointer(base + e + Int(u32(e + 4)) + Int(u32(e + 8))), count: Int(u32(e + 12)))
    }

    /// The index of the first element whose key is >= `key`, and whether it is equal.
    func search(_ key: ByteView) -> (index: Int, exact: Bool) {
        let prefix = key.orderPrefix
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let c = self.key(mid).compare(key, otherPrefix: prefix)
            if c == 0 { return (mid, true) }  // keys are unique
            if c < 0 { lo = mid + 1 } else { hi = mid }
        }
        return (lo, false)
    }

    // MARK: Editing

    /// Whether an element of `key` + `value` bytes can be stored (inserted, or replacing an
    /// element) without reaching the page size, editing in place after a compaction if needed.
    /// A replaced element's old bytes still count: they are live when the page is compacted to
    /// make room for the replacement.
    func canHold(keyBytes: Int, valueBytes: Int, inserting: Bool) -> Bool {
        size + keyBytes + valueBytes + (inserting ? Self.slot : 0) < pageSize
    }

    /// Whether the edit fits in the gap as it is (no compaction needed).
    func fitsInGap(keyBytes: Int, valueBytes: Int, inserting: Bool) -> Bool {
        gap >= keyBytes + valueBytes + (inserting ? Self.slot : 0)
    }

    /// Writes key then value into the gap, just below the data area; returns their offset.
    private mutating func pushData(_ key: ByteView, _ value: ByteView) -> Int {
        dataStart -= key.count + value.count
        if key.count > 0 { (base + dataStart).copyMemory(from: key.base!, byteCount: key.count) }
        if value.count > 0 { (base + dataStart + key.count).copyMemory(from: value.base!, byteCount: value.count) }
        return dataStart
    }

    private func setElement(_ i: Int, flags: UInt32, dataAt offset: Int, keyCount: Int, valueCount: Int) {
        let e = Self.header + i * Self.slot
        set32(e, flags)
        set32(e + 4, UInt32(offset - e))
        set32(e + 8, UInt32(keyCount))
        set32(e + 12, UInt32(valueCount))
    }

    /// Inserts a new element at `index`. Requires `fitsInGap(..., inserting: true)`.
    mutating func insert(at index: Int, key: ByteView, value: ByteView, flags: UInt32) {
        precondition(fitsInGap(keyBytes: key.count, valueBytes: value.count, inserting: true), "LeafImage.insert without room")
        let offset = pushData(key, value)
        let e = Self.header + index * Self.slot
        let moved = count - index
        if moved > 0 {
            memmove(base + e + Self.slot, base + e, moved * Self.slot)
            // Each moved element is 16 bytes further from its data.
            for j in (index + 1)...count {
                let m = Self.header + j * Self.slot
                set32(m + 4, u32(m + 4) &- UInt32(Self.slot))
            }
        }
        count += 1
        setElement(index, flags: flags, dataAt: offset, keyCount: key.count, valueCount: value.count)
        base.storeBytes(of: UInt16(truncatingIfNeeded: count), toByteOffset: 10, as: UInt16.self)
    }

    /// Replaces element `index`'s key, value and flags. Requires `fitsInGap(..., inserting: false)`.
    mutating func replace(at index: Int, key: ByteView, value: ByteView, flags: UInt32) {
        precondition(fitsInGap(keyBytes: key.count, valueBytes: value.count, inserting: false), "LeafImage.replace without room")
        dead += self.key(index).count + self.value(index).count
        let offset = pushData(key, value)
        setElement(index, flags: flags, dataAt: offset, keyCount: key.count, valueCount: value.count)
    }

    /// Removes element `index`; its bytes become dead space.
    mutating func remove(at index: Int) {
        dead += key(index).count + value(index).count
        let e = Self.header + index * Self.slot
        let moved = count - index - 1
        if moved > 0 {
            memmove(base + e, base + e + Self.slot, moved * Self.slot)
            for j in index..<(count - 1) {
                let m = Self.header + j * Self.slot
                set32(m + 4, u32(m + 4) &+ UInt32(Self.slot))
            }
        }
        count -= 1
        base.storeBytes(of: UInt16(truncatingIfNeeded: count), toByteOffset: 10, as: UInt16.self)
    }

    /// A copy without dead space in `buffer` (a fresh page; this image is left untouched, so
    /// views into it stay valid).
    func compacted(into buffer: UnsafeMutableRawPointer) -> LeafImage {
        buffer.copyMemory(from: base, byteCount: Self.header)
        var image = LeafImage(base: buffer, pageSize: pageSize, count: count, dataStart: pageSize, dead: 0)
        for i in 0..<count {
            let offset = image.pushData(key(i), value(i))
            image.setElement(i, flags: flags(i), dataAt: offset, keyCount: key(i).count, valueCount: value(i).count)
        }
        return image
    }

    /// Makes the buffer the final page `id`: header set, the gap zeroed. Dead space, if any, is
    /// left as it is (compact first to drop it).
    func finish(id: UInt64) {
        PageWriter(base: base).setHeader(id: id, flags: .leaf, count: count, overflow: 0)
        let elementsEnd = Self.header + count * Self.slot
        (base + elementsEnd).initializeMemory(as: UInt8.self, repeating: 0, count: dataStart - elementsEnd)
    }
}
