/// A collection of key/value pairs and nested buckets, stored as a B+tree (or inline inside its
/// parent's leaf while small).
///
/// A `Bucket` belongs to one transaction and is valid only until that transaction ends.
public final class Bucket {
    unowned let tx: Tx
    /// The same transaction without a reference count: only for internal paths reached after a
    /// public entry point checked the transaction through `tx` (an open transaction stays alive
    /// for the whole call), where the checked reference would cost a retain and release per use.
    unowned(unsafe) let liveTx: Tx
    /// Root page id; 0 for an inline bucket.
    var root: UInt64
    /// The bucket's sequence number.
    public internal(set) var sequence: UInt64
    /// The inline page, for an inline bucket.
    var inlinePage: PageView?
    /// The materialised root node, once written to.
    @exclusivity(unchecked) var rootNode: Node?
    /// The most nodes a node table is sized for before its first insert.
    static let maxPresizedNodes = 1024
    /// Nodes materialised in this transaction, by page id.
    @exclusivity(unchecked) var nodes = NodeTable()
    /// Nodes that lost an element in this transaction: the only ones commit may need to merge.
    @exclusivity(unchecked) var unbalancedNodes: [Node] = []
    /// Child buckets opened in this (write) transaction.
    var buckets: [ByteView: Bucket] = [:]
    /// A cursor reused by put, so a put allocates nothing but the key and value copies.
    /// Dropped when the transaction ends (it holds the bucket and the transaction strongly).
    private var scratch: Cursor?
    var scratchCursor: Cursor {
        if let scratch { return scratch }
        let c = Cursor(bucket: self)
        scratch = c
        tx.trackScratch(self)
        return c
    }

    func dropScratchCursor() { scratch = nil }
    /// The rightmost leaf of this bucket's tree, once a put landed in it (write transactions):
    /// a put of a key above its last key goes straight to it, without a seek from the root, so
    /// loads of increasing keys append. Splits and merges happen only at commit, so the leaf
    /// stays the rightmost one for the rest of the transaction.
    @exclusivity(unchecked) var rightmostLeaf: Node?
    /// How full split pages are left (0.1...1.0). Not stored in the file; set per transaction.
    /// Use 1.0 for append-only (sequential) loads.
    public var fillPercent: Double = 0.5

    init(tx: Tx, root: UInt64, sequence: UInt64) {
        self.tx = tx
        liveTx = tx
        self.root = root
        self.sequence = sequence
    }

    /// Whether this bucket may be written.
    public var writable: Bool { tx.writable }

    /// A new cursor over this bucket.
    public func cursor() -> Cursor {
        tx.stats.cursorCount += 1
        return Cursor(bucket: self)
    }

    // MARK: Nested buckets

    /// The nested bucket `name`, or nil.
    public func bucket(_ name: some Collection<UInt8>) throws(BoltError) -> Bucket? {
        return try withView(Array(name)) { view throws(BoltError) in try bucket(view: view) }
    }

    func bucket(view name: ByteView) throws(BoltError) -> Bucket? {
        try tx.checkOpen()
        if let cached = buckets[name] { return cached }
        let c = cursor()
        try c.seekRaw(name)
        guard let entry = try c.currentRaw(), entry.key == name, entry.flags & bucketLeafFlag != 0 else { return nil }
        let child = try openBucket(entry.value)
        if tx.writable {
            buckets[tx.arena.copy(UnsafeRawBufferPointer(start: name.base, count: name.count))] = child
        }
        return child
    }

    private func openBucket(_ value: ByteView) throws(BoltError) -> Bucket {
        let (header, inline) = try BucketHeader.decode(value, at: root)
        let child = Bucket(tx: tx, root: header.root, sequence: header.sequence)
        if let page = inline {
            guard page.isLeaf else {
                throw BoltError.corruptPage(id: self.root, reason: "inline bucket page has flags 0x\(String(page.flags.rawValue, radix: 16)), expected leaf")
            }
            try page.validateElements(pageID: self.root)
            child.inlinePage = page
        }
        return child
    }

