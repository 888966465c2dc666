/// Iterates a bucket's keys in byte order over a stable snapshot: a read transaction's view never
/// changes, and a write transaction's cursor sees that transaction's own changes.
///
/// Keys and values returned are valid until the transaction ends. A nested bucket shows up with a
/// `nil` value. Valid only inside its transaction, on the thread using it.
public final class Cursor {
    struct ElementRef {
        var page: PageView?
        var pageID: UInt64
        var node: Node?
        var index: Int

        var count: Int { node.map { $0.count } ?? page!.count }
        var isLeaf: Bool { node.map { $0.isLeaf } ?? page!.isLeaf }
    }

    /// The bucket this cursor walks.
    public let bucket: Bucket
    /// Held strongly so hot paths skip the unowned check; a cursor never outlives its use.
    let tx: Tx
    @exclusivity(unchecked) var stack: [ElementRef] = []

    init(bucket: Bucket) {
        self.bucket = bucket
        tx = bucket.tx
        stack.reserveCapacity(8)
    }

    /// An entry: a key and its value, or nil value for a nested bucket.
    public typealias Entry = (key: ByteView, value: ByteView?)

    /// Moves to the first key. Nil when the bucket is empty.
    public func first() throws(BoltError) -> Entry? {
        try tx.checkOpen()
        stack.removeAll(keepingCapacity: true)
        try push(bucket.root)
        try descendFirst()
        if let top = stack.last, top.count == 0 { return try next() }
        return try current()
    }

    /// Moves to the last key. Nil when the bucket is empty.
    public func last() throws(BoltError) -> Entry? {
        try tx.checkOpen()
        stack.removeAll(keepingCapacity: true)
        try push(bucket.root)
        stack[stack.count - 1].index = max(stack[stack.count - 1].count - 1, 0)
        try descendLast()
        if let top = stack.last, top.count == 0 { return try prev() }
        return try current()
    }

    /// Moves to the next key. Nil at the end.
    public func next() throws(BoltError) -> Entry? {
        try tx.checkOpen()
        // Fast path: the next element of the same leaf.
        let top = stack.count - 1
        if top >= 0 {
            let index = stack[top].index + 1
            if index < stack[top].count {
                stack[top].index = index
                return try current()
            }
        }
        while true {
            var i = stack.count - 1
            while i >= 0 {
                if stack[i].index < stack[i].count - 1 {
                    stack[i].index += 1
                    break
                }
                i -= 1
            }
            if i < 0 { return nil }
            stack.removeSubrange((i + 1)...)
            try descendFirst()
            if stack[stack.count - 1].count == 0 { continue }
            return try current()
        }
    }

    /// Moves to the previous key. Nil at the start.
    public func prev() throws(BoltError) -> Entry? {
        try tx.checkOpen()
        while true {
            var i = stack.count - 1
            while i >= 0 {
                if stack[i].index > 0 {
                    stack[i].index -= 1
                    break
                }
                i -= 1
            }
            if i < 0 { return nil }
            stack.removeSubrange((i + 1)...)
            try descendLast()
            if stack[stack.count - 1].count == 0 { continue }
            return try current()
        }
    }

    /// Moves to `key`, or to the next key after it when it is absent. Nil when no key is >= `key`.
    public func seek(_ key: some Collection<UInt8>) throws(BoltError) -> Entry? {
        return try withView(Array(key)) { view throws(BoltError) in try seek(view) }
    }

    /// Moves to `key`, or to the next key after it. The view only needs to live during the call.
    public func seek(_ key: ByteView) throws(BoltError) -> Entry? {
        try tx.checkOpen()
        try seekRaw(key)
        if let top = stack.last, top.index >= top.count { return try next() }
        return try current()
    }

    /// Deletes the key under the cursor. Deleting moves later keys left, so a loop of next() after
    /// delete skips one key; use seek again after deleting.
    public func delete() throws(BoltError) {
        try tx.checkOpen()
        guard tx.writable else { throw BoltError.readOnly }
        guard let entry = try currentRaw() else { return }
        if entry.flags & bucketLeafFlag != 0 { throw BoltError.cursorOnBucket }
        try node().del(entry.key)
    }

    // MARK: Internals

