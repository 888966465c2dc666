import Foundation
import KeelBackend
import KeelIO
import KeelProto

/// What a watcher wants: a key or range, from a revision, with etcd's filters.
public struct WatchRequest: Sendable {
    public var key: [UInt8]
    /// Empty: the key alone; `[0]`: every key ≥ `key`; else `[key, rangeEnd)`.
    public var rangeEnd: [UInt8] = []
    /// 0: from the next revision; else replay from this one (≥ the compacted revision).
    public var startRevision: Int64 = 0
    public var noPut = false
    public var noDelete = false
    /// Attach each event's previous key-value (read at mod_revision − 1).
    public var prevKV = false
    /// A watch ID the client chose (etcd 3.4 accepts them); nil: the stream assigns one.
    public var id: Int64?

    public init(key: [UInt8], rangeEnd: [UInt8] = [], startRevision: Int64 = 0) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.startRevision = startRevision
    }
}

/// Watch errors.
extension MVCCError {
    /// A watch ID already in use on the stream (etcd's `ErrWatcherDuplicateID`).
    public static let duplicateWatchID = MVCCError.lease("mvcc: duplicate watch ID provided on the WatchStream")
}

/// One client's watches: events arrive as etcd `WatchResponse`s in a bounded queue that the
/// owner drains with `poll` or `wait`. A slow owner never slows writers: when the queue is full,
/// the watcher falls behind ("victim") and catches up from the backend in `syncWatchers`.
///
/// Thread-safe.
public final class WatchStream: @unchecked Sendable {
    /// Responses the queue holds before watchers fall behind (etcd's `chanBufLen`).
    public let capacity: Int
    unowned let store: KVStore
    private let lock = NSCondition()
    private var queue: [Etcdserverpb_WatchResponse] = []
    /// The next ID to hand out (guarded by the store's lock).
    var nextID: Int64 = 0
    private(set) var closed = false
    private var onReady: (@Sendable () -> Void)?

    /// Called (outside the stream's lock, on the writer's thread) each time a response is
    /// queued, so an asynchronous owner can drain with `poll` instead of blocking in `wait`.
    /// It must only schedule work.
    public func setReadyHandler(_ handler: (@Sendable () -> Void)?) {
        lock.withLock { onReady = handler }
    }

    init(store: KVStore, capacity: Int) {
        self.store = store
        self.capacity = capacity
    }

    /// Starts a watch; returns its ID. Historical events (from `startRevision`) arrive after the
    /// next `syncWatchers`; new ones as writes happen.
    /// - Throws: `.compacted` is not thrown here: a start below the compacted revision yields
    ///   a response with `compactRevision` set and the watch canceled, as etcd does.
    public func watch(_ request: WatchRequest) throws(MVCCError) -> Int64 {
        try store.addWatcher(stream: self, request: request, announce: { _ in nil })
    }

    /// Starts a watch and queues `announce(id)` (etcd's "created" response) ahead of any of
    /// its events, atomically, so a server relaying the queue never sends an event first.
    public func watch(_ request: WatchRequest, announce: (Int64) -> Etcdserverpb_WatchResponse) throws(MVCCError) -> Int64 {
        try store.addWatcher(stream: self, request: request, announce: announce)
    }

    /// Queues a control response (a cancel, a progress notification, an error) after what is
    /// already queued, ignoring the capacity: there is at most one per client request.
    public func enqueue(_ response: Etcdserverpb_WatchResponse) {
        let handler: (@Sendable () -> Void)? = lock.withLock {
            if closed { return nil }
            queue.append(response)
            lock.signal()
            return onReady
        }
        handler?()
    }

    /// Stops a watch. False when there was none with that ID.
    @discardableResult
    public func cancel(_ id: Int64) -> Bool { store.removeWatcher(stream: self, id: id) }

    /// A progress response (watch ID -1, the current revision) if every watcher of the stream
    /// is synced, as etcd answers `RequestProgress`; nil otherwise (etcd then sends nothing).
    public func requestProgress() -> Etcdserverpb_WatchResponse? {
        guard let revision = store.progressRevision(stream: self) else { return nil }
        var response = Etcdserverpb_WatchResponse()
        response.watchID = -1
        response.header.revision = revision
        return response
    }

    /// Takes every queued response.
    public func poll() -> [Etcdserverpb_WatchResponse] {
        lock.withLock {
            defer { queue.removeAll() }
            return queue
        }
    }