    /// Creates the nested bucket `name`.
    /// - Throws: `.bucketExists`, `.incompatibleValue` when a plain key has that name,
    ///   `.bucketNameRequired`, `.keyTooLarge`, `.readOnly`.
    @discardableResult
    public func createBucket(_ name: some Collection<UInt8>) throws(BoltError) -> Bucket {
        try tx.checkWritable()
        let bytes = Array(name)
        if bytes.isEmpty { throw BoltError.bucketNameRequired }
        if bytes.count > PageLayout.maxKeySize { throw BoltError.keyTooLarge(size: bytes.count) }
        let key = bytes.withUnsafeBytes { tx.arena.copy($0) }
        let c = cursor()
        try c.seekRaw(key)
        if let entry = try c.currentRaw(), entry.key == key {
            throw entry.flags & bucketLeafFlag != 0 ? BoltError.bucketExists : BoltError.incompatibleValue
        }
        // An empty inline bucket: header (root 0, sequence 0) + an empty leaf page header.
        let valueBase = tx.arena.allocate(PageLayout.bucketHeaderSize + PageLayout.headerSize)
        valueBase.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        PageWriter(base: valueBase + PageLayout.bucketHeaderSize).setHeader(id: 0, flags: .leaf, count: 0, overflow: 0)
        let value = ByteView(base: UnsafeRawPointer(valueBase), count: 32)
        try c.node().putLeaf(key: key, value: value, flags: bucketLeafFlag, stable: true)
        // Not finding it again means the page's keys were out of order: a damaged file.
        guard let child = try bucket(view: key) else {
            throw BoltError.corruptPage(id: root, reason: "bucket \(key) cannot be found right after it was created: keys are out of order")
        }
        return child
    }

    /// Creates the nested bucket `name` unless it exists; returns it either way.
    @discardableResult
    public func createBucketIfNotExists(_ name: some Collection<UInt8>) throws(BoltError) -> Bucket {
        if let existing = try bucket(name) { return existing }
        return try createBucket(name)
    }

    /// Deletes the nested bucket `name` and everything in it, freeing its pages.
    public func deleteBucket(_ name: some Collection<UInt8>) throws(BoltError) {
        try tx.checkWritable()
        let bytes = Array(name)
        let key = bytes.withUnsafeBytes { tx.arena.copy($0) }
        let c = cursor()
        try c.seekRaw(key)
        guard let entry = try c.currentRaw(), entry.key == key else { throw BoltError.bucketNotFound }
        guard entry.flags & bucketLeafFlag != 0 else { throw BoltError.incompatibleValue }
        guard let child = try bucket(view: key) else { throw BoltError.bucketNotFound }
        // Delete its own nested buckets first, so their pages are freed too.
        var names: [[UInt8]] = []
        try child.forEach { k, v throws(BoltError) in if v == nil { names.append(k.bytes) } }
        for n in names { try child.deleteBucket(n) }
        buckets[key] = nil
        child.rightmostLeaf = nil
        child.unbalancedNodes = []
        child.nodes = NodeTable()
        child.rootNode = nil
        try child.free()
        try c.node().del(key)
    }

    // MARK: Keys

    /// The value of `key`, or nil when absent or when `key` names a nested bucket.
    public func get(_ key: some Collection<UInt8>) throws(BoltError) -> ByteView? {
        return try withView(Array(key)) { view throws(BoltError) in try get(view) }
    }

    /// The value of `key` (bytes only needed during the call), or nil.
    public func get(_ key: UnsafeRawBufferPointer) throws(BoltError) -> ByteView? {
        try get(ByteView(base: key.baseAddress, count: key.count))
    }

    /// The value of `key` (a view only needed during the call), or nil.
    public func get(_ key: ByteView) throws(BoltError) -> ByteView? {
        // One strong reference for the whole lookup instead of an unowned check per page.
        let tx = self.tx
        try tx.checkOpen()
        guard let entry = try lookup(key, tx: tx), entry.flags & bucketLeafFlag == 0 else { return nil }
        return entry.value.stamped(tx.lifetime)
    }

