/// One problem `check` found.
public struct CheckIssue: Sendable, Equatable, CustomStringConvertible {
    /// The page the problem is on, when there is one.
    public let page: UInt64?
    /// How the page was reached from the root: e.g. `["root 3", "branch 7", "bucket widgets 12"]`.
    public let path: [String]
    /// What is wrong.
    public let message: String

    public var description: String {
        var text = page.map { "page \($0): \(message)" } ?? message
        if !path.isEmpty { text += " (via \(path.joined(separator: " > ")))" }
        return text
    }
}

extension Tx {
    /// Checks the snapshot's consistency, reporting every problem found (not just the first):
    /// - every page below the high-water mark is reachable exactly once or free (when a freelist
    ///   is stored), and no page is both reachable and free, or freed twice;
    /// - page ids match where they are, types are branch/leaf inside trees, element arrays and
    ///   key/value ranges fit inside their pages;
    /// - keys are strictly ascending within a page and fall between their branch separators;
    /// - the freelist lists only pages in 2..<high-water mark.
    /// Never traps or loops on a damaged file.
    public func check() -> [CheckIssue] {
        var checker = Checker(tx: self)
        checker.run()
        return checker.issues
    }

    func checkPages() throws(BoltError) -> [CheckIssue] { check() }

    /// Page ids in 2..<pgid not reachable from the root or the freelist: the free pages of a file
    /// stored without a freelist.
    /// - Throws: the first structural problem found, since a damaged tree cannot be trusted.
    func unreachablePages() throws(BoltError) -> [UInt64] {
        var checker = Checker(tx: self)
        checker.run()
        if let first = checker.issues.first {
            throw BoltError.corruptPage(id: first.page ?? 0, reason: first.description)
        }
        var ids: [UInt64] = []
        for id in 2..<Int(meta.pgid) where !checker.reachable[id] { ids.append(UInt64(id)) }
        return ids
    }
}

/// The walk behind `Tx.check`.
struct Checker {
    let tx: Tx
    var issues: [CheckIssue] = []
    var reachable: [Bool]
    var freed: [Bool]
    var hasFreelist = false
    let maxIssues = 10_000

    init(tx: Tx) {
        self.tx = tx
        reachable = [Bool](repeating: false, count: Int(tx.meta.pgid))
        freed = [Bool](repeating: false, count: Int(tx.meta.pgid))
    }

    mutating func report(_ page: UInt64?, _ path: [String], _ message: String) {
        if issues.count < maxIssues { issues.append(CheckIssue(page: page, path: path, message: message)) }
    }

    mutating func run() {
        let hwm = tx.meta.pgid
        guard hwm >= 2 else { report(nil, [], "high-water mark \(hwm) is below 2"); return }
        reachable[0] = true
        reachable[1] = true
        if tx.meta.freelist != PageLayout.noFreelist {
            hasFreelist = true
            readFreelist()
        }
        visit(tx.meta.root, path: ["root \(tx.meta.root)"], lower: nil, upper: nil, depth: 0)
        guard hasFreelist else { return }
        for id in 2..<Int(hwm) where !reachable[id] && !freed[id] {
            report(UInt64(id), [], "unreachable unfreed")
        }
    }

    private mutating func readFreelist() {
        let id = tx.meta.freelist
        let page: PageView
        do throws(BoltError) {
            page = try tx.rawPage(id)
        } catch {
            report(id, ["freelist"], "freelist page unreadable: \(error)")
            hasFreelist = false
            return
        }
        guard page.flags == .freelist else {
            report(id, ["freelist"], "meta names it as the freelist but its type is \(page.flags.typeName)")
            hasFreelist = false
            return
        }
        for p in id...(id + UInt64(page.overflow)) { mark(p, path: ["freelist"]) }
        let ids: [UInt64]
        do throws(BoltError) { ids = try page.freelistIDs(pageID: id) } catch {
            report(id, ["freelist"], "\(error)")
            hasFreelist = false
            return
        }
        for p in ids {
            if p < 2 || p >= tx.meta.pgid {
                report(id, ["freelist"], "lists page \(p), outside 2..<\(tx.meta.pgid)")
                continue
            }
            if freed[Int(p)] { report(p, ["freelist"], "already freed") }
            freed[Int(p)] = true
            if reachable[Int(p)] { report(p, ["freelist"], "reachable freed") }
        }
    }

    /// Marks a page reachable; false when it was already (a second reference).
    @discardableResult
    private mutating func mark(_ id: UInt64, path: [String]) -> Bool {
        guard id < tx.meta.pgid else {
            report(id, path, "out of bounds: high-water mark \(tx.meta.pgid)")
            return false
        }
        if reachable[Int(id)] {
            report(id, path, "multiple references")
            return false
        }
        reachable[Int(id)] = true
        if freed[Int(id)] { report(id, path, "reachable freed") }
        return true
    }