    /// Waits up to `timeout` seconds for responses and takes them.
    public func wait(timeout: Double) -> [Etcdserverpb_WatchResponse] {
        lock.lock()
        defer { lock.unlock() }
        let deadline = Date().addingTimeInterval(timeout)
        while queue.isEmpty && !closed && lock.wait(until: deadline) {}
        defer { queue.removeAll() }
        return queue
    }

    /// Ends every watch of the stream.
    public func close() {
        store.removeStream(self)
        lock.withLock {
            closed = true
            onReady = nil
            lock.broadcast()
        }
    }

    /// Queues a response unless the queue is full.
    func offer(_ response: Etcdserverpb_WatchResponse) -> Bool {
        let (taken, handler): (Bool, (@Sendable () -> Void)?) = lock.withLock {
            if closed { return (true, nil) }
            guard queue.count < capacity else { return (false, nil) }
            queue.append(response)
            lock.signal()
            return (true, onReady)
        }
        handler?()
        return taken
    }
}

/// One watch, in the store's synced, unsynced or victim set.
final class Watcher {
    unowned let stream: WatchStream
    let id: Int64
    let key: [UInt8]
    /// nil: the key alone; empty: every key ≥ `key`.
    let end: [UInt8]?
    let noPut: Bool
    let noDelete: Bool
    let prevKV: Bool
    /// The next revision this watcher needs.
    var minRev: Int64
    /// Events it could not take (its stream was full), sent again by `syncWatchers`.
    var pending: Etcdserverpb_WatchResponse?

    init(stream: WatchStream, id: Int64, request: WatchRequest) {
        self.stream = stream
        self.id = id
        key = request.key
        end = request.rangeEnd.isEmpty ? nil : (request.rangeEnd == [0] ? [] : request.rangeEnd)
        noPut = request.noPut
        noDelete = request.noDelete
        prevKV = request.prevKV
        minRev = request.startRevision
    }

    func matches(_ k: [UInt8]) -> Bool {
        guard let end else { return k == key }
        if compareBytes(k, key) < 0 { return false }
        return end.isEmpty || compareBytes(k, end) < 0
    }

    func keeps(_ event: Mvccpb_Event) -> Bool {
        !(noPut && event.type == .put) && !(noDelete && event.type == .delete)
    }
}

extension KVStore {
    /// etcd's `watchBatchMaxRevs`: revisions per catch-up response.
    static let watchBatchMaxRevisions = 1000
    /// etcd's `maxWatchersPerSync`.
    static let maxWatchersPerSync = 512

    /// A new stream of watches with a queue of `capacity` responses.
    public func openWatchStream(capacity: Int = 128) -> WatchStream { WatchStream(store: self, capacity: capacity) }

    /// Registers a watcher and returns its ID (the client's, or the stream's next free one).
    func addWatcher(stream: WatchStream, request: WatchRequest, announce: (Int64) -> Etcdserverpb_WatchResponse?) throws(MVCCError) -> Int64 {
        try withLock { () throws(MVCCError) -> Int64 in
            try checkOpen()
            func taken(_ id: Int64) -> Bool { watchers.contains { $0.stream === stream && $0.id == id } }
            let id: Int64
            if let wanted = request.id, wanted != -1 {
                if taken(wanted) { throw MVCCError.duplicateWatchID }
                id = wanted
            } else {
                while taken(stream.nextID) { stream.nextID += 1 }
                id = stream.nextID
                stream.nextID += 1
            }
            let w = Watcher(stream: stream, id: id, request: request)
            let start = w.minRev
            if start == 0 || start > current {
                w.minRev = max(current + 1, start)
                syncedWatchers.insert(ObjectIdentifier(w))
            }
            if let created = announce(id) { stream.enqueue(created) }
            watchers.append(w)
            return id
        }
    }

    func removeWatcher(stream: WatchStream, id: Int64) -> Bool {
        withLock {
            guard let i = watchers.firstIndex(where: { $0.stream === stream && $0.id == id }) else { return false }
            syncedWatchers.remove(ObjectIdentifier(watchers[i]))
            watchers.remove(at: i)
            return true
        }
    }

    func removeStream(_ stream: WatchStream) {
        withLock {
            for w in watchers where w.stream === stream { syncedWatchers.remove(ObjectIdentifier(w)) }
            watchers.removeAll { $0.stream === stream }
        }
    }

    func progressRevision(stream: WatchStream) -> Int64? {
        withLock {
            let mine = watchers.filter { $0.stream === stream }
            return mine.allSatisfy({ syncedWatchers.contains(ObjectIdentifier($0)) && $0.pending == nil }) ? current : nil
        }
    }

