import GRPCCore
import KeelGRPC
import KeelProto
import NIOCore
import SwiftProtobuf

/// What a call's client sent: one message (unary and server-streaming methods) or a stream.
enum GRPCRequestBody: Sendable {
    case unary(ByteBuffer)
    case stream(AsyncThrowingStream<ByteBuffer, any Error>)
}

/// One method: decodes requests, runs the service's handler, encodes its answers into the call.
struct GRPCRoute: Sendable {
    let descriptor: MethodDescriptor
    let clientStreaming: Bool
    let run: @Sendable (GRPCCall, GRPCRequestBody) async -> Void
}

/// Every method Keel serves, by HTTP/2 `:path` (`/etcdserverpb.KV/Range`), calling the
/// services' handlers directly (grpc-swift's message types and service protocols, without its
/// per-call executor).
struct GRPCRoutes: Sendable {
    private var byPath: [String: GRPCRoute] = [:]
    private var services: Set<String> = []

    func route(_ path: String) -> GRPCRoute? { byPath[path] }
    func hasService(_ name: String) -> Bool { services.contains(name) }

    init(core: ServerCore) {
        let kv = KVService(core: core), watch = WatchService(core: core), lease = LeaseService(core: core)
        let cluster = ClusterService(core: core), maintenance = MaintenanceService(core: core)
        let auth = AuthService(core: core), health = HealthService()
        let kvs = "etcdserverpb.KV"
        add(Self.unary(kvs, "Range", kv.range))
        add(Self.unary(kvs, "Put", kv.put))
        add(Self.unary(kvs, "DeleteRange", kv.deleteRange))
        add(Self.unary(kvs, "Txn", kv.txn))
        add(Self.unary(kvs, "Compact", kv.compact))
        add(Self.bidi("etcdserverpb.Watch", "Watch", watch.watch))
        let ls = "etcdserverpb.Lease"
        add(Self.unary(ls, "LeaseGrant", lease.leaseGrant))
        add(Self.unary(ls, "LeaseRevoke", lease.leaseRevoke))
        add(Self.bidi(ls, "LeaseKeepAlive", lease.leaseKeepAlive))
        add(Self.unary(ls, "LeaseTimeToLive", lease.leaseTimeToLive))
        add(Self.unary(ls, "LeaseLeases", lease.leaseLeases))
        let cs = "etcdserverpb.Cluster"
        add(Self.unary(cs, "MemberAdd", cluster.memberAdd))
        add(Self.unary(cs, "MemberRemove", cluster.memberRemove))
        add(Self.unary(cs, "MemberUpdate", cluster.memberUpdate))
        add(Self.unary(cs, "MemberList", cluster.memberList))
        add(Self.unary(cs, "MemberPromote", cluster.memberPromote))
        let ms = "etcdserverpb.Maintenance"
        add(Self.unary(ms, "Alarm", maintenance.alarm))
        add(Self.unary(ms, "Status", maintenance.status))
        add(Self.unary(ms, "Defragment", maintenance.defragment))
        add(Self.unary(ms, "Hash", maintenance.hash))
        add(Self.unary(ms, "HashKV", maintenance.hashKV))
        add(Self.serverStreaming(ms, "Snapshot", maintenance.snapshot))
        add(Self.unary(ms, "MoveLeader", maintenance.moveLeader))
        let a = "etcdserverpb.Auth"
        add(Self.unary(a, "AuthEnable", auth.authEnable))
        add(Self.unary(a, "AuthDisable", auth.authDisable))
        add(Self.unary(a, "Authenticate", auth.authenticate))
        add(Self.unary(a, "UserAdd", auth.userAdd))
        add(Self.unary(a, "UserGet", auth.userGet))
        add(Self.unary(a, "UserList", auth.userList))
        add(Self.unary(a, "UserDelete", auth.userDelete))
        add(Self.unary(a, "UserChangePassword", auth.userChangePassword))
        add(Self.unary(a, "UserGrantRole", auth.userGrantRole))
        add(Self.unary(a, "UserRevokeRole", auth.userRevokeRole))
        add(Self.unary(a, "RoleAdd", auth.roleAdd))
        add(Self.unary(a, "RoleGet", auth.roleGet))
        add(Self.unary(a, "RoleList", auth.roleList))
        add(Self.unary(a, "RoleDelete", auth.roleDelete))
        add(Self.unary(a, "RoleGrantPermission", auth.roleGrantPermission))
        add(Self.unary(a, "RoleRevokePermission", auth.roleRevokePermission))
        add(Self.unary("grpc.health.v1.Health", "Check", health.check))
        add(Self.serverStreaming("grpc.health.v1.Health", "Watch", health.watch))
    }

    private mutating func add(_ route: GRPCRoute) {
        byPath["/" + route.descriptor.service.fullyQualifiedService + "/" + route.descriptor.method] = route
        services.insert(route.descriptor.service.fullyQualifiedService)
    }

    // MARK: Adapters