    /// The entry whose key equals `key`, found without a cursor (no allocation).
    func lookup(_ key: ByteView) throws(BoltError) -> (value: ByteView, flags: UInt32)? {
        try lookup(key, tx: tx)
    }

    private func lookup(_ key: ByteView, tx: Tx) throws(BoltError) -> (value: ByteView, flags: UInt32)? {
        var pgid = root
        for _ in 0..<64 {
            let (page, node) = try pageNode(pgid, tx: tx)
            if let node {
                let (index, exact) = node.search(key)
                if node.isLeaf {
                    guard exact else { return nil }
                    return (node.value(at: index), node.flags(at: index))
                }
                guard !node.inodes.isEmpty else { return nil }
                pgid = node.inodes[exact || index == 0 ? index : index - 1].pgid
                continue
            }
            let p = page!
            let (index, exact) = try p.search(key, pageID: pgid)
            if p.isLeaf {
                guard exact else { return nil }
                return (try p.leafValue(index, pageID: pgid), p.leafFlags(index))
            }
            pgid = p.branchChild(exact || index == 0 ? index : index - 1)
        }
        throw BoltError.corruptPage(id: pgid, reason: "tree deeper than 64 levels (a page cycle?)")
    }

    /// Sets `key` to `value`. An empty value is allowed and reads back empty.
    /// - Throws: `.keyRequired`, `.keyTooLarge`, `.valueTooLarge`, `.incompatibleValue` when
    ///   `key` names a nested bucket, `.readOnly`.
    public func put(_ key: some Collection<UInt8>, _ value: some Collection<UInt8>) throws(BoltError) {
        let v = Array(value)
        try withView(Array(key)) { k throws(BoltError) in
            try withView(v) { vv throws(BoltError) in
                try put(UnsafeRawBufferPointer(start: k.base, count: k.count), UnsafeRawBufferPointer(start: vv.base, count: vv.count))
            }
        }
    }

    /// Sets `key` to `value`, copying both.
    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(BoltError) {
        try tx.checkWritable()
        if key.count == 0 { throw BoltError.keyRequired }
        if key.count > PageLayout.maxKeySize { throw BoltError.keyTooLarge(size: key.count) }
        if value.count > PageLayout.maxValueSize { throw BoltError.valueTooLarge(size: value.count) }
        let newKey = ByteView(base: key.baseAddress, count: key.count)
        let newValue = ByteView(base: value.baseAddress, count: value.count)
        // The node copies the bytes: into the page being edited in place, or into the arena.
        if let leaf = rightmostLeaf, leaf.count > 0, leaf.key(at: leaf.count - 1).compare(newKey) < 0, leaf.key.compare(newKey) <= 0 {
            leaf.putLeaf(key: newKey, value: newValue, flags: 0, stable: false, at: leaf.count, exact: false)
            return
        }
        let (leaf, index, exact, rightEdge) = try writableLeaf(newKey)
        if exact, leaf.flags(at: index) & bucketLeafFlag != 0 { throw BoltError.incompatibleValue }
        leaf.putLeaf(key: newKey, value: newValue, flags: 0, stable: false, at: index, exact: exact)
        if rightmostLeaf == nil, rightEdge { rightmostLeaf = leaf }
    }

    /// The leaf `key` belongs in, with the path to it from the root materialised (the nodes a
    /// put edits), and the key's place in it: the index of the first key at or after `key`, and
    /// whether that key is `key`. `rightEdge` when every branch on the way was at its last
    /// child (the leaf is the tree's rightmost).
    ///
    /// One descent through the nodes (where a cursor seek through the pages followed by a second
    /// walk to materialise them would take two), choosing children as a cursor does. A child read
    /// from the file is checked to start inside its parent's range for it (`Node.childAt`), and
    /// the depth is bounded, so a damaged file gives an error naming the page, not a loop.
    func writableLeaf(_ key: ByteView) throws(BoltError) -> (leaf: Node, index: Int, exact: Bool, rightEdge: Bool) {
        var n = try node(root, parent: nil)
        var rightEdge = true
        var depth = 0
        while !n.isLeaf {
            depth += 1
            if depth > 64 { throw BoltError.corruptPage(id: n.pgid, reason: "tree deeper than 64 levels (a page cycle?)") }
            let count = n.count
            if count == 0 { throw BoltError.corruptPage(id: n.pgid, reason: "branch page with no elements") }
            let (i, exact) = n.search(key)
            let index = exact ? i : max(i - 1, 0)
            if index != count - 1 { rightEdge = false }
            n = try n.childAt(index)
        }
        let (index, exact) = n.search(key)
        return (n, index, exact, rightEdge)
    }

