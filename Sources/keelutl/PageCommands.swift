import ArgumentParser
import Foundation
import KeelBolt
import KeelInspect
import KeelIO

/// Opens the raw page reader, or exits 2 with the reason.
func inspector(_ path: String, pageSize: Int, command: String) throws -> PageInspector {
    do {
        return try PageInspector(path: path, fallbackPageSize: pageSize)
    } catch {
        printError("keelutl \(command): \(error)")
        throw ExitCode(2)
    }
}

func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }

/// `keelutl pages PATH [--svg OUT]`: every page, as `bbolt pages`, and optionally a picture.
struct PagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pages",
        abstract: "List every page (id, type, items, overflow) as `bbolt pages`; --svg draws the page map.",
        discussion: "Works on damaged files: pages are read one by one; a bad header is listed with its problem (exit 1).")

    @Argument var path: String
    @Option(name: .shortAndLong, help: "table (bbolt's layout) or json (one object per page per line).")
    var writeOut: OutputFormat = .table
    @Option(help: "Write an SVG page map (colour = use, lightness = fill) to this file.")
    var svg: String?
    @Option(help: "Page size to assume when both meta pages are damaged.")
    var pageSize = 4096

    func run() throws {
        let pages = try inspector(path, pageSize: pageSize, command: "pages")
        var freeIDs = Set<UInt64>()
        var uses: [(use: PageUse, used: Int)]?
        var options = Options()
        options.readOnly = true
        options.lockTimeout = 5
        if let db = try? DB.open(path: path, options: options) {
            uses = try? db.view { tx throws(BoltError) in tx.pageUses() }
            if let uses { for (i, u) in uses.enumerated() where u.use == .free { freeIDs.insert(UInt64(i)) } }
            try db.close()
        }
        if writeOut != .json {
            print("ID       TYPE       ITEMS  OVRFLW")
            print("======== ========== ====== ======")
        }
        var damaged = false
        for page in pages.allPages() {
            if writeOut == .json {
                let type = freeIDs.contains(page.id) ? "free" : page.typeName
                var json = JSONLine()
                json.add("id", page.id)
                json.add("type", type)
                json.add("items", page.count)
                json.add("overflow", page.overflow)
                json.addRaw("problems", JSONLine.array(page.problems))
                print(json)
                if !page.problems.isEmpty { damaged = true }
                continue
            }
            if freeIDs.contains(page.id) {
                print(pad(String(page.id), 8) + " free")
                continue
            }
            let items = page.typeName == "freelist" ? String(page.count) : String(page.count)
            var line = pad(String(page.id), 8) + " " + pad(page.typeName, 10) + " " + pad(items, 6) + " " + pad(String(page.overflow), 6)
            if !page.problems.isEmpty {
                damaged = true
                line += " ! " + page.problems.joined(separator: "; ")
            }
            print(line.trimmingCharacters(in: .whitespaces))
        }
        if let svg {
            guard let uses else {
                printError("keelutl pages: the file does not open as a database; no page map")
                throw ExitCode(1)
            }
            let text = PageMapSVG.render(uses, pageSize: pages.pageSize, title: (path as NSString).lastPathComponent)
            do { try text.write(toFile: svg, atomically: true, encoding: .utf8) } catch {
                printError("keelutl pages: cannot write \(svg): \(error)")
                throw ExitCode(1)
            }
        }
        if damaged { throw ExitCode(1) }
    }
}

/// `keelutl page PATH ID...`: pages decoded, as `bbolt page`.
struct PageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "page", abstract: "Decode pages, as `bbolt page`; --hex adds a hex dump.")
    @Argument var path: String
    @Argument var ids: [UInt64]
    @Flag var hex = false
    @Option(help: "Page size to assume when both meta pages are damaged.")
    var pageSize = 4096

    func run() throws {
        let pages = try inspector(path, pageSize: pageSize, command: "page")
        var damaged = false
        for id in ids {
            let page: PageInspector.Page
            do { page = try pages.page(id) } catch {
                printError("page \(id): \(error)")
                damaged = true
                continue
            }
            print("Page ID:    \(page.id)")
            print("Page Type:  \(page.typeName)")
            print("Total Size: \((Int(page.overflow) + 1) * pages.pageSize) bytes")
            print("Overflow pages: \(page.overflow)")
            print("Item Count: \(page.count)")
            print("")
            if let meta = page.meta {
                print("Version: \(meta.version)")
                print("Page Size: \(meta.pageSize) bytes")
                print("Flags: \(String(format: "%08x", meta.flags))")
                print("Root: <pgid=\(meta.root)>")
                print("Freelist: <pgid=\(meta.freelist == PageLayout.noFreelist ? "-1" : String(meta.freelist))>")
                print("HWM: <pgid=\(meta.pgid)>")
                print("Txn ID: \(meta.txid)")
                print("Checksum: \(String(format: "%016llx", meta.checksum))")
                if let problem = page.metaProblem { print("! \(problem)") }
            }
            if let ids = page.freelist { for id in ids { print(id) } }
            for e in page.elements {
                let key = "\"\(String(decoding: e.key, as: UTF8.self))\""
                if let child = e.child {
                    print("\(key): <pgid=\(child)>")
                } else if let header = e.bucketHeader {
                    print("\(key): <pgid=\(header.root),seq=\(header.sequence)>")
                } else {
                    print("\(key): \(displayValue(e.value ?? []))")
                }
            }
            for problem in page.problems {
                damaged = true
                print("! \(problem)")
            }
            if hex { print(hexDump(page.bytes, base: Int(page.id) * pages.pageSize)) }
            print("")
        }
        if damaged { throw ExitCode(1) }
    }
}

