/// One element of a node: a key with a value (leaf) or a child page id (branch).
struct INode {
    var flags: UInt32
    var pgid: UInt64
    let key: ByteView
    var value: ByteView
    /// `key.orderPrefix`, kept so a search compares one integer per element before any bytes.
    let prefix: UInt64

    init(flags: UInt32, pgid: UInt64, key: ByteView, value: ByteView) {
        self.flags = flags
        self.pgid = pgid
        self.key = key
        self.value = value
        prefix = key.orderPrefix
    }
}

/// The in-memory, writable copy of a page, made the first time a write transaction changes it.
///
/// A one-page leaf is kept as a `LeafImage`: the page copied into the writer's arena and edited
/// in place, then written as it stands at commit. Branches, leaves that outgrow a page, leaves
/// of inline buckets and leaves being merged are kept as decoded elements (`inodes`), whose keys
/// and values point into the map or the transaction's arena; `materialize()` turns an image into
/// that form. Code that reads a leaf uses `count`, `key(at:)`, `value(at:)` and `flags(at:)`,
/// which work in both forms.
///
/// A parent holds its children strongly; the link back to the parent is unowned.
///
/// Nodes are recycled: when a write transaction ends, each node nothing else holds goes back to
/// the database's pool (`DB.spareNodes`) and the next writer takes nodes from there (`make`)
/// instead of allocating, so a steady write load makes and frees no node objects.
final class Node {
    /// Unowned-unsafe: a node lives only inside its bucket's `nodes` and its transaction, which
    /// both outlive every use of it.
    unowned(unsafe) private(set) var bucket: Bucket
    /// The bucket's transaction (unowned-unsafe for the same reason).
    unowned(unsafe) private(set) var tx: Tx
    @exclusivity(unchecked) var isLeaf: Bool
    @exclusivity(unchecked) var unbalanced = false
    @exclusivity(unchecked) var spilled = false
    /// The key this node is filed under in its parent (its first key when it was read).
    @exclusivity(unchecked) var key = ByteView.empty
    /// The page this node was read from (0 for a new node).
    @exclusivity(unchecked) var pgid: UInt64 = 0
    /// Unowned-unsafe: every node of a transaction is kept alive by the transaction's list of
    /// nodes until it ends, so the parent outlives every use of this link; the tree's only
    /// strong links go from parent to children, so there is no cycle to break at the end.
    @exclusivity(unchecked) unowned(unsafe) var parent: Node?
    @exclusivity(unchecked) var children: [Node] = []
    /// The elements, unless the node is an image.
    @exclusivity(unchecked) var inodes: [INode] = []
    /// The page being edited in place (one-page leaves only); nil for the decoded form.
    @exclusivity(unchecked) var image: LeafImage?
    /// Where this node's separator was in its parent when it was reached through it (-1: not
    /// known). Filing the node at commit tries there first, shifted by the separators inserted
    /// before it since (`insertedSeparators`), and searches only when the key is not there.
    @exclusivity(unchecked) var indexHint = -1
    /// Separators inserted into this node by its children's splits during its spill (children
    /// spill in key order, so each insert shifts the separators of the children still to come).
    @exclusivity(unchecked) var insertedSeparators = 0

    private init(bucket: Bucket, isLeaf: Bool, parent: Node?) {
        self.bucket = bucket
        tx = bucket.liveTx
        self.isLeaf = isLeaf
        self.parent = parent
    }

    /// A new, empty node of `bucket`'s (write) transaction, taken from the database's pool when
    /// it has one. The transaction keeps it until it ends.
    static func make(bucket: Bucket, isLeaf: Bool, parent: Node?) -> Node {
        let tx = bucket.liveTx
        let node: Node
        if let spare = tx.spareNodes.popLast() {
            node = spare
            node.bucket = bucket
            node.tx = tx
            node.isLeaf = isLeaf
            node.parent = parent
        } else {
            node = Node(bucket: bucket, isLeaf: isLeaf, parent: parent)
        }
        tx.track(node)
        return node
    }

