import GRPCCore
import GRPCNIOTransportHTTP2Posix
import NIOCore
import NIOHTTP1
import NIOPosix

/// The client port serves gRPC and HTTP/1.1 on one listener, as etcd does with cmux: each
/// accepted connection is configured for gRPC, behind a `ClientPortDemux` that looks at the
/// first bytes — the HTTP/2 preface keeps the gRPC pipeline; anything else gets etcd's HTTP
/// endpoints (`/health`, `/version`, `/metrics`) and the gRPC side of that connection is muted.
struct ClientPortListener: HTTP2ServerTransport.ListenerFactory {
    let host: String
    let port: Int
    let core: ServerCore
    var eventLoopGroup: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }

    func makeListeningChannel(listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
                              connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator) async throws
        -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        let core = self.core
        return try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { listenerConfigurator.configure(channel: $0) }
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ClientPortDemux(core: core))
                }.flatMap {
                    connectionConfigurator.configure(channel: channel, tls: .none)
                }
            }
    }
}

/// Decides per connection between gRPC (HTTP/2 preface) and HTTP/1.1; see `ClientPortListener`.
final class ClientPortDemux: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum Mode { case sniffing, grpc, http1 }
    private var mode = Mode.sniffing
    private var received: ByteBuffer?
    private var pendingWrites: [(IOData, EventLoopPromise<Void>?)] = []
    private var pendingFlush = false
    let core: ServerCore

    init(core: ServerCore) { self.core = core }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard mode == .sniffing else {
            context.fireChannelRead(data)
            return
        }
        var bytes = unwrapInboundIn(data)
        if received == nil { received = bytes } else { received!.writeBuffer(&bytes) }
        let seen = received!.readableBytesView
        let n = min(seen.count, Self.preface.count)
        if !seen.prefix(n).elementsEqual(Self.preface.prefix(n)) {
            switchToHTTP1(context: context)
        } else if n == Self.preface.count {
            switchToGRPC(context: context)
        }
    }

    private func switchToGRPC(context: ChannelHandlerContext) {
        mode = .grpc
        for (data, promise) in pendingWrites { context.write(wrapOutboundOut(data), promise: promise) }
        pendingWrites = []
        if pendingFlush { context.flush() }
        if let r = received { context.fireChannelRead(wrapInboundOut(r)) }
        received = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func switchToHTTP1(context: ChannelHandlerContext) {
        mode = .http1
        // The gRPC side's server preface and anything after it never reach this client.
        for (_, promise) in pendingWrites { promise?.succeed(()) }
        pendingWrites = []
        do {
            let ops = context.pipeline.syncOperations
            try ops.addHandler(HTTPResponseEncoder(), position: .before(self))
            try ops.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)), position: .before(self))
            try ops.addHandler(HTTPEndpoints.Handler(core: core), position: .before(self))
        } catch {
            context.close(promise: nil)
            return
        }
        if let r = received { context.pipeline.fireChannelRead(NIOAny(r)) }
        received = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .sniffing: pendingWrites.append((unwrapOutboundIn(data), promise))
        case .grpc: context.write(data, promise: promise)
        case .http1: promise?.succeed(())
        }
    }

    func flush(context: ChannelHandlerContext) {
        switch mode {
        case .sniffing: pendingFlush = true
        case .grpc: context.flush()
        case .http1: break
        }
    }
}