    /// Removes `key`. No error when it is absent.
    /// - Throws: `.incompatibleValue` when `key` names a nested bucket, `.readOnly`.
    public func delete(_ key: some Collection<UInt8>) throws(BoltError) {
        try withView(Array(key)) { view throws(BoltError) in
            try delete(UnsafeRawBufferPointer(start: view.base, count: view.count))
        }
    }

    /// Removes `key` (bytes only needed during the call), allocating nothing.
    public func delete(_ key: UnsafeRawBufferPointer) throws(BoltError) {
        try tx.checkWritable()
        let view = ByteView(base: key.baseAddress, count: key.count)
        let c = scratchCursor
        try c.seekRaw(view)
        guard let entry = try c.currentRaw(), entry.key == view else { return }
        if entry.flags & bucketLeafFlag != 0 { throw BoltError.incompatibleValue }
        try c.node().del(view)
    }

    /// Sets the sequence number.
    public func setSequence(_ value: UInt64) throws(BoltError) {
        try tx.checkWritable()
        if rootNode == nil { _ = try node(root, parent: nil) }
        sequence = value
    }

    /// Increments the sequence and returns the new value.
    public func nextSequence() throws(BoltError) -> UInt64 {
        try tx.checkWritable()
        if rootNode == nil { _ = try node(root, parent: nil) }
        sequence += 1
        return sequence
    }

    /// Calls `body` for every key in order; the value is nil for nested buckets.
    public func forEach(_ body: (ByteView, ByteView?) throws(BoltError) -> Void) throws(BoltError) {
        let c = cursor()
        var entry = try c.first()
        while let e = entry {
            try body(e.key, e.value)
            entry = try c.next()
        }
    }

    // MARK: Pages and nodes

    /// The page or (when materialised) the node for `pgid`.
    func pageNode(_ pgid: UInt64) throws(BoltError) -> (PageView?, Node?) {
        try pageNode(pgid, tx: tx)
    }

    /// `pageNode` with the caller's strong reference to the transaction (hot paths).
    @inline(__always)
    func pageNode(_ pgid: UInt64, tx: Tx) throws(BoltError) -> (PageView?, Node?) {
        if root == 0 {
            precondition(pgid == 0, "inline bucket non-zero page access: \(pgid)")
            if let rootNode { return (nil, rootNode) }
            return (inlinePage, nil)
        }
        if !nodes.isEmpty, let node = nodes[pgid] { return (nil, node) }
        return (try tx.page(pgid), nil)
    }

    /// Materialises the node for `pgid` (cached per transaction).
    func node(_ pgid: UInt64, parent: Node?) throws(BoltError) -> Node {
        if let existing = nodes[pgid] { return existing }
        // Sized for as many nodes as the last writer made (up to `maxPresizedNodes`), rather
        // than regrown as they come: one huge transaction must not make every bucket of the
        // next one start with a huge table.
        let tx = liveTx
        if nodes.isEmpty { nodes.reserve(min(tx.db.lastWriterNodeCount, Self.maxPresizedNodes)) }
        let n = Node.make(bucket: self, isLeaf: false, parent: parent)
        if let parent { parent.children.append(n) } else { rootNode = n }
        if root == 0, let inlinePage {
            try n.read(inlinePage, pageID: 0)
        } else if root == 0 {
            n.isLeaf = true
        } else {
            try n.read(try tx.page(pgid), pageID: pgid)
        }
        nodes[pgid] = n
        tx.stats.nodeCount += 1
        return n
    }

    /// Frees every page of this bucket's tree.
    func free() throws(BoltError) {
        if root == 0 { return }
        try forEachPageNode { page, id, node throws(BoltError) in
            if page != nil { try tx.freePage(id) } else { try node?.free() }
        }
        root = 0
    }

