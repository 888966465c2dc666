import KeelIO

/// Reads a bbolt file page by page without opening it as a database, for inspection tools: it
/// works when both meta pages are damaged (the page size then comes from the caller) and never
/// follows a reference without checking it.
public final class PageInspector {
    public let path: String
    public let pageSize: Int
    public let fileSize: Int64
    private let file: any FileHandle

    /// One decoded element of a branch or leaf page.
    public struct Element: Sendable {
        public var index: Int
        public var key: [UInt8]
        /// Leaf value (nil for branch elements).
        public var value: [UInt8]?
        /// Branch child page id.
        public var child: UInt64?
        /// Leaf element flags (1 = nested bucket).
        public var flags: UInt32
        public var isBucket: Bool { flags & bucketLeafFlag != 0 }
        /// A nested bucket's root page (0 when inline) and sequence, decoded from its value.
        public var bucketHeader: (root: UInt64, sequence: UInt64)? {
            guard isBucket, let value, let header = BucketHeader.decode(value) else { return nil }
            return (header.root, header.sequence)
        }
    }

    /// A decoded page and what could not be decoded.
    public struct Page: Sendable {
        public var id: UInt64
        /// The id the page says it has.
        public var storedID: UInt64
        public var flags: UInt16
        public var count: Int
        public var overflow: UInt32
        public var typeName: String
        public var elements: [Element] = []
        public var meta: Meta?
        public var metaProblem: String?
        public var freelist: [UInt64]?
        public var problems: [String] = []
        /// The raw bytes of the page and its overflow (as far as the file has them).
        public var bytes: [UInt8]
    }

    /// Opens `path` read-only. The page size comes from a valid meta page, else `fallbackPageSize`.
    public init(path: String, fileSystem: any FileSystem = POSIXFileSystem(), fallbackPageSize: Int = 4096) throws(BoltError) {
        self.path = path
        let handle = try wrap { () throws(IOError) in try fileSystem.open(path, options: .readOnly) }
        let total = try wrap { () throws(IOError) in try handle.size() }
        file = handle
        fileSize = total
        var size = fallbackPageSize
        for offset in [0] + (0..<15).map({ 1024 << $0 }) where Int64(offset) + 80 <= total {
            if let bytes = try? handle.read(count: 80, at: Int64(offset)) {
                let meta = bytes.withUnsafeBytes { Meta(page: PageView(base: $0.baseAddress!, capacity: 80)) }
                if meta.problem() == nil, (offset == 0 || Int(meta.pageSize) == offset),
                   meta.pageSize >= UInt32(PageLayout.minPageSize), meta.pageSize <= UInt32(PageLayout.maxPageSize) {
                    size = Int(meta.pageSize)
                    break
                }
            }
        }
        pageSize = size
    }

    deinit { file.close() }

    /// Pages the file spans.
    public var pageCount: UInt64 { UInt64(fileSize) / UInt64(pageSize) }

    /// The high-water mark of the newest valid meta page, if one is valid.
    public var highWaterMark: UInt64? {
        var best: Meta?
        for id: UInt64 in [0, 1] where id < pageCount {
            if let p = try? page(id), let meta = p.meta, p.metaProblem == nil, meta.txid >= (best?.txid ?? 0) { best = meta }
        }
        return best.map { min($0.pgid, pageCount) }
    }

    /// Decodes page `id`; damage is reported in `problems`, never thrown, unless the page is
    /// past the end of the file.
    public func page(_ id: UInt64) throws(BoltError) -> Page {
        guard id < pageCount else { throw BoltError.pageOutOfBounds(id: id, highWaterMark: pageCount) }
        let head = try wrap { () throws(IOError) in try file.read(count: pageSize, at: Int64(id) * Int64(pageSize)) }
        var probe = head.withUnsafeBytes { raw in
            (PageView(base: raw.baseAddress!, capacity: raw.count).id, PageView(base: raw.baseAddress!, capacity: raw.count).flags.rawValue,
             PageView(base: raw.baseAddress!, capacity: raw.count).count, PageView(base: raw.baseAddress!, capacity: raw.count).overflow)
        }
        var problems: [String] = []
        var overflow = probe.3
        let available = pageCount - id - 1
        if UInt64(overflow) > available {
            problems.append("overflow \(overflow) runs past the end of the file (\(available) pages follow)")
            overflow = UInt32(min(UInt64(overflow), available))
            probe.3 = overflow
        }
        let bytes = overflow == 0 ? head : try wrap { () throws(IOError) in
            try file.read(count: (Int(overflow) + 1) * pageSize, at: Int64(id) * Int64(pageSize))
        }
        let flags = PageFlags(rawValue: probe.1)
        var page = Page(id: id, storedID: probe.0, flags: probe.1, count: probe.2, overflow: probe.3,
                        typeName: flags.typeName, problems: [], bytes: bytes)
        if probe.0 != id { problems.append("page self-identifies as \(probe.0)") }
        bytes.withUnsafeBytes { raw in
            let view = PageView(base: raw.baseAddress!, capacity: raw.count)
            switch flags {
            case .meta:
                let meta = Meta(page: view)
                page.meta = meta
                page.metaProblem = meta.problem()
            case .freelist:
                do throws(BoltError) { page.freelist = try view.freelistIDs(pageID: id) } catch { problems.append(reason(error)) }
            case .leaf, .branch:
                do throws(BoltError) { try view.validateElements(pageID: id) } catch {
                    problems.append(reason(error))
                    return
                }
                for i in 0..<view.count {
                    do throws(BoltError) {
                        if flags == .leaf {
                            page.elements.append(Element(index: i, key: try view.leafKey(i, pageID: id).bytes,
                                                         value: try view.leafValue(i, pageID: id).bytes, child: nil, flags: view.leafFlags(i)))
                        } else {
                            page.elements.append(Element(index: i, key: try view.branchKey(i, pageID: id).bytes, value: nil,
                                                         child: view.branchChild(i), flags: 0))
                        }
                    } catch {
                        problems.append(reason(error))
                    }
                }
            default:
                problems.append("unknown page type 0x\(String(probe.1, radix: 16))")
            }
        }
        page.problems = problems
        return page
    }

    /// Every page below the high-water mark (the whole file when no meta is valid) in order,
    /// overflow pages skipped, as `bbolt pages` lists them; a damaged header is listed with its
    /// problem.
    public func allPages() -> [Page] {
        var result: [Page] = []
        var id: UInt64 = 0
        let end = highWaterMark ?? pageCount
        while id < end {
            guard let p = try? page(id) else { break }
            result.append(p)
            id += UInt64(p.overflow) + 1
        }
        return result
    }

    private func reason(_ error: BoltError) -> String {
        if case let .corruptPage(_, reason) = error { return reason }
        return error.description
    }
}
