/// Memory a transaction owns until it ends: copies of keys and values handed to `put`, inline
/// bucket images, and dirty page buffers. Freed all at once when the transaction closes, so a
/// `ByteView` into it stays valid for the whole transaction.
final class Arena {
    private var chunks: [(pointer: UnsafeMutableRawPointer, size: Int)] = []
    private var current: UnsafeMutableRawPointer?
    private var used = 0
    private var capacity = 0
    static let chunkSize = 256 * 1024

    deinit { releaseAll() }

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
            chunks.append((p, rounded))
            return p
        }
        if current == nil || used + rounded > capacity {
            let p = UnsafeMutableRawPointer.allocate(byteCount: Arena.chunkSize, alignment: 16)
            chunks.append((p, Arena.chunkSize))
            current = p
            used = 0
            capacity = Arena.chunkSize
        }
        let p = current! + used
        used += rounded
        return p
    }

    /// Returns zeroed, page-aligned memory for a dirty page run.
    func allocatePage(_ count: Int, alignment: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: alignment)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        chunks.append((p, count))
        return p
    }

    func releaseAll() {
        for chunk in chunks { chunk.pointer.deallocate() }
        chunks.removeAll()
        current = nil
        used = 0
        capacity = 0
    }
}