    /// The most elements whose storage a pooled node keeps (more is dropped, so one huge leaf
    /// does not pin its memory in the pool).
    static let pooledCapacity = 512

    /// Drops the links to other nodes (so that the nodes of an ended transaction no longer hold
    /// each other).
    func unlink() {
        parent = nil
        if !children.isEmpty { children.removeAll(keepingCapacity: true) }
    }

    /// Empties the node for the pool: no elements, no image, no links (storage kept, up to
    /// `pooledCapacity` elements).
    func clearForReuse() {
        unlink()
        if inodes.capacity > Self.pooledCapacity { inodes = [] } else if !inodes.isEmpty { inodes.removeAll(keepingCapacity: true) }
        if children.capacity > Self.pooledCapacity { children = [] }
        image = nil
        key = .empty
        pgid = 0
        unbalanced = false
        spilled = false
        indexHint = -1
        insertedSeparators = 0
    }

    var minKeys: Int { isLeaf ? 1 : 2 }

    // MARK: Elements, in either form

    var count: Int { image?.count ?? inodes.count }

    func key(at i: Int) -> ByteView {
        if let image { return image.key(i) }
        return inodes[i].key
    }

    func value(at i: Int) -> ByteView {
        if let image { return image.value(i) }
        return inodes[i].value
    }

    func flags(at i: Int) -> UInt32 {
        if let image { return image.flags(i) }
        return inodes[i].flags
    }

    /// The first key, or an empty view for an empty node.
    var firstKey: ByteView { count > 0 ? key(at: 0) : .empty }

    /// Turns an image into decoded elements (pointing into the image, which is never written
    /// again). Nothing happens to a node that is already decoded.
    func materialize() {
        guard let image else { return }
        var items: [INode] = []
        items.reserveCapacity(image.count + 1)
        for i in 0..<image.count {
            items.append(INode(flags: image.flags(i), pgid: 0, key: image.key(i), value: image.value(i)))
        }
        inodes = items
        self.image = nil
    }

    /// The root of this node's tree.
    func root() -> Node {
        var n = self
        while let p = n.parent { n = p }
        return n
    }

    /// Serialised size in bytes.
    func size() -> Int {
        if let image { return image.size }
        var sz = PageLayout.headerSize
        for item in inodes { sz += PageLayout.elementBytes(key: item.key.count, value: item.value.count) }
        return sz
    }

    /// Whether the serialised size is below `limit`, stopping early.
    func sizeLessThan(_ limit: Int) -> Bool {
        if let image { return image.size < limit }
        var sz = PageLayout.headerSize
        for item in inodes {
            sz += PageLayout.elementBytes(key: item.key.count, value: item.value.count)
            if sz >= limit { return false }
        }
        return true
    }