/// `keelutl page-item PATH PAGE ITEM`: one element's key and value.
struct PageItemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "page-item", abstract: "One element of a page: key line, value line.")
    @Argument var path: String
    @Argument var pageID: UInt64
    @Argument var itemID: Int
    @Flag var keyOnly = false
    @Flag var valueOnly = false
    @Option(help: "Page size to assume when both meta pages are damaged.")
    var pageSize = 4096

    func run() throws {
        let pages = try inspector(path, pageSize: pageSize, command: "page-item")
        let page: PageInspector.Page
        do { page = try pages.page(pageID) } catch {
            printError("page \(pageID): \(error)")
            throw ExitCode(1)
        }
        guard itemID >= 0, itemID < page.elements.count else {
            printError("item \(itemID) is out of range: page \(pageID) has \(page.elements.count) readable items")
            throw ExitCode(1)
        }
        let e = page.elements[itemID]
        if !valueOnly { print(displayValue(e.key)) }
        if !keyOnly { print(e.child.map { "<pgid=\($0)>" } ?? displayValue(e.value ?? [])) }
    }
}

/// `keelutl dump PATH ID...`: hex of pages, as `bbolt dump`.
struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dump", abstract: "Hex dump of pages, as `bbolt dump`.")
    @Argument var path: String
    @Argument var ids: [UInt64]
    @Option(help: "Page size to assume when both meta pages are damaged.")
    var pageSize = 4096

    func run() throws {
        let pages = try inspector(path, pageSize: pageSize, command: "dump")
        for (n, id) in ids.enumerated() {
            if n > 0 { print(String(repeating: "=", count: 80)) }
            do {
                let page = try pages.page(id)
                print(hexDump(page.bytes, base: Int(id) * pages.pageSize))
            } catch {
                printError("page \(id): \(error)")
                throw ExitCode(1)
            }
        }
    }
}

/// `keelutl stats PATH`: page and bucket statistics, as `bbolt stats`.
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Page, tree and bucket statistics, as `bbolt stats`.")
    @Argument var path: String
    @Option(name: .shortAndLong, help: "table (bbolt's text) or json (bbolt's BucketStats field names).")
    var writeOut: OutputFormat = .table

    func run() throws {
        let db = try openReadOnly(path, command: "stats")
        defer { try? db.close() }
        let s: BucketStats
        var count = 0
        do {
            s = try db.view { tx throws(BoltError) in
                var total = BucketStats()
                for name in try tx.bucketNames() {
                    if let b = try tx.bucket(name) { total.add(try b.stats()); count += 1 }
                }
                return total
            }
        } catch {
            printError("keelutl stats: \(error)")
            throw ExitCode(1)
        }
        func pct(_ a: Int, _ b: Int) -> Int { b == 0 ? 0 : a * 100 / b }
        if writeOut == .json {
            var json = JSONLine()
            for (name, value) in [("BranchPageN", s.branchPageN), ("BranchOverflowN", s.branchOverflowN), ("LeafPageN", s.leafPageN),
                                  ("LeafOverflowN", s.leafOverflowN), ("KeyN", s.keyN), ("Depth", s.depth), ("BranchAlloc", s.branchAlloc),
                                  ("BranchInuse", s.branchInuse), ("LeafAlloc", s.leafAlloc), ("LeafInuse", s.leafInuse), ("BucketN", s.bucketN),
                                  ("InlineBucketN", s.inlineBucketN), ("InlineBucketInuse", s.inlineBucketInuse)] {
                json.add(name, value)
            }
            print(json)
            return
        }
        print("Aggregate statistics for \(count) buckets")
        print("")
        print("Page count statistics")
        print("\tNumber of logical branch pages: \(s.branchPageN)")
        print("\tNumber of physical branch overflow pages: \(s.branchOverflowN)")
        print("\tNumber of logical leaf pages: \(s.leafPageN)")
        print("\tNumber of physical leaf overflow pages: \(s.leafOverflowN)")
        print("Tree statistics")
        print("\tNumber of keys/value pairs: \(s.keyN)")
        print("\tNumber of levels in B+tree: \(s.depth)")
        print("Page size utilization")
        print("\tBytes allocated for physical branch pages: \(s.branchAlloc)")
        print("\tBytes actually used for branch data: \(s.branchInuse) (\(pct(s.branchInuse, s.branchAlloc))%)")
        print("\tBytes allocated for physical leaf pages: \(s.leafAlloc)")
        print("\tBytes actually used for leaf data: \(s.leafInuse) (\(pct(s.leafInuse, s.leafAlloc))%)")
        print("Bucket statistics")
        print("\tTotal number of buckets: \(s.bucketN)")
        print("\tTotal number on inlined buckets: \(s.inlineBucketN) (\(pct(s.inlineBucketN, s.bucketN))%)")
        print("\tBytes used for inlined buckets: \(s.inlineBucketInuse) (\(pct(s.inlineBucketInuse, s.leafInuse))%)")
    }
}

