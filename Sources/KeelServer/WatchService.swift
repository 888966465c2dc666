import Foundation
import GRPCCore
import KeelGRPC
import KeelMVCC
import KeelProto
import SwiftProtobuf

/// etcd's Watch service: one bidirectional stream carries many watches. Each stream owns a
/// KeelMVCC `WatchStream`; a created response is queued atomically with the watch, so no
/// event precedes it, and one writer task relays the queue. Events for a slow client wait in
/// the store (the watcher becomes a victim) instead of slowing writers.
struct WatchService: Etcdserverpb_Watch.ServiceProtocol {
    let core: ServerCore

    /// What wakes the relaying task.
    enum Wake: Sendable { case queued, end }

    func watch(request: StreamingServerRequest<Etcdserverpb_WatchRequest>, context: ServerContext) async throws -> StreamingServerResponse<Etcdserverpb_WatchResponse> {
        core.metrics.started("Watch", "Watch", type: "bidi_stream")
        let info: AuthInfo?
        do { info = try core.authInfo(request.metadata) } catch {
            core.metrics.handled("Watch", "Watch", type: "bidi_stream", code: ServerCore.codeName(error.code))
            throw error
        }
        let core = self.core
        return StreamingServerResponse { writer in
            let stream = core.kv.openWatchStream(capacity: 1024)
            let fragments = WatchIDSet()
            let progress = WatchIDSet()
            let (wakes, wake) = AsyncStream<Wake>.makeStream(bufferingPolicy: .bufferingNewest(2))
            stream.setReadyHandler { wake.yield(.queued) }
            defer {
                stream.close()
                wake.finish()
            }
            var status = "OK"
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        defer { wake.yield(.end) }
                        for try await req in request.messages {
                            Self.handle(req, stream: stream, fragments: fragments, progress: progress, info: info, core: core)
                        }
                    }
                    group.addTask {
                        // etcd's progress notifications for watches created with
                        // progress_notify: the current revision, when the stream is synced.
                        while !Task.isCancelled {
                            // Clamped: the interval comes from a flag and must not overflow the conversion.
                            try await Task.sleep(nanoseconds: UInt64(min(max(core.config.watchProgressNotifyInterval, 0.001), 1e9) * 1e9))
                            let ids = progress.all
                            guard !ids.isEmpty, let synced = stream.requestProgress() else { continue }
                            for id in ids {
                                var r = synced
                                r.watchID = id
                                stream.enqueue(r)
                            }
                        }
                    }
                    group.addTask {
                        for await w in wakes {
                            var out: [Etcdserverpb_WatchResponse] = []
                            for response in Self.coalesced(stream.poll(), limit: core.config.maxRequestBytes) {
                                out += Self.prepared(response, fragmentAllowed: fragments.contains(response.watchID), core: core)
                            }
                            try await writer.write(contentsOf: out)
                            if case .end = w { break }
                        }
                    }
                    _ = try await group.next()
                    group.cancelAll()
                }
            } catch {
                status = ServerCore.codeName(ServerCore.rpcError(error).code)
                core.metrics.handled("Watch", "Watch", type: "bidi_stream", code: status)
                throw error
            }
            core.metrics.handled("Watch", "Watch", type: "bidi_stream", code: status)
            return [:]
        }
    }

    static func handle(_ req: Etcdserverpb_WatchRequest, stream: WatchStream, fragments: WatchIDSet, progress: WatchIDSet, info: AuthInfo?, core: ServerCore) {
        switch req.requestUnion {
        case let .createRequest(c)?:
            var response = Etcdserverpb_WatchResponse()
            response.created = true
            do {
                try core.kv.checkPermission(info, key: [UInt8](c.key), rangeEnd: [UInt8](c.rangeEnd), write: false)
            } catch {
                // etcd answers a refused create with a created-and-canceled response.
                response.watchID = -1
                response.canceled = true
                response.cancelReason = "etcdserver: " + error.description
                stream.enqueue(response)
                return
            }
            var w = WatchRequest(key: [UInt8](c.key), rangeEnd: [UInt8](c.rangeEnd), startRevision: c.startRevision)
            w.prevKV = c.prevKv
            w.noPut = c.filters.contains(.noput)
            w.noDelete = c.filters.contains(.nodelete)
            w.id = c.watchID == 0 ? nil : c.watchID
            do {
                let id = try stream.watch(w) { id in
                    var r = response
                    r.watchID = id
                    return r
                }
                if c.fragment { fragments.insert(id) }
                if c.progressNotify { progress.insert(id) }
                if c.startRevision != 0 { core.node.requestWatchSync() }
            } catch {
                response.watchID = -1
                response.canceled = true
                response.cancelReason = error.description
                stream.enqueue(response)
            }
        case let .cancelRequest(c)?:
            if stream.cancel(c.watchID) {
                var response = Etcdserverpb_WatchResponse()
                response.watchID = c.watchID
                response.canceled = true
                fragments.remove(c.watchID)
                progress.remove(c.watchID)
                stream.enqueue(response)
            }
        case .progressRequest?:
            if let response = stream.requestProgress() { stream.enqueue(response) }
        case nil:
            break
        }
    }

    /// Queued responses with consecutive event-only responses of one watch merged (a client
    /// that fell behind gets its backlog in few messages, as etcd sends an unsynced watcher's
    /// catch-up), up to about `limit` bytes of events each; the header revision is the newest.
    static func coalesced(_ responses: [Etcdserverpb_WatchResponse], limit: Int) -> [Etcdserverpb_WatchResponse] {
        guard responses.count > 1 else { return responses }
        func plain(_ r: Etcdserverpb_WatchResponse) -> Bool {
            !r.events.isEmpty && !r.created && !r.canceled && !r.fragment && r.compactRevision == 0 && r.cancelReason.isEmpty
        }
        var out: [Etcdserverpb_WatchResponse] = []
        var size = 0
        for r in responses {
            let n = r.events.reduce(0) { $0 + $1.kv.key.count + $1.kv.value.count + $1.prevKv.key.count + $1.prevKv.value.count + 32 }
            if plain(r), let last = out.last, plain(last), last.watchID == r.watchID, size + n <= limit {
                out[out.count - 1].events += r.events
                out[out.count - 1].header.revision = max(last.header.revision, r.header.revision)
                size += n
            } else {
                out.append(r)
                size = n
            }
        }
        return out
    }

    /// One response with the full header; a response larger than the request limit is split
    /// into fragments when its watch asked for them (etcd's `fragment`).
    static func prepared(_ response: Etcdserverpb_WatchResponse, fragmentAllowed: Bool, core: ServerCore) -> [Etcdserverpb_WatchResponse] {
        var r = response
        r.header = core.header(r.header)
        let limit = core.config.maxRequestBytes
        guard fragmentAllowed, r.events.count > 1, (try? r.serializedBytes() as [UInt8])?.count ?? 0 > limit else {
            return [r]
        }
        var pieces: [[Mvccpb_Event]] = [[]]
        var size = 0
        for e in r.events {
            let n = (try? e.serializedBytes() as [UInt8])?.count ?? 0
            if size + n > limit, !pieces[pieces.count - 1].isEmpty {
                pieces.append([])
                size = 0
            }
            pieces[pieces.count - 1].append(e)
            size += n
        }
        return pieces.enumerated().map { i, events in
            var part = r
            part.events = events
            part.fragment = i < pieces.count - 1
            return part
        }
    }
}

/// Watch IDs of one stream that asked for fragmented responses.
final class WatchIDSet: @unchecked Sendable {
    private let lock = NSLock()
    private var ids = Set<Int64>()
    func insert(_ id: Int64) { lock.withLock { _ = ids.insert(id) } }
    func remove(_ id: Int64) { lock.withLock { _ = ids.remove(id) } }
    func contains(_ id: Int64) -> Bool { lock.withLock { ids.contains(id) } }
    var all: [Int64] { lock.withLock { ids.sorted() } }
}
