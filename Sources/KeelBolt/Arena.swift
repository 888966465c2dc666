/// Memory a transaction owns until it ends: copies of keys and values handed to `put`, inline
/// bucket images, and dirty page buffers. A `ByteView` into it stays valid for the whole
/// transaction.
///
/// The writer's arena is kept by the database and `reset` between write transactions, so its
/// slabs are reused instead of being mapped and faulted in again for every commit; at most
/// `retainedBytesMax` stay allocated between transactions.
final class Arena {
    static let chunkSize = 256 * 1024
    static let slabSize = 1 << 20
    static let retainedBytesMax = 64 << 20

    /// Small allocations (keys, values, inline buckets).
    @exclusivity(unchecked) private var chunks: [UnsafeMutableRawPointer] = []
    @exclusivity(unchecked) private var chunkIndex = -1
    @exclusivity(unchecked) private var chunkUsed = 0
    /// Page-aligned slabs for dirty pages.
    @exclusivity(unchecked) private var slabs: [UnsafeMutableRawPointer] = []
    @exclusivity(unchecked) private var slabIndex = -1
    @exclusivity(unchecked) private var slabUsed = 0
    /// Allocations too big for a chunk or slab, freed at reset.
    @exclusivity(unchecked) private var large: [UnsafeMutableRawPointer] = []

    deinit {
        releaseAll()
    }

    /// Copies `bytes` into the arena and returns a view of the copy.
    func copy(_ bytes: UnsafeRawBufferPointer) -> ByteView {
        guard bytes.count > 0 else { return ByteView(base: nil, count: 0) }
        let target = allocate(bytes.count)
        target.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        return ByteView(base: UnsafeRawPointer(target), count: bytes.count)
    }

    /// Returns `count` uninitialised bytes (8-byte aligned).
    func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        let rounded = (count + 7) & ~7
        if rounded > Arena.chunkSize / 4 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: rounded, alignment: 16)
            large.append(p)
            return p
        }
        if chunkIndex < 0 || chunkUsed + rounded > Arena.chunkSize {
            chunkIndex += 1
            if chunkIndex == chunks.count {
                chunks.append(UnsafeMutableRawPointer.allocate(byteCount: Arena.chunkSize, alignment: 16))
            }
            chunkUsed = 0
        }
        let p = chunks[chunkIndex] + chunkUsed
        chunkUsed += rounded
        return p
    }

    /// Returns uninitialised, `alignment`-aligned memory for a dirty page run. The caller
    /// initialises every byte.
    func allocatePage(_ count: Int, alignment: Int) -> UnsafeMutableRawPointer {
        if count > Arena.slabSize / 4 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: max(alignment, 16))
            large.append(p)
            return p
        }
        let rounded = (count + alignment - 1) / alignment * alignment
        if slabIndex < 0 || slabUsed + rounded > Arena.slabSize {
            slabIndex += 1
            if slabIndex == slabs.count {
                slabs.append(UnsafeMutableRawPointer.allocate(byteCount: Arena.slabSize, alignment: 4096))
            }
            slabUsed = 0
        }
        let p = slabs[slabIndex] + slabUsed
        slabUsed += rounded
        return p
    }

    /// Makes all memory reusable, keeping up to `retainedBytesMax` of chunks and slabs.
    func reset() {
        for p in large { p.deallocate() }
        large.removeAll(keepingCapacity: true)
        var kept = 0
        chunks = chunks.filter { p in
            if kept + Arena.chunkSize <= Arena.retainedBytesMax / 4 { kept += Arena.chunkSize; return true }
            p.deallocate()
            return false
        }
        slabs = slabs.filter { p in
            if kept + Arena.slabSize <= Arena.retainedBytesMax { kept += Arena.slabSize; return true }
            p.deallocate()
            return false
        }
        chunkIndex = -1
        chunkUsed = 0
        slabIndex = -1
        slabUsed = 0
    }

    /// Frees everything.
    func releaseAll() {
        for p in large { p.deallocate() }
        for p in chunks { p.deallocate() }
        for p in slabs { p.deallocate() }
        large = []
        chunks = []
        slabs = []
        chunkIndex = -1
        chunkUsed = 0
        slabIndex = -1
        slabUsed = 0
    }
}
