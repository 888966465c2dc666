import Foundation
import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2

/// gRPC over one HTTP/2 connection, on the connection's event loop, without a channel per
/// stream: NIOHTTP2 parses frames and HPACK; this handler keeps each stream's gRPC state
/// (request metadata, length-prefixed messages, flow-control credit) in a dictionary and hands
/// complete calls to their `GRPCRoute`. Responses come back through `GRPCCall`, which hops to
/// this loop once per write.
///
/// Limits: a message longer than `maxReceiveBytes` ends its call with RESOURCE_EXHAUSTED (gRPC's
/// "received message larger than max"); compressed messages are refused (etcd's clients do not
/// compress). Flow control: the connection and every stream get WINDOW_UPDATEs as data is
/// consumed, so long-lived streams (watch, keep-alive) never stall.
final class GRPCConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// The window advertised for each stream (SETTINGS_INITIAL_WINDOW_SIZE) and the
    /// connection's window once the first WINDOW_UPDATE raised it.
    static let streamWindow = 1 << 20
    static let connectionWindow = 1 << 24

    let routes: GRPCRoutes
    let maxReceiveBytes: Int
    let registry: GRPCConnectionRegistry
    private var context: ChannelHandlerContext?
    private var streams: [HTTP2StreamID: StreamState] = [:]
    private var connectionConsumed = 0
    private var goingAway = false
    private var lastStreamID = HTTP2StreamID(0)
    private var remotePeer = "unknown"
    private var localPeer = "unknown"

    /// One stream's receive side.
    final class StreamState {
        let call: GRPCCall
        let route: GRPCRoute?
        var buffer: ByteBuffer?
        var consumed = 0
        var remoteClosed = false
        /// A unary call's one message (a second one is an error).
        var single: ByteBuffer?
        var failed = false
        init(call: GRPCCall, route: GRPCRoute?) {
            self.call = call
            self.route = route
        }
    }

    init(routes: GRPCRoutes, maxReceiveBytes: Int, registry: GRPCConnectionRegistry) {
        self.routes = routes
        self.maxReceiveBytes = maxReceiveBytes
        self.registry = registry
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        remotePeer = Self.peer(context.channel.remoteAddress)
        localPeer = Self.peer(context.channel.localAddress)
        registry.add(self, loop: context.eventLoop)
        // The connection window starts at 64 KiB whatever SETTINGS say; raise it once.
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: Self.connectionWindow - 65_535))), promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelAll()
        self.context = nil
        registry.remove(self)
    }

    /// NIOHTTP2 reports protocol errors here after answering them itself (RST_STREAM for a
    /// stream error, GOAWAY for a connection error, after which the client hangs up); a socket
    /// error ends the connection.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is IOError { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {

        cancelAll()
        context.fireChannelInactive()
    }

    private func cancelAll() {
        let all = streams
        streams.removeAll()
        for (_, s) in all { s.call.cancel() }
    }

    static func peer(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        switch address {
        case .v4: return "ipv4:\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        case .v6: return "ipv6:[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        default: return "unix:\(address)"
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let h):
            if let s = streams[frame.streamID] {
                // Trailers from the client: only END_STREAM matters.
                if h.endStream { endOfRequest(frame.streamID, s) }
            } else {
                openStream(frame.streamID, h, context: context)
            }
        case .data(let d):
            guard case .byteBuffer(var bytes) = d.data else { return }
            let length = bytes.readableBytes + (d.paddingBytes.map { $0 + 1 } ?? 0)
            credit(connection: length, context: context)
            guard let s = streams[frame.streamID] else { return }
            // A unary request's bytes count as consumed on arrival (its one message is at most
            // maxReceiveBytes); a client stream's are credited back only as the handler reads
            // its messages (`credit(stream:)`), so a client sending faster than the server
            // reads stalls in flow control instead of filling memory.
            s.consumed += s.call.isStreaming ? length - bytes.readableBytes : length
            if !d.endStream && s.consumed >= Self.streamWindow / 2 {
                context.write(wrapOutboundOut(HTTP2Frame(streamID: frame.streamID, payload: .windowUpdate(windowSizeIncrement: s.consumed))), promise: nil)
                s.consumed = 0
                context.flush()
            }
            if !s.failed {
                if s.buffer == nil { s.buffer = bytes } else { s.buffer!.writeBuffer(&bytes) }
                readMessages(frame.streamID, s)
            }
            if d.endStream { endOfRequest(frame.streamID, s) }
        case .rstStream:
            if let s = streams.removeValue(forKey: frame.streamID) { s.call.cancel() }
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent, let s = streams.removeValue(forKey: closed.streamID) {
            s.call.cancel()
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The handler of a client-streaming call read `bytes` of its messages.
    func credit(stream id: HTTP2StreamID, bytes: Int) {
        guard let context, let s = streams[id], !s.remoteClosed else { return }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: bytes))), promise: nil)
    }

    private func credit(connection length: Int, context: ChannelHandlerContext) {
        connectionConsumed += length
        if connectionConsumed >= Self.connectionWindow / 2 {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionConsumed))), promise: nil)
            connectionConsumed = 0
        }
    }

    // MARK: Calls

    private func openStream(_ id: HTTP2StreamID, _ h: HTTP2Frame.FramePayload.Headers, context: ChannelHandlerContext) {
        if id > lastStreamID { lastStreamID = id }
        let headers = h.headers
        guard !goingAway else {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.refusedStream))), promise: nil)
            return
        }
        let path = headers.first(name: ":path") ?? ""
        let contentType = headers.first(name: "content-type") ?? ""
        guard contentType.hasPrefix("application/grpc") else {
            var response = HPACKHeaders()
            response.add(name: ":status", value: "415")
            response.add(name: "content-type", value: "text/plain")
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: response, endStream: true)))), promise: nil)
            return
        }
        var metadata = Metadata()
        for (name, value, _) in headers where !name.hasPrefix(":") {
            switch name {
            case "content-type", "te", "user-agent", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding": continue
            default:
                if name.hasSuffix("-bin") {
                    if let bytes = Data(base64Encoded: Self.padded(value)) { metadata.addBinary([UInt8](bytes), forKey: name) }
                } else {
                    metadata.addString(value, forKey: name)
                }
            }
        }
        let route = routes.route(path)
        let call = GRPCCall(streamID: id, connection: self, loop: context.eventLoop, metadata: metadata,
                            descriptor: route?.descriptor ?? MethodDescriptor(fullyQualifiedService: "", method: path),
                            remotePeer: remotePeer, localPeer: localPeer)
        let s = StreamState(call: call, route: route)
        streams[id] = s
        guard let route else {
            s.failed = true
            let parts = path.split(separator: "/")
            let message = parts.count == 2 && routes.hasService(String(parts[0]))
                ? "unknown method \(parts[1]) for service \(parts[0])" : "unknown service \(parts.first.map(String.init) ?? path)"
            call.finish(RPCError(code: .unimplemented, message: message))
            if h.endStream { s.remoteClosed = true }
            return
        }
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            s.failed = true
            call.finish(RPCError(code: .unimplemented, message: "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\""))
            return
        }
        if route.clientStreaming { call.startStreaming(route) }
        if h.endStream { endOfRequest(id, s) }
    }

    /// Base64 in gRPC metadata may come without padding.
    static func padded(_ s: String) -> String {
        let r = s.count % 4
        return r == 0 ? s : s + String(repeating: "=", count: 4 - r)
    }

    /// Takes every complete length-prefixed message from the stream's buffer.
    private func readMessages(_ id: HTTP2StreamID, _ s: StreamState) {
        while var b = s.buffer, b.readableBytes >= 5 {
            let flag = b.getInteger(at: b.readerIndex, as: UInt8.self)!
            let length = Int(b.getInteger(at: b.readerIndex + 1, as: UInt32.self)!)
            guard flag == 0 else {
                fail(s, RPCError(code: .internalError, message: "grpc: compressed message received without grpc-encoding"))
                return
            }
            guard length <= maxReceiveBytes else {
                fail(s, RPCError(code: .resourceExhausted, message: "grpc: received message larger than max (\(length) vs. \(maxReceiveBytes))"))
                return
            }
            guard b.readableBytes >= 5 + length else { return }
            b.moveReaderIndex(forwardBy: 5)
            let message = b.readSlice(length: length)!
            s.buffer = b.readableBytes == 0 ? nil : b
            if s.call.isStreaming {
                s.call.receive(message)
            } else if s.single == nil {
                s.single = message
            } else {
                fail(s, RPCError(code: .internalError, message: "grpc: a unary request carried more than one message"))
                return
            }
        }
    }

    private func fail(_ s: StreamState, _ error: RPCError) {
        s.failed = true
        s.buffer = nil
        s.single = nil
        s.call.finish(error)
    }

    private func endOfRequest(_ id: HTTP2StreamID, _ s: StreamState) {
        guard !s.remoteClosed else { return }
        s.remoteClosed = true
        if s.failed { return }
        if s.buffer != nil {
            fail(s, RPCError(code: .internalError, message: "grpc: the request ended inside a message"))
            return
        }
        if s.call.isStreaming {
            s.call.endOfMessages()
        } else if let message = s.single, let route = s.route {
            s.single = nil
            s.call.startUnary(route, message)
        } else {
            fail(s, RPCError(code: .internalError, message: "grpc: a unary request carried no message"))
        }
    }

    // MARK: Writing (on the loop)

    /// Writes response frames for `id`; the last one ending the stream forgets it.
    func write(_ frames: [HTTP2Frame.FramePayload], on id: HTTP2StreamID, ends: Bool, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        for (i, payload) in frames.enumerated() {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: payload)), promise: i == frames.count - 1 ? promise : nil)
        }
        flushSoon(context)
        if ends, let s = streams[id] {
            if s.remoteClosed {
                streams.removeValue(forKey: id)
            } else {
                // Answered before the client finished sending: as gRPC servers do, reset the
                // rest of the request.
                streams.removeValue(forKey: id)
                context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.noError))), promise: nil)
            }
        }
        if goingAway && streams.isEmpty {
            context.flush()
            context.close(promise: nil)
        }
    }

    /// One flush for every response written in this turn of the event loop: answers finishing
    /// together (a raft Ready applies many requests at once) leave in one write syscall.
    private var flushScheduled = false
    private func flushSoon(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            self.context?.flush()
        }
    }

    /// Graceful stop: GOAWAY now, close once the open calls are answered.
    func beginShutdown() {
        guard let context, !goingAway else { return }
        goingAway = true
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil))), promise: nil)
        if streams.isEmpty { context.close(promise: nil) }
    }

    /// Hard stop.
    func close() {
        context?.close(promise: nil)
    }
}

/// The open gRPC connections, for a graceful stop.
final class GRPCConnectionRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var connections: [ObjectIdentifier: (GRPCConnection, any EventLoop)] = [:]

    func add(_ c: GRPCConnection, loop: any EventLoop) { lock.withLock { connections[ObjectIdentifier(c)] = (c, loop) } }
    func remove(_ c: GRPCConnection) { lock.withLock { _ = connections.removeValue(forKey: ObjectIdentifier(c)) } }
    var count: Int { lock.withLock { connections.count } }

    /// Runs `body` on each connection's loop.
    func forEach(_ body: @escaping @Sendable (GRPCConnection) -> Void) {
        for (c, loop) in lock.withLock({ Array(connections.values) }) {
            loop.execute { body(c) }
        }
    }
}