    /// Visits every page (or node, when materialised) of this bucket's tree, depth first.
    func forEachPageNode(_ body: (PageView?, UInt64, Node?) throws(BoltError) -> Void) throws(BoltError) {
        if let inlinePage, root == 0 { try body(inlinePage, 0, nil); return }
        try visitPageNode(root, depth: 0, body)
    }

    private func visitPageNode(_ pgid: UInt64, depth: Int, _ body: (PageView?, UInt64, Node?) throws(BoltError) -> Void) throws(BoltError) {
        if depth > 64 { throw BoltError.corruptPage(id: pgid, reason: "tree deeper than 64 levels (a page cycle?)") }
        let (page, node) = try pageNode(pgid)
        try body(page, pgid, node)
        if let page, page.isBranch {
            for i in 0..<page.count { try visitPageNode(page.branchChild(i), depth: depth + 1, body) }
        } else if let node, !node.isLeaf {
            for item in node.inodes { try visitPageNode(item.pgid, depth: depth + 1, body) }
        }
    }

    // MARK: Commit phases

    /// Merges underfull nodes, in this bucket and its children.
    func rebalance() throws(BoltError) {
        if !unbalancedNodes.isEmpty {
            // In page-id order; a node merged away meanwhile (no longer cached) is skipped.
            let candidates = unbalancedNodes.sorted { $0.pgid < $1.pgid }
            unbalancedNodes = []
            for n in candidates where n.unbalanced && nodes[n.pgid] === n { try n.rebalance() }
        }
        for name in buckets.keys.sorted() { try buckets[name]!.rebalance() }
    }

    /// Writes dirty nodes of this bucket and its children to new pages.
    func spill() throws(BoltError) {
        for name in buckets.keys.sorted() {
            let child = buckets[name]!
            let value: ByteView
            if child.inlineable() {
                try child.free()
                value = child.writeInline()
            } else {
                try child.spill()
                let header = tx.arena.allocate(PageLayout.bucketHeaderSize)
                BucketHeader(root: child.root, sequence: child.sequence).write(into: header)
                value = ByteView(base: UnsafeRawPointer(header), count: PageLayout.bucketHeaderSize)
            }
            if child.rootNode == nil { continue }
            let c = cursor()
            try c.seekRaw(name)
            guard let entry = try c.currentRaw(), entry.key == name, entry.flags & bucketLeafFlag != 0 else {
                throw BoltError.corruptPage(id: root, reason: "bucket \(name) vanished from its parent during commit")
            }
            try c.node().putLeaf(key: name, value: value, flags: bucketLeafFlag, stable: true)
        }
        guard let rootNode else { return }
        try rootNode.spill()
        let newRoot = rootNode.root()
        self.rootNode = newRoot
        guard newRoot.pgid < tx.meta.pgid else {
            preconditionFailure("pgid \(newRoot.pgid) above high water mark \(tx.meta.pgid)")
        }
        root = newRoot.pgid
    }

    /// Whether this bucket fits inline in its parent: one leaf, no nested buckets, a quarter page.
    func inlineable() -> Bool {
        guard let n = rootNode, n.isLeaf else { return false }
        var size = PageLayout.headerSize
        let limit = tx.db.pageSize / 4
        for i in 0..<n.count {
            size += PageLayout.elementBytes(key: n.key(at: i).count, value: n.value(at: i).count)
            if n.flags(at: i) & bucketLeafFlag != 0 { return false }
            if size > limit { return false }
        }
        return true
    }

    /// The inline value: bucket header (root 0) followed by the root node as a page.
    private func writeInline() -> ByteView {
        let n = rootNode!
        let size = PageLayout.bucketHeaderSize + n.size()
        let buffer = tx.arena.allocate(size)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        BucketHeader(root: 0, sequence: sequence).write(into: buffer)
        n.write(into: buffer + PageLayout.bucketHeaderSize, pageID: 0, overflow: 0)
        return ByteView(base: UnsafeRawPointer(buffer), count: size)
    }
}
