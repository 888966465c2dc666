import Foundation
import KeelNode
import NIOCore
import NIOHTTP1
import NIOPosix

/// etcd's HTTP endpoints on `--listen-metrics-urls`: `/health` (`{"health":"true"}`, false
/// while an alarm is raised or there is no leader, with etcd 3.5's `reason`), `/version`, and
/// `/metrics` in Prometheus text format.
final class HTTPEndpoints: Sendable {
    let channel: any Channel

    static func start(host: String, port: Int, core: ServerCore, group: any EventLoopGroup) async throws -> HTTPEndpoints {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(core: core))
                }
            }
            .bind(host: host, port: port).get()
        return HTTPEndpoints(channel: channel)
    }

    private init(channel: any Channel) { self.channel = channel }

    var port: Int { channel.localAddress?.port ?? 0 }

    func close() async { try? await channel.close() }

    /// The body and status of one GET.
    static func respond(path: String, core: ServerCore) -> (HTTPResponseStatus, String, String) {
        switch path.split(separator: "?").first.map(String.init) ?? path {
        case "/health":
            let (healthy, reason) = health(core)
            let body = healthy ? "{\"health\":\"true\",\"reason\":\"\"}" : "{\"health\":\"false\",\"reason\":\"\(reason)\"}"
            return (healthy ? .ok : .serviceUnavailable, "application/json", body)
        case "/version":
            return (.ok, "application/json", "{\"etcdserver\":\"\(ServerCore.etcdVersion)\",\"etcdcluster\":\"\(ServerCore.clusterVersion)\"}")
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4", core.metrics.render(node: core.node))
        default:
            return (.notFound, "text/plain", "404 page not found\n")
        }
    }

    static func health(_ core: ServerCore) -> (Bool, String) {
        if let a = core.kv.alarmList().first { return (false, "ALARM \(MaintenanceService.alarmName(a.alarm))") }
        if core.node.leaderAndTerm.leader == 0 { return (false, "RAFT NO LEADER") }
        return (true, "")
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let core: ServerCore
        private var head: HTTPRequestHead?

        init(core: ServerCore) { self.core = core }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case let .head(h): head = h
            case .body: break
            case .end:
                guard let h = head else { return }
                head = nil
                let (status, type, body) = h.method == .GET || h.method == .HEAD
                    ? HTTPEndpoints.respond(path: h.uri, core: core)
                    : (.methodNotAllowed, "text/plain", "Method Not Allowed\n")
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: type)
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
                if h.method != .HEAD {
                    context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                }
                let keepAlive = h.isKeepAlive
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                    if !keepAlive { context.close(promise: nil) }
                }
            }
        }
    }
}