    static func decode<M: SwiftProtobuf.Message>(_ bytes: ByteBuffer, as: M.Type) throws(RPCError) -> M {
        do { return try M(serializedBytes: [UInt8](bytes.readableBytesView)) } catch {
            throw RPCError(code: .internalError, message: "grpc: error unmarshalling request: \(error)")
        }
    }

    static func encode<M: SwiftProtobuf.Message>(_ message: M) throws(RPCError) -> [UInt8] {
        do { return try message.serializedBytes() } catch {
            throw RPCError(code: .internalError, message: "grpc: error while marshaling: \(error)")
        }
    }

    static func unary<In: SwiftProtobuf.Message & Sendable, Out: SwiftProtobuf.Message & Sendable>(
        _ service: String, _ method: String,
        _ handler: @escaping @Sendable (ServerRequest<In>, ServerContext) async throws -> ServerResponse<Out>) -> GRPCRoute {
        GRPCRoute(descriptor: MethodDescriptor(fullyQualifiedService: service, method: method), clientStreaming: false) { call, body in
            guard case .unary(let bytes) = body else { return }
            do {
                let request = try decode(bytes, as: In.self)
                let response = try await handler(ServerRequest(metadata: call.metadata, message: request), call.context)
                switch response.accepted {
                case .success(let contents):
                    call.respond(try encode(contents.message), metadata: contents.metadata, trailers: contents.trailingMetadata)
                case .failure(let error):
                    call.finish(error)
                }
            } catch {
                call.finish(ServerCore.rpcError(error))
            }
        }
    }

    static func serverStreaming<In: SwiftProtobuf.Message & Sendable, Out: SwiftProtobuf.Message & Sendable>(
        _ service: String, _ method: String,
        _ handler: @escaping @Sendable (ServerRequest<In>, ServerContext) async throws -> StreamingServerResponse<Out>) -> GRPCRoute {
        GRPCRoute(descriptor: MethodDescriptor(fullyQualifiedService: service, method: method), clientStreaming: false) { call, body in
            guard case .unary(let bytes) = body else { return }
            do {
                let request = try decode(bytes, as: In.self)
                await produce(try await handler(ServerRequest(metadata: call.metadata, message: request), call.context), into: call)
            } catch {
                call.finish(ServerCore.rpcError(error))
            }
        }
    }

    static func bidi<In: SwiftProtobuf.Message & Sendable, Out: SwiftProtobuf.Message & Sendable>(
        _ service: String, _ method: String,
        _ handler: @escaping @Sendable (StreamingServerRequest<In>, ServerContext) async throws -> StreamingServerResponse<Out>) -> GRPCRoute {
        GRPCRoute(descriptor: MethodDescriptor(fullyQualifiedService: service, method: method), clientStreaming: true) { call, body in
            guard case .stream(let stream) = body else { return }
            let messages = DecodedMessages<In>(stream, call: call)
            do {
                let request = StreamingServerRequest(metadata: call.metadata, messages: RPCAsyncSequence<In, any Error>(wrapping: messages))
                await produce(try await handler(request, call.context), into: call)
            } catch {
                call.finish(ServerCore.rpcError(error))
            }
        }
    }

    static func produce<Out: SwiftProtobuf.Message & Sendable>(_ response: StreamingServerResponse<Out>, into call: GRPCCall) async {
        switch response.accepted {
        case .failure(let error):
            call.finish(error)
        case .success(let contents):
            call.sendHeaders(contents.metadata)
            do {
                let trailers = try await contents.producer(RPCWriter(wrapping: CallWriter<Out>(call: call)))
                call.finish(nil, trailers: trailers)
            } catch {
                call.finish(ServerCore.rpcError(error))
            }
        }
    }
}

/// A call's request stream, decoded.
/// Reading a message gives its bytes back to the client's flow-control window.
struct DecodedMessages<M: SwiftProtobuf.Message & Sendable>: AsyncSequence, Sendable {
    typealias Element = M
    typealias Failure = any Error
    let stream: AsyncThrowingStream<ByteBuffer, any Error>
    let call: GRPCCall
    init(_ stream: AsyncThrowingStream<ByteBuffer, any Error>, call: GRPCCall) {
        self.stream = stream
        self.call = call
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
        let call: GRPCCall
        mutating func next() async throws -> M? {
            guard let bytes = try await base.next() else { return nil }
            call.consumed(bytes.readableBytes)
            return try GRPCRoutes.decode(bytes, as: M.self)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), call: call) }
}

/// Writes a streaming answer's messages into its call.
struct CallWriter<M: SwiftProtobuf.Message & Sendable>: RPCWriterProtocol {
    let call: GRPCCall
    func write(_ element: M) async throws { try await call.send([try GRPCRoutes.encode(element)]) }
    /// One hop and one flush for the lot.
    func write(contentsOf elements: some Sequence<M>) async throws {
        var encoded: [[UInt8]] = []
        for e in elements { encoded.append(try GRPCRoutes.encode(e)) }
        try await call.send(encoded)
    }
}