/// `keelutl compact SRC DST`: a fresh, packed copy.
struct CompactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compact", abstract: "Write a packed copy of a bbolt file (fill 1.0), printing sizes before and after.")
    @Argument var source: String
    @Argument var destination: String
    @Option(help: "Commit every this many bytes of keys and values.")
    var txMaxSize = 65536

    func run() throws {
        let src = try openReadOnly(source, command: "compact")
        defer { try? src.close() }
        if FileManager.default.fileExists(atPath: destination) {
            printError("keelutl compact: \(destination) exists; give a new path")
            throw ExitCode(2)
        }
        var options = Options()
        options.pageSize = src.pageSize
        let dst: DB
        do { dst = try DB.open(path: destination, options: options) } catch {
            printError("keelutl compact: \(error)")
            throw ExitCode(2)
        }
        let bar = ProgressBar()
        let total = (try? src.view { tx throws(BoltError) -> Int in
            var sum = 0
            for name in try tx.bucketNames() { sum += try tx.bucket(name)?.stats().keyN ?? 0 }
            return sum
        }) ?? 0
        do {
            try DB.compact(from: src, into: dst, txMaxSize: txMaxSize) { copied in
                if bar.enabled && total > 0 { bar.show("compact", min(1, Double(copied) / Double(total))) }
            }
        } catch {
            bar.clear()
            printError("keelutl compact: \(error)")
            throw ExitCode(1)
        }
        bar.clear()
        try dst.close()
        let before = (try? FileManager.default.attributesOfItem(atPath: source)[.size] as? Int64) ?? 0
        let after = (try? FileManager.default.attributesOfItem(atPath: destination)[.size] as? Int64) ?? 0
        print("\(before ?? 0) -> \(after ?? 0) bytes (gain=\(String(format: "%.2f", Double(before ?? 0) / Double(max(after ?? 1, 1))))x)")
    }
}

/// Printable text as is, anything else as hex (bbolt's `auto` format).
func displayValue(_ bytes: [UInt8]) -> String { printableOrHex(bytes, allowUTF8: true) }

/// `bbolt dump`'s format: %07x address and 8 groups of 2 bytes; repeated lines as `*`.
func hexDump(_ bytes: [UInt8], base: Int) -> String {
    var lines: [String] = []
    var previous: ArraySlice<UInt8>?
    var skipping = false
    var offset = 0
    while offset < bytes.count {
        let row = bytes[offset..<min(offset + 16, bytes.count)]
        if let previous, previous == row, offset + 16 < bytes.count {
            if !skipping { lines.append(String(format: "%07x *", base + offset)) }
            skipping = true
        } else {
            skipping = false
            var groups: [String] = []
            var i = row.startIndex
            while i < row.endIndex {
                groups.append(row[i..<min(i + 2, row.endIndex)].map { String(format: "%02x", $0) }.joined())
                i += 2
            }
            lines.append(String(format: "%07x ", base + offset) + groups.joined(separator: " "))
        }
        previous = row
        offset += 16
    }
    return lines.joined(separator: "\n")
}