    /// Positions the stack at `key` without skipping past the end of a leaf.
    func seekRaw(_ key: ByteView) throws(BoltError) {
        stack.removeAll(keepingCapacity: true)
        var pgid = bucket.root
        while true {
            try push(pgid)
            let top = stack.count - 1
            let ref = stack[top]
            if ref.isLeaf {
                stack[top].index = try leafSearch(ref, key)
                return
            }
            let index = try branchSearch(ref, key)
            stack[top].index = index
            pgid = ref.node.map { $0.inodes[index].pgid } ?? ref.page!.branchChild(index)
        }
    }

    private func leafSearch(_ ref: ElementRef, _ key: ByteView) throws(BoltError) -> Int {
        if let node = ref.node { return node.search(key).index }
        return try ref.page!.search(key, pageID: ref.pageID).index
    }

    private func branchSearch(_ ref: ElementRef, _ key: ByteView) throws(BoltError) -> Int {
        let (index, exact) = if let node = ref.node { node.search(key) } else { try ref.page!.search(key, pageID: ref.pageID) }
        if !exact && index > 0 { return index - 1 }
        return min(index, max(ref.count - 1, 0))
    }

    private func push(_ pgid: UInt64) throws(BoltError) {
        if stack.count > 64 {
            throw BoltError.corruptPage(id: pgid, reason: "tree deeper than 64 levels (a page cycle?)")
        }
        let (page, node) = try bucket.pageNode(pgid, tx: tx)
        // A child page read through a parent page must lie in the parent's key range for it.
        if let page, let parent = stack.last, let parentPage = parent.page {
            try parentPage.checkChild(page, childID: pgid, index: parent.index, pageID: parent.pageID)
        }
        stack.append(ElementRef(page: page, pageID: pgid, node: node, index: 0))
    }

    private func childPgid(_ ref: ElementRef) -> UInt64 {
        ref.node.map { $0.inodes[ref.index].pgid } ?? ref.page!.branchChild(ref.index)
    }

    private func descendFirst() throws(BoltError) {
        while true {
            let top = stack.count - 1
            if stack[top].isLeaf || stack[top].count == 0 { return }
            try push(childPgid(stack[top]))
        }
    }

    private func descendLast() throws(BoltError) {
        while true {
            let top = stack.count - 1
            if stack[top].isLeaf || stack[top].count == 0 { return }
            try push(childPgid(stack[top]))
            stack[stack.count - 1].index = max(stack[stack.count - 1].count - 1, 0)
        }
    }

    /// The entry at the top of the stack with its flags, or nil when past the end.
    func currentRaw() throws(BoltError) -> (key: ByteView, value: ByteView, flags: UInt32)? {
        let top = stack.count - 1
        guard top >= 0 else { return nil }
        let index = stack[top].index
        if let node = stack[top].node {
            guard index < node.count else { return nil }
            return (node.key(at: index), node.value(at: index), node.flags(at: index))
        }
        let page = stack[top].page!
        guard index < page.count else { return nil }
        let pageID = stack[top].pageID
        return (try page.leafKey(index, pageID: pageID), try page.leafValue(index, pageID: pageID), page.leafFlags(index))
    }

    private func current() throws(BoltError) -> Entry? {
        guard let raw = try currentRaw() else { return nil }
        #if DEBUG
        return (raw.key.stamped(tx.lifetime), raw.flags & bucketLeafFlag != 0 ? nil : raw.value.stamped(tx.lifetime))
        #else
        return (raw.key, raw.flags & bucketLeafFlag != 0 ? nil : raw.value)
        #endif
    }

    /// Whether every branch on the cursor's path is at its last child: the leaf reached is the
    /// rightmost one of the tree.
    var isAtRightEdge: Bool {
        var i = 0
        while i < stack.count - 1 {
            if stack[i].index != stack[i].count - 1 { return false }
            i += 1
        }
        return true
    }

    /// The writable node under the cursor, materialising the path from the root.
    func node() throws(BoltError) -> Node {
        precondition(!stack.isEmpty, "cursor has no position")
        if let top = stack.last, let node = top.node, top.isLeaf { return node }
        var n: Node
        if let rootNode = stack[0].node { n = rootNode } else { n = try bucket.node(stack[0].pageID, parent: nil) }
        for ref in stack.dropLast() {
            precondition(!n.isLeaf, "expected a branch node")
            n = try n.childAt(ref.index)
        }
        precondition(n.isLeaf, "expected a leaf node")
        return n
    }
}
