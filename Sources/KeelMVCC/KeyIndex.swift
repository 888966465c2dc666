/// One key's history in the index, with etcd's `keyIndex` semantics: generations of revisions;
/// a tombstone ends the current generation (its revision is the generation's last) and starts
/// an empty one.
public final class KeyIndex {
    /// One life of a key, from its creation to its tombstone.
    struct Generation {
        /// Puts in this generation (its version count).
        var version: Int64 = 0
        var created = Revision(main: 0)
        var revisions: [Revision] = []
        var isEmpty: Bool { revisions.isEmpty }
    }

    public let key: [UInt8]
    /// The last revision that changed the key.
    private(set) var modified = Revision(main: 0)
    /// The lease the key's live value is attached to (0: none), kept here as etcd's lessor keeps
    /// its item map, so writes need not read the previous value to detach it.
    var lease: Int64 = 0
    var generations: [Generation] = []

    init(key: [UInt8]) { self.key = key }

    /// No live or historical revision left.
    var isEmpty: Bool { generations.isEmpty || (generations.count == 1 && generations[0].isEmpty) }

    /// Records a put at `revision` (greater than every earlier one).
    func put(_ revision: Revision) {
        if generations.isEmpty { generations.append(Generation()) }
        let g = generations.count - 1
        if generations[g].revisions.isEmpty { generations[g].created = revision }
        generations[g].revisions.append(revision)
        generations[g].version += 1
        modified = revision
    }

    /// Starts the history from a stored value (restore at open): one generation created at
    /// `created`, last modified at `modified`, at `version`.
    func restore(created: Revision, modified: Revision, version: Int64) {
        self.modified = modified
        generations = [Generation(version: version, created: created, revisions: [modified])]
    }

    /// Records a delete at `revision`. False (and nothing changes) when the key is not live.
    @discardableResult
    func tombstone(_ revision: Revision) -> Bool {
        guard !isEmpty, let last = generations.last, !last.isEmpty else { return false }
        put(revision)
        generations.append(Generation())
        return true
    }

    /// The key's state at main revision `atRev`: its last modification, creation and version
    /// then; nil when it did not exist then.
    func get(atRev: Int64) -> (modified: Revision, created: Revision, version: Int64)? {
        guard let gi = findGeneration(atRev) else { return nil }
        let g = generations[gi]
        guard let n = g.revisions.lastIndex(where: { $0.main <= atRev }) else { return nil }
        return (g.revisions[n], g.created, g.version - Int64(g.revisions.count - n - 1))
    }

    /// The generation alive at `rev`, if any.
    private func findGeneration(_ rev: Int64) -> Int? {
        let last = generations.count - 1
        var cg = last
        while cg >= 0 {
            let g = generations[cg]
            if g.revisions.isEmpty { cg -= 1; continue }
            if cg != last, g.revisions[g.revisions.count - 1].main <= rev { return nil }
            if g.revisions[0].main <= rev { return cg }
            cg -= 1
        }
        return nil
    }

    /// Revisions with main ≥ `rev`, only the last of each main revision (for watch replay).
    func since(_ rev: Int64) -> [Revision] {
        let since = Revision(main: rev)
        var gi = generations.count - 1
        while gi > 0 {
            let g = generations[gi]
            if !g.isEmpty && since > g.created { break }
            gi -= 1
        }
        var out: [Revision] = []
        var last: Int64 = 0
        while gi < generations.count {
            for r in generations[gi].revisions where !(since > r) {
                if r.main == last && !out.isEmpty {
                    out[out.count - 1] = r
                    continue
                }
                out.append(r)
                last = r.main
            }
            gi += 1
        }
        return out
    }

    /// Compaction at `atRev`: keeps, per generation, the newest revision ≤ atRev (dropping a
    /// tombstone that ends a generation, with the generations before it), and adds the kept
    /// revisions to `available`.
    func compact(atRev: Int64, available: inout Set<Revision>) {
        guard !generations.isEmpty else { return }
        var (genIndex, revIndex) = doCompact(atRev: atRev, available: &available)
        if !generations[genIndex].isEmpty {
            if let revIndex { generations[genIndex].revisions.removeFirst(revIndex) }
            if generations[genIndex].revisions.count == 1 && genIndex != generations.count - 1 {
                available.remove(generations[genIndex].revisions[0])
                genIndex += 1
            }
        }
        generations.removeFirst(genIndex)
    }

    /// What `compact` would keep, without changing anything (for hashing at a revision).
    func keep(atRev: Int64, available: inout Set<Revision>) {
        guard !isEmpty else { return }
        let (genIndex, revIndex) = doCompact(atRev: atRev, available: &available)
        let g = generations[genIndex]
        if !g.isEmpty, revIndex == g.revisions.count - 1, genIndex != generations.count - 1 {
            available.remove(g.revisions[revIndex!])
        }
    }

    private func doCompact(atRev: Int64, available: inout Set<Revision>) -> (Int, Int?) {
        var genIndex = 0
        while genIndex < generations.count - 1 {
            let g = generations[genIndex]
            if let tomb = g.revisions.last?.main, tomb > atRev { break }
            genIndex += 1
        }
        let revs = generations[genIndex].revisions
        var i = revs.count - 1
        while i >= 0 {
            if revs[i].main <= atRev {
                available.insert(revs[i])
                return (genIndex, i)
            }
            i -= 1
        }
        return (genIndex, nil)
    }
}
