import KeelIO

/// The body of a meta page: where a snapshot of the database starts.
///
/// Pages 0 and 1 hold metas; the transaction with id T writes page `T % 2`, so the previous
/// commit's meta is never overwritten by the next one. On open the valid meta with the higher
/// txid wins; a torn or corrupt one is skipped and the other used.
public struct Meta: Sendable, Equatable {
    public var magic: UInt32 = PageLayout.magic
    public var version: UInt32 = PageLayout.version
    public var pageSize: UInt32
    public var flags: UInt32 = 0
    /// Root page of the top-level bucket tree.
    public var root: UInt64
    /// The root bucket's sequence.
    public var sequence: UInt64 = 0
    /// The freelist page, or `PageLayout.noFreelist`.
    public var freelist: UInt64
    /// High-water mark: the number of pages in use; the next page allocated at the end gets this id.
    public var pgid: UInt64
    public var txid: UInt64
    public var checksum: UInt64 = 0

    init(pageSize: UInt32, root: UInt64, freelist: UInt64, pgid: UInt64, txid: UInt64) {
        self.pageSize = pageSize
        self.root = root
        self.freelist = freelist
        self.pgid = pgid
        self.txid = txid
    }

    /// Decodes the meta body of a page (no validation).
    init(page: PageView) {
        let b = PageLayout.headerSize
        magic = page.u32(b)
        version = page.u32(b + 4)
        pageSize = page.u32(b + 8)
        flags = page.u32(b + 12)
        root = page.u64(b + 16)
        sequence = page.u64(b + 24)
        freelist = page.u64(b + 32)
        pgid = page.u64(b + 40)
        txid = page.u64(b + 48)
        checksum = page.u64(b + 56)
    }

    /// The FNV-1a 64 of the 56 bytes from magic through txid.
    public func computeChecksum() -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: 56)
        bytes.withUnsafeMutableBytes { raw in
            let w = PageWriter(base: raw.baseAddress!)
            encodeBody(w, at: 0)
        }
        return FNV1a64.hash(bytes)
    }

    private func encodeBody(_ w: PageWriter, at b: Int) {
        w.setU32(b, magic)
        w.setU32(b + 4, version)
        w.setU32(b + 8, pageSize)
        w.setU32(b + 12, flags)
        w.setU64(b + 16, root)
        w.setU64(b + 24, sequence)
        w.setU64(b + 32, freelist)
        w.setU64(b + 40, pgid)
        w.setU64(b + 48, txid)
    }

    /// Writes a full meta page (header and body with a fresh checksum) into `buffer`.
    func write(into buffer: UnsafeMutableRawPointer, pageID: UInt64) {
        let w = PageWriter(base: buffer)
        w.setHeader(id: pageID, flags: .meta, count: 0, overflow: 0)
        encodeBody(w, at: PageLayout.headerSize)
        w.setU64(PageLayout.headerSize + 56, computeChecksum())
    }

    /// Why this meta cannot be used, or nil when it is valid. A stored checksum of 0 is accepted
    /// only when `acceptZeroChecksum` (bbolt 1.3.6 skipped the check then).
    public func problem(acceptZeroChecksum: Bool = true) -> String? {
        if magic != PageLayout.magic { return "bad magic 0x\(String(magic, radix: 16)) (expected 0xed0cdaed): not a bbolt file" }
        if version != PageLayout.version { return "version \(version) (expected 2)" }
        if checksum == 0 && acceptZeroChecksum { return nil }
        let computed = computeChecksum()
        if checksum != computed {
            return "checksum 0x\(String(checksum, radix: 16)) does not match the computed 0x\(String(computed, radix: 16))"
        }
        return nil
    }
}