    /// The index of the first inode whose key is >= `key`, and whether it is equal.
    func search(_ key: ByteView) -> (index: Int, exact: Bool) {
        if let image { return image.search(key) }
        let prefix = key.orderPrefix
        var lo = 0
        var hi = inodes.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let item = inodes[mid]
            let c = item.prefix != prefix ? (item.prefix < prefix ? -1 : 1) : item.key.compare(key)
            if c == 0 { return (mid, true) }  // keys are unique
            if c < 0 { lo = mid + 1 } else { hi = mid }
        }
        return (lo, false)
    }

    func childAt(_ index: Int) throws(BoltError) -> Node {
        precondition(!isLeaf, "childAt on a leaf node")
        let before = children.count
        let child = try bucket.node(inodes[index].pgid, parent: self)
        // The child is filed under this separator: spill and rebalance find it by this key even
        // when a damaged file's separator differs from the child's first key.
        child.key = inodes[index].key
        child.indexHint = index
        if children.count > before {
            placeNewestChild()
            // Just read from the file: it must start inside the range this branch files it
            // under (at or after its separator, before the next one), or branches share pages
            // and edits through one would corrupt the other.
            if child.count > 0 {
                let first = child.key(at: 0)
                if first.compare(inodes[index].key) < 0 {
                    throw BoltError.corruptPage(id: child.pgid, reason: "its first key sorts before separator \(index) of its parent branch page \(pgid)")
                }
                if index + 1 < inodes.count, first.compare(inodes[index + 1].key) >= 0 {
                    throw BoltError.corruptPage(id: child.pgid, reason: "its first key is not below separator \(index + 1) of its parent branch page \(pgid) (pages shared between branches?)")
                }
            }
        }
        return child
    }

    /// Moves the child just appended to its place by separator, so `children` stays in key
    /// order as pages are materialised in any order and spill rarely has to sort them.
    private func placeNewestChild() {
        let last = children.count - 1
        let key = children[last].key
        let prefix = key.orderPrefix
        var lo = 0
        var hi = last
        while lo < hi {
            let mid = (lo + hi) >> 1
            if children[mid].key.compare(key, otherPrefix: prefix) < 0 { lo = mid + 1 } else { hi = mid }
        }
        if lo < last {
            let child = children.removeLast()
            children.insert(child, at: lo)
        }
    }

    func childIndex(_ child: Node) -> Int { search(child.key).index }

    func nextSibling() throws(BoltError) -> Node? {
        guard let parent else { return nil }
        let index = parent.childIndex(self)
        if index >= parent.inodes.count - 1 { return nil }
        return try parent.childAt(index + 1)
    }

    func prevSibling() throws(BoltError) -> Node? {
        guard let parent else { return nil }
        let index = parent.childIndex(self)
        if index == 0 { return nil }
        return try parent.childAt(index - 1)
    }

    /// Inserts or replaces the inode filed under `oldKey`. `hint` is where it probably is (it is
    /// used only when the key there is `oldKey`; keys are unique, so that is the element).
    func put(oldKey: ByteView, newKey: ByteView, value: ByteView, pgid: UInt64, flags: UInt32, hint: Int = -1) {
        precondition(newKey.count > 0, "put: zero-length inode key")
        materialize()
        let (index, exact) = hint >= 0 && hint < inodes.count && inodes[hint].key == oldKey ? (hint, true) : search(oldKey)
        if exact, inodes[index].key == newKey {
            // The usual refiling of a child under the same key: only the page id changes.
            inodes[index].pgid = pgid
            inodes[index].flags = flags
            inodes[index].value = value
            return
        }
        let item = INode(flags: flags, pgid: pgid, key: newKey, value: value)
        if exact {
            inodes[index] = item
        } else {
            inodes.insert(item, at: index)
            insertedSeparators += 1
        }
    }

    /// Sets leaf element `key` to `value` with `flags`, inserting it or replacing it. An image is
    /// edited in place (compacted into a fresh page when dead space is in the way); a leaf that
    /// would fill its page becomes decoded elements, split at commit.
    ///
    /// `stable` says the views live until the transaction ends (arena or map memory); otherwise
    /// they are copied into the arena when the decoded form has to keep them.
    func putLeaf(key: ByteView, value: ByteView, flags: UInt32, stable: Bool) {
        let (index, exact) = search(key)
        putLeaf(key: key, value: value, flags: flags, stable: stable, at: index, exact: exact)
    }

    /// `putLeaf` where the caller already knows the element's place: `index` from `search(key)`,
    /// `exact` when the key is there.
    func putLeaf(key: ByteView, value: ByteView, flags: UInt32, stable: Bool, at index: Int, exact: Bool) {
        precondition(key.count > 0, "putLeaf: zero-length key")
        if var image {
            // Leave the node's storage while editing, so the image is edited without a copy.
            self.image = nil
            let inserting = !exact
            // Only while the page stays below a full page: bbolt splits a leaf of exactly a
            // page, so such a leaf must go to the decoded form and split like bbolt's.
            if image.canHold(keyBytes: key.count, valueBytes: value.count, inserting: inserting) {
                if !image.fitsInGap(keyBytes: key.count, valueBytes: value.count, inserting: inserting) {
                    image = image.compacted(into: tx.pageBuffer())
                }
                if inserting {
                    image.insert(at: index, key: key, value: value, flags: flags)
                } else {
                    image.replace(at: index, key: key, value: value, flags: flags)
                }
                self.image = image
                return
            }
            self.image = image
            materialize()
        }
        let arena = tx.arena
        let k = stable ? key : (exact ? inodes[index].key : arena.copy(key.rawBuffer))
        let v = stable ? value : arena.copy(value.rawBuffer)
        let item = INode(flags: flags, pgid: 0, key: k, value: v)
        if exact { inodes[index] = item } else { inodes.insert(item, at: index) }
    }

    /// Removes the inode with `key`, if any.
    func del(_ key: ByteView) {
        let (index, exact) = search(key)
        guard exact else { return }
        if var image {
            self.image = nil
            image.remove(at: index)
            self.image = image
        } else {
            inodes.remove(at: index)
        }
        if !unbalanced {
            unbalanced = true
            bucket.unbalancedNodes.append(self)
        }
    }

    /// Fills the node from a page: a one-page leaf of a bucket with its own pages becomes an
    /// image, anything else decoded elements.
    func read(_ page: PageView, pageID: UInt64) throws(BoltError) {
        pgid = pageID
        isLeaf = page.isLeaf
        image = nil
        if isLeaf && pageID != 0 {
            let pageSize = tx.db.pageSize
            // A multi-page leaf never becomes an image: checked here so no buffer is taken for it.
            if page.capacity == pageSize, let made = LeafImage.copy(of: page, pageSize: pageSize, into: tx.pageBuffer()) {
                inodes = []
                image = made
                key = firstKey
                return
            }
        }
        let n = page.count
        inodes.removeAll(keepingCapacity: true)
        inodes.reserveCapacity(n)
        if isLeaf {
            for i in 0..<n {
                inodes.append(INode(flags: page.leafFlags(i), pgid: 0,
                                    key: try page.leafKey(i, pageID: pageID), value: try page.leafValue(i, pageID: pageID)))
            }
        } else {
            // Branches are read whole on every write path: built in place, one element at a time.
            var failure: BoltError?
            inodes = [INode](unsafeUninitializedCapacity: n) { buffer, initialized in
                guard let out = buffer.baseAddress else { return }
                for i in 0..<n {
                    let key: ByteView
                    do throws(BoltError) { key = try page.branchKey(i, pageID: pageID) } catch { failure = error; return }
                    (out + i).initialize(to: INode(flags: 0, pgid: page.branchChild(i), key: key, value: .empty))
                    initialized = i + 1
                }
            }
            if let failure { throw failure }
        }
        key = inodes.first?.key ?? .empty
    }

    /// Serialises into a zeroed page buffer of at least `size()` bytes.
    func write(into buffer: UnsafeMutableRawPointer, pageID: UInt64, overflow: UInt32) {
        if image != nil {
            PageWriter(base: buffer).writeElements(id: pageID, isLeaf: true, count: count, overflow: overflow) { i in
                (self.flags(at: i), 0, self.key(at: i), self.value(at: i))
            }
            return
        }
        if !isLeaf {
            inodes.withUnsafeBufferPointer { PageWriter(base: buffer).writeBranch(id: pageID, elements: $0, overflow: overflow) }
            return
        }
        let inodes = self.inodes
        PageWriter(base: buffer).writeElements(id: pageID, isLeaf: true, count: inodes.count, overflow: overflow) { i in
            (inodes[i].flags, inodes[i].pgid, inodes[i].key, inodes[i].value)
        }
    }

    // MARK: Split

    /// Splits into nodes that each fit the fill threshold (bbolt's rule: cut before element i
    /// once i >= 2 and the page would pass pageSize × fillPercent, keeping at least 3 elements for
    /// the rest; a node of 4 or fewer elements, or smaller than a page, is not split).
    /// Split points are found first and each piece copied once, so a huge node splits in linear time.
    func split(pageSize: Int) -> [Node] {
        // An image is always smaller than a page.
        if image != nil { return [self] }
        let fill = min(max(bucket.fillPercent, 0.1), 1.0)
        let threshold = Int(Double(pageSize) * fill)
        // Cut points, applying bbolt's splitTwo rule repeatedly to the remainder.
        var cuts: [Int] = []
        var start = 0
        while true {
            let remaining = inodes.count - start
            if remaining <= 4 || sizeLessThan(pageSize, from: start) { break }
            var size = PageLayout.headerSize
            var index = 0
            for i in 0..<(remaining - 2) {
                index = i
                let item = inodes[start + i]
                let elementSize = PageLayout.elementBytes(key: item.key.count, value: item.value.count)
                if i >= 2 && size + elementSize > threshold { break }
                size += elementSize
            }
            start += index
            cuts.append(start)
        }
        guard !cuts.isEmpty else { return [self] }
        if parent == nil {
            let newParent = Node.make(bucket: bucket, isLeaf: false, parent: nil)
            newParent.children = [self]
            parent = newParent
        }
        var nodes: [Node] = [self]
        let all = inodes
        for (n, cut) in cuts.enumerated() {
            let end = n + 1 < cuts.count ? cuts[n + 1] : all.count
            let next = Node.make(bucket: bucket, isLeaf: isLeaf, parent: parent)
            next.inodes = Array(all[cut..<end])
            parent!.children.append(next)
            nodes.append(next)
            tx.stats.split += 1
        }
        inodes = Array(all[0..<cuts[0]])
        return nodes
    }

    /// Whether the elements from `start` on serialise to less than `limit` bytes.
    private func sizeLessThan(_ limit: Int, from start: Int) -> Bool {
        var sz = PageLayout.headerSize
        for i in start..<inodes.count {
            let item = inodes[i]
            sz += PageLayout.elementBytes(key: item.key.count, value: item.value.count)
            if sz >= limit { return false }
        }
        return true
    }

    // MARK: Spill

    /// Writes this node and its children to newly allocated dirty pages, splitting as needed,
    /// and frees the pages they came from.
    func spill() throws(BoltError) {
        if spilled { return }
        let tx = bucket.liveTx
        if !isSortedByFirstKey(children) { children.sort { $0.firstKey < $1.firstKey } }
        insertedSeparators = 0
        var i = 0
        while i < children.count {
            try children[i].spill()
            i += 1
        }
        children = []
        let pageSize = tx.db.pageSize
        // An image never splits, and most nodes need no split: those are written without
        // building the list of pieces.
        if image != nil || !needsSplit(pageSize: pageSize) {
            try spillPiece(pageSize: pageSize)
        } else {
            for node in split(pageSize: pageSize) { try node.spillPiece(pageSize: pageSize) }
        }
        // A split of the root created a new parent: spill it too.
        if let parent, parent.pgid == 0 {
            children = []
            try parent.spill()
        }
    }

    /// Writes this node (already cut to size) to a new page, freeing the one it came from.
    private func spillPiece(pageSize: Int) throws(BoltError) {
        if pgid > 0 {
            // An image was copied from a one-page leaf: its page has no overflow to look up.
            if image != nil { try tx.freeSinglePage(pgid) } else { try tx.freePage(pgid) }
            pgid = 0
        }
        if var image {
            // Written as it stands, compacted first if it carries dead space. The commit is
            // under way, so no view into the old buffer is read again.
            if image.dead > 0 { image = image.compacted(into: tx.pageBuffer()) }
            let id = try tx.register(image.base, pages: 1)
            image.finish(id: id)
            self.image = image
            pgid = id
            spilled = true
            try fileInParent(id: id)
            tx.stats.spill += 1
            return
        }
        let size = size()
        let (id, buffer, overflow) = try tx.allocate(pages: (size + pageSize - 1) / pageSize)
        pgid = id
        write(into: buffer, pageID: id, overflow: overflow)
        // Pages come from the arena unzeroed: zero what follows the data, as bbolt does.
        let span = (Int(overflow) + 1) * pageSize
        if size < span { (buffer + size).initializeMemory(as: UInt8.self, repeating: 0, count: span - size) }
        spilled = true
        try fileInParent(id: id)
        tx.stats.spill += 1
    }

    /// Whether `split` would cut this node (bbolt's rule: more than 4 elements and a page or more).
    private func needsSplit(pageSize: Int) -> Bool {
        inodes.count > 4 && !sizeLessThan(pageSize, from: 0)
    }

    /// Points the parent's element for this node at its new page `id`.
    private func fileInParent(id: UInt64) throws(BoltError) {
        guard let parent else { return }
        let first = firstKey
        guard first.count > 0 else {
            throw BoltError.corruptPage(id: id, reason: "a node's first key is empty: the page it came from is damaged")
        }
        let oldKey = key.count > 0 ? key : first
        parent.put(oldKey: oldKey, newKey: first, value: .empty, pgid: id, flags: 0,
                   hint: indexHint >= 0 ? indexHint + parent.insertedSeparators : -1)
        key = first
    }

    private func isSortedByFirstKey(_ nodes: [Node]) -> Bool {
        var i = 1
        while i < nodes.count {
            if !(nodes[i - 1].firstKey < nodes[i].firstKey) { return false }
            i += 1
        }
        return true
    }

    // MARK: Rebalance

    /// Merges an underfull node into a sibling (bbolt 1.3.x rule: below a quarter page, or
    /// fewer than the minimum keys).
    func rebalance() throws(BoltError) {
        guard unbalanced else { return }
        unbalanced = false
        tx.stats.rebalance += 1
        let threshold = tx.db.pageSize / 4
        if size() > threshold && count > minKeys { return }
        // Merging moves elements between nodes: decoded form from here on.
        materialize()

        guard let parent else {
            // Root branch with a single child: collapse it.
            if !isLeaf && inodes.count == 1 {
                let child = try bucket.node(inodes[0].pgid, parent: self)
                child.materialize()
                isLeaf = child.isLeaf
                inodes = child.inodes
                children = child.children
                for item in inodes {
                    if let grandchild = bucket.nodes[item.pgid] { grandchild.parent = self }
                }
                child.parent = nil
                bucket.nodes[child.pgid] = nil
                try child.free()
            }
            return
        }

        if count == 0 {
            parent.del(key)
            parent.removeChild(self)
            bucket.nodes[pgid] = nil
            try free()
            try parent.rebalance()
            return
        }

        guard parent.inodes.count > 1 else {
            throw BoltError.corruptPage(id: parent.pgid, reason: "a branch holds a single child below the root: the tree is damaged")
        }
        if parent.childIndex(self) == 0 {
            guard let target = try nextSibling() else { return }
            target.materialize()
            for item in target.inodes {
                if let child = bucket.nodes[item.pgid] {
                    child.parent?.removeChild(child)
                    child.parent = self
                    children.append(child)
                }
            }
            inodes += target.inodes
            parent.del(target.key)
            parent.removeChild(target)
            bucket.nodes[target.pgid] = nil
            try target.free()
        } else {
            guard let target = try prevSibling() else { return }
            target.materialize()
            for item in inodes {
                if let child = bucket.nodes[item.pgid] {
                    child.parent?.removeChild(child)
                    child.parent = target
                    target.children.append(child)
                }
            }
            target.inodes += inodes
            parent.del(key)
            parent.removeChild(self)
            bucket.nodes[pgid] = nil
            try free()
        }
        try parent.rebalance()
    }

    func removeChild(_ target: Node) {
        if let i = children.firstIndex(where: { $0 === target }) { children.remove(at: i) }
    }

    /// Returns this node's page to the freelist.
    func free() throws(BoltError) {
        if pgid != 0 {
            try tx.freePage(pgid)
            pgid = 0
        }
    }
}