    private mutating func visit(_ id: UInt64, path: [String], lower: ByteView?, upper: ByteView?, depth: Int) {
        if depth > 64 { report(id, path, "tree deeper than 64 levels"); return }
        guard id >= 2 else { report(id, path, "tree references meta page \(id)"); return }
        let page: PageView
        do throws(BoltError) { page = try tx.rawPage(id) } catch {
            if case let .pageOutOfBounds(p, hwm) = error {
                report(p, path, "out of bounds: high-water mark \(hwm)")
            } else {
                report(id, path, errorReason(error))
            }
            return
        }
        var fresh = true
        for p in id...(id + UInt64(page.overflow)) where !mark(p, path: path) { fresh = false }
        guard fresh else { return }  // do not walk a page twice (cycles)
        let flags = page.flags
        guard flags == .branch || flags == .leaf else {
            report(id, path, "invalid type: \(flags.typeName)")
            return
        }
        do throws(BoltError) { try page.validateElements(pageID: id) } catch {
            report(id, path, errorReason(error))
            return
        }
        if flags == .branch && page.count == 0 { report(id, path, "branch page has no elements") }
        var previous: ByteView?
        for i in 0..<page.count {
            let key: ByteView
            do throws(BoltError) {
                key = flags == .leaf ? try page.leafKey(i, pageID: id) : try page.branchKey(i, pageID: id)
            } catch {
                report(id, path, errorReason(error))
                continue
            }
            if let previous, previous.compare(key) >= 0 {
                report(id, path, "key \(i) (\(key)) is not greater than the key before it (\(previous))")
            }
            if i == 0, let lower, key.compare(lower) < 0 {
                report(id, path, "first key (\(key)) is below its branch separator (\(lower))")
            }
            if let upper, key.compare(upper) >= 0 {
                report(id, path, "key \(i) (\(key)) is not below the next branch separator (\(upper))")
            }
            previous = key
            if flags == .branch {
                var nextUpper = upper
                if i + 1 < page.count, let k = try? page.branchKey(i + 1, pageID: id) { nextUpper = k }
                let child = page.branchChild(i)
                visit(child, path: path + ["branch \(id)[\(i)] -> \(child)"], lower: key, upper: nextUpper, depth: depth + 1)
            } else if page.leafFlags(i) & bucketLeafFlag != 0 {
                visitBucket(page: page, id: id, index: i, name: key, path: path, depth: depth)
            }
        }
    }

    private mutating func visitBucket(page: PageView, id: UInt64, index: Int, name: ByteView, path: [String], depth: Int) {
        let value: ByteView
        do throws(BoltError) { value = try page.leafValue(index, pageID: id) } catch {
            report(id, path, errorReason(error))
            return
        }
        let bucketPath = path + ["bucket \(name)"]
        let decoded: (header: BucketHeader, inline: PageView?)
        do throws(BoltError) { decoded = try BucketHeader.decode(value, at: id) } catch {
            report(id, bucketPath, errorReason(error))
            return
        }
        guard let inline = decoded.inline else {
            let root = decoded.header.root
            visit(root, path: bucketPath + ["root \(root)"], lower: nil, upper: nil, depth: depth + 1)
            return
        }
        guard inline.flags == .leaf else {
            report(id, bucketPath, "inline bucket page is \(inline.flags.typeName), expected leaf")
            return
        }
        do throws(BoltError) { try inline.validateElements(pageID: id) } catch {
            report(id, bucketPath, "inline bucket: " + errorReason(error))
            return
        }
        var previous: ByteView?
        for i in 0..<inline.count {
            guard let key = try? inline.leafKey(i, pageID: id), (try? inline.leafValue(i, pageID: id)) != nil else {
                report(id, bucketPath, "inline bucket element \(i) runs past its value")
                continue
            }
            if let previous, previous.compare(key) >= 0 {
                report(id, bucketPath, "inline bucket key \(i) is not greater than the key before it")
            }
            if inline.leafFlags(i) & bucketLeafFlag != 0 {
                report(id, bucketPath, "inline bucket holds a nested bucket (\(key)), which bbolt never writes")
            }
            previous = key
        }
    }

    private func errorReason(_ error: BoltError) -> String {
        if case let .corruptPage(_, reason) = error { return reason }
        return error.description
    }
}

/// What a page below the high-water mark is used for, as `check`'s walk finds it.
public enum PageUse: String, Sendable {
    case meta, freelist, branch, leaf, overflow, free, unreachable
}

extension Tx {
    /// The use of every page below the high-water mark: reachable pages by type (overflow pages
    /// of a run as `.overflow`), freelist-listed pages as `.free`, the rest `.unreachable` (for a
    /// file stored without a freelist those are its free pages). Also the bytes in use per page.
    public func pageUses() -> [(use: PageUse, used: Int)] {
        var checker = Checker(tx: self)
        checker.run()
        var result = [(use: PageUse, used: Int)](repeating: (.unreachable, 0), count: Int(meta.pgid))
        result[0] = (.meta, 80)
        if result.count > 1 { result[1] = (.meta, 80) }
        // Without a stored freelist, pages nothing reaches are simply the free ones.
        let strayUse: PageUse = checker.hasFreelist ? .unreachable : .free
        for i in 2..<result.count { result[i] = (strayUse, 0) }
        var id = 2
        while id < Int(meta.pgid) {
            if checker.freed[id] && !checker.reachable[id] {
                result[id] = (.free, 0)
                id += 1
                continue
            }
            guard checker.reachable[id], let page = try? rawPage(UInt64(id)) else { id += 1; continue }
            let use: PageUse
            switch page.flags {
            case .branch: use = .branch
            case .leaf: use = .leaf
            case .freelist: use = .freelist
            case .meta: use = .meta
            default: use = .unreachable
            }
            let span = Int(page.overflow) + 1
            let used = Self.usedBytes(page, use)
            for k in 0..<span where id + k < result.count {
                result[id + k] = (k == 0 ? use : .overflow, min(max(used - k * db.pageSize, 0), db.pageSize))
            }
            id += span
        }
        return result
    }

    private static func usedBytes(_ page: PageView, _ use: PageUse) -> Int {
        switch use {
        case .freelist: return PageLayout.headerSize + 8 * page.count
        case .leaf, .branch:
            return page.usedBytes(pageID: page.id)
        default: return 0
        }
    }
}
