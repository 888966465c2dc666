import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix

/// The client port serves gRPC and HTTP/1.1 on one listener, as etcd does with cmux: each
/// accepted connection starts behind a `ClientPortDemux` that looks at the first bytes — the
/// HTTP/2 preface gets NIOHTTP2 and a `GRPCConnection`; anything else gets etcd's HTTP
/// endpoints (`/health`, `/version`, `/metrics`).
final class ClientPortListener: Sendable {
    let channel: any Channel
    /// The bound port (the requested one, or the one the OS picked for port 0).
    let port: Int

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    static func bind(host: String, port: Int, core: ServerCore, routes: GRPCRoutes, registry: GRPCConnectionRegistry) async throws -> ClientPortListener {
        let maxReceive = core.config.maxRequestBytes + 512 * 1024  // etcd: the request limit plus gRPC overhead
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ClientPortDemux(core: core, routes: routes, registry: registry, maxReceiveBytes: maxReceive))
                }
            }
            .bind(host: host, port: port).get()
        return ClientPortListener(channel: channel, port: channel.localAddress?.port ?? port)
    }

    /// Stops accepting connections (open ones stay).
    func close() async {
        try? await channel.close()
    }
}

/// Decides per connection between gRPC (HTTP/2 preface) and HTTP/1.1; see `ClientPortListener`.
final class ClientPortDemux: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private var received: ByteBuffer?
    private var decided = false
    let core: ServerCore
    let routes: GRPCRoutes
    let registry: GRPCConnectionRegistry
    let maxReceiveBytes: Int

    init(core: ServerCore, routes: GRPCRoutes, registry: GRPCConnectionRegistry, maxReceiveBytes: Int) {
        self.core = core
        self.routes = routes
        self.registry = registry
        self.maxReceiveBytes = maxReceiveBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else {
            context.fireChannelRead(data)
            return
        }
        var bytes = unwrapInboundIn(data)
        if received == nil { received = bytes } else { received!.writeBuffer(&bytes) }
        let seen = received!.readableBytesView
        let n = min(seen.count, Self.preface.count)
        if !seen.prefix(n).elementsEqual(Self.preface.prefix(n)) {
            switchTo(grpc: false, context: context)
        } else if n == Self.preface.count {
            switchTo(grpc: true, context: context)
        }
    }

    /// HTTP/2 settings (streams per connection unlimited, as etcd 3.4: an API server keeps
    /// thousands of watches on one connection), and NIOHTTP2's abuse limits raised to what
    /// etcd's Go server allows.
    /// Go's gRPC client sends a PING per burst of received data (its bandwidth estimator) and
    /// cancels streams freely (every ended watch), so NIO's defaults (200 control frames or
    /// resets per 30 s) closed busy watch connections; the client then transparently retried
    /// puts the server had already applied.
    static let http2Connection: NIOHTTP2Handler.ConnectionConfiguration = {
        var c = NIOHTTP2Handler.ConnectionConfiguration()
        c.initialSettings = [HTTP2Setting(parameter: .maxConcurrentStreams, value: Int(Int32.max)),
                             HTTP2Setting(parameter: .initialWindowSize, value: GRPCConnection.streamWindow),
                             HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16)]
        c.controlFrameRateLimit.maximumCount = 1_000_000
        c.controlFrameRateLimit.windowLength = .seconds(30)
        return c
    }()

    static let http2Stream: NIOHTTP2Handler.StreamConfiguration = {
        var c = NIOHTTP2Handler.StreamConfiguration()
        c.streamResetFrameRateLimit.maximumCount = 100_000
        c.streamResetFrameRateLimit.windowLength = .seconds(30)
        c.streamErrorRateLimit.maximumCount = 100_000
        c.streamErrorRateLimit.windowLength = .seconds(30)
        return c
    }()

    private func switchTo(grpc: Bool, context: ChannelHandlerContext) {
        decided = true
        do {
            let ops = context.pipeline.syncOperations
            if grpc {
                let http2 = NIOHTTP2Handler(mode: .server, connectionConfiguration: Self.http2Connection, streamConfiguration: Self.http2Stream)
                try ops.addHandler(http2, position: .after(self))
                try ops.addHandler(GRPCConnection(routes: routes, maxReceiveBytes: maxReceiveBytes, registry: registry), position: .after(http2))
            } else {
                try ops.addHandlers([HTTPResponseEncoder(), ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)),
                                     HTTPEndpoints.Handler(core: core)], position: .after(self))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        if let r = received { context.fireChannelRead(wrapInboundOut(r)) }
        received = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