    /// Sends a write txn's events to synced watchers (lock held). A watcher whose stream is
    /// full becomes a victim: its events wait in `pending` for `syncWatchers`.
    func notify(revision: Int64, events: [Mvccpb_Event]) {
        guard !syncedWatchers.isEmpty else { return }
        for w in watchers where syncedWatchers.contains(ObjectIdentifier(w)) && w.pending == nil {
            let mine = events.filter { w.matches([UInt8]($0.kv.key)) && $0.kv.modRevision >= w.minRev }
            guard !mine.isEmpty else { continue }
            var response = Etcdserverpb_WatchResponse()
            response.watchID = w.id
            response.header.revision = revision
            response.events = decorate(mine, for: w)
            w.minRev = revision + 1
            if response.events.isEmpty { continue }
            if !w.stream.offer(response) {
                w.pending = response
                syncedWatchers.remove(ObjectIdentifier(w))
            }
        }
    }

    /// Filters and previous key-values for one watcher.
    private func decorate(_ events: [Mvccpb_Event], for w: Watcher) -> [Mvccpb_Event] {
        var out = events.filter(w.keeps)
        if w.prevKV {
            for i in out.indices {
                let rev = out[i].kv.modRevision - 1
                if rev > 0, rev >= compactRevisionLocked,
                   let state = index.get([UInt8](out[i].kv.key))?.get(atRev: rev), let kv = try? fetch([state.modified]).first {
                    out[i].prevKv = kv
                }
            }
        }
        return out
    }

    /// etcd's sync loops in one call (run it every 100 ms): victims retry their pending
    /// events; unsynced watchers (up to 512) catch up from the backend, at most 1,000
    /// revisions per response; a watcher whose start was compacted gets `compactRevision` and
    /// is canceled.
    public func syncWatchers() throws(MVCCError) {
        try withLock { () throws(MVCCError) in
            try checkOpen()
            // Victims first.
            for w in watchers where w.pending != nil {
                if w.stream.offer(w.pending!) {
                    w.pending = nil
                    if w.minRev > current { syncedWatchers.insert(ObjectIdentifier(w)) }
                }
            }
            let unsynced = watchers.filter { !syncedWatchers.contains(ObjectIdentifier($0)) && $0.pending == nil }.prefix(KVStore.maxWatchersPerSync)
            guard !unsynced.isEmpty else { return }
            var canceled: [Watcher] = []
            var catchingUp: [Watcher] = []
            for w in unsynced {
                if w.minRev < compactRevisionLocked {
                    var response = Etcdserverpb_WatchResponse()
                    response.watchID = w.id
                    response.compactRevision = compactRevisionLocked
                    response.canceled = true
                    response.header.revision = current
                    if w.stream.offer(response) { canceled.append(w) }
                } else {
                    catchingUp.append(w)
                }
            }
            watchers.removeAll { w in canceled.contains { $0 === w } }
            guard let minRev = catchingUp.map(\.minRev).min() else { return }
            // Every change from minRev to current, in revision order.
            try forceCommitLocked()
            let entries = try backendCall { () throws(BackendError) in
                let read = try backend.beginRead()
                defer { read.end() }
                return try read.bucket(KVStore.keyBucket).entries(from: Revision(main: minRev).bytes(), to: Revision(main: current + 1).bytes())
            }
            var events: [Mvccpb_Event] = []
            for e in entries {
                let (_, tombstone) = try Revision.decode(e.key)
                guard var kv = try? Mvccpb_KeyValue(serializedBytes: e.value) else { continue }
                var event = Mvccpb_Event()
                if tombstone {
                    kv.modRevision = try Revision.decode(e.key).revision.main
                    event.type = .delete
                }
                event.kv = kv
                events.append(event)
            }
            for w in catchingUp {
                var mine: [Mvccpb_Event] = []
                var revisions = 0
                var last: Int64 = 0
                var more: Int64 = 0
                for e in events where e.kv.modRevision >= w.minRev && w.matches([UInt8](e.kv.key)) {
                    if e.kv.modRevision != last {
                        if revisions == KVStore.watchBatchMaxRevisions { more = e.kv.modRevision; break }
                        revisions += 1
                        last = e.kv.modRevision
                    }
                    mine.append(e)
                }
                w.minRev = more != 0 ? more : current + 1
                let kept = decorate(mine, for: w)
                if !kept.isEmpty {
                    var response = Etcdserverpb_WatchResponse()
                    response.watchID = w.id
                    response.header.revision = current
                    response.events = kept
                    if !w.stream.offer(response) {
                        w.pending = response
                        continue
                    }
                }
                if more == 0 { syncedWatchers.insert(ObjectIdentifier(w)) }
            }
        }
    }
}
