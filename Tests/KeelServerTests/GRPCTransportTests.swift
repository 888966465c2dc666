import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import KeelGRPC
import KeelProto
import KeelServer
import KeelTestSupport
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import SwiftProtobuf
import XCTest

/// Keel's own gRPC-over-HTTP/2 layer (`GRPCConnection`) against grpc-swift's client: the
/// statuses gRPC defines for unknown methods and oversized messages, flow control in both
/// directions on one long stream, and many calls at once on one connection.
final class GRPCTransportTests: XCTestCase {
    var h: ServerHarness!
    var client: GRPCClient<HTTP2ClientTransport.Posix>!
    var runner: Task<Void, any Error>!

    override func setUp() async throws {
        h = ServerHarness(dataDir: try temporaryDirectory(self) + "/grpc.etcd")
        try await h.start { $0.maxRequestBytes = 4096 }
        client = GRPCClient(transport: try .http2NIOPosix(target: .ipv4(host: "127.0.0.1", port: h.server!.clientPorts[0]),
                                                          transportSecurity: .plaintext))
        let c = client!
        runner = Task { try await c.runConnections() }
    }

    override func tearDown() async throws {
        client?.beginGracefulShutdown()
        runner?.cancel()
        await h?.stop()
    }

    func testUnknownMethodIsUnimplemented() async throws {
        let descriptor = MethodDescriptor(fullyQualifiedService: "etcdserverpb.KV", method: "Frobnicate")
        do {
            _ = try await client.unary(request: ClientRequest(message: Etcdserverpb_RangeRequest()), descriptor: descriptor,
                                       serializer: ProtobufSerializer<Etcdserverpb_RangeRequest>(),
                                       deserializer: ProtobufDeserializer<Etcdserverpb_RangeResponse>(), options: .defaults) { try $0.message }
            XCTFail("an unknown method answered")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, .unimplemented)
            XCTAssertEqual(e.message, "unknown method Frobnicate for service etcdserverpb.KV")
        }
        let service = MethodDescriptor(fullyQualifiedService: "etcdserverpb.Nope", method: "Range")
        do {
            _ = try await client.unary(request: ClientRequest(message: Etcdserverpb_RangeRequest()), descriptor: service,
                                       serializer: ProtobufSerializer<Etcdserverpb_RangeRequest>(),
                                       deserializer: ProtobufDeserializer<Etcdserverpb_RangeResponse>(), options: .defaults) { try $0.message }
            XCTFail("an unknown service answered")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, .unimplemented)
            XCTAssertEqual(e.message, "unknown service etcdserverpb.Nope")
        }
    }

    /// etcd's receive limit is `--max-request-bytes` plus 512 KiB; a longer message gets gRPC's
    /// RESOURCE_EXHAUSTED, a request over the request limit etcd's "request is too large", and
    /// the connection keeps serving.
    func testOversizedMessages() async throws {
        let kv = Etcdserverpb_KV.Client(wrapping: client)
        var p = Etcdserverpb_PutRequest()
        p.key = Data("big".utf8)
        p.value = Data(repeating: 120, count: 4096 + 512 * 1024 + 10)
        do {
            _ = try await kv.put(p)
            XCTFail("an oversized message was accepted")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, .resourceExhausted)
            XCTAssertTrue(e.message.hasPrefix("grpc: received message larger than max ("), e.message)
        }
        p.value = Data(repeating: 120, count: 8192)
        do {
            _ = try await kv.put(p)
            XCTFail("a request over --max-request-bytes was accepted")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, .invalidArgument)
            XCTAssertEqual(e.message, "etcdserver: request is too large")
        }
        p.value = Data("small".utf8)
        _ = try await kv.put(p)
    }

    /// One watch stream carries more than the stream's receive window (1 MiB) of requests and
    /// more than a client window of events: both directions need WINDOW_UPDATEs.
    func testFlowControlOnOneLongStream() async throws {
        let kv = Etcdserverpb_KV.Client(wrapping: client)
        let watches = 40, keySize = 60 * 1024  // 2.4 MB of create requests
        let puts = 30, valueSize = 3000         // and events in both directions
        let responses = try await Etcdserverpb_Watch.Client(wrapping: client).watch(requestProducer: { writer in
            for i in 0..<watches {
                var c = Etcdserverpb_WatchCreateRequest()
                c.key = Data(repeating: UInt8(ascii: "a"), count: keySize - 3) + Data(String(format: "%03d", i).utf8)
                var r = Etcdserverpb_WatchRequest()
                r.createRequest = c
                try await writer.write(r)
            }
            var c = Etcdserverpb_WatchCreateRequest()
            c.key = Data("v".utf8)
            c.rangeEnd = Data("w".utf8)
            var r = Etcdserverpb_WatchRequest()
            r.createRequest = c
            try await writer.write(r)
            try await Task.sleep(nanoseconds: 5_000_000_000)
        }, onResponse: { response in
            var created = 0, events = 0
            for try await m in response.messages {
                if m.created { created += 1 }
                events += m.events.count
                if created == watches + 1 && events == 0 {
                    for i in 0..<puts {
                        var p = Etcdserverpb_PutRequest()
                        p.key = Data("v\(i)".utf8)
                        p.value = Data(repeating: 120, count: valueSize)
                        _ = try await kv.put(p)
                    }
                }
                if events == puts { break }
            }
            return (created, events)
        })
        XCTAssertEqual(responses.0, watches + 1)
        XCTAssertEqual(responses.1, puts)
    }

    /// Hundreds of calls in flight on one connection, each answered with its own key.
    func testManyConcurrentCallsOnOneConnection() async throws {
        let kv = Etcdserverpb_KV.Client(wrapping: client)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 {
                group.addTask {
                    var p = Etcdserverpb_PutRequest()
                    p.key = Data("c\(i)".utf8)
                    p.value = Data("\(i)".utf8)
                    _ = try await kv.put(p)
                    var r = Etcdserverpb_RangeRequest()
                    r.key = p.key
                    r.serializable = i % 2 == 0
                    let got = try await kv.range(r)
                    XCTAssertEqual(got.kvs.first?.value, p.value)
                }
            }
            try await group.waitForAll()
        }
        var count = Etcdserverpb_RangeRequest()
        count.key = Data("c".utf8)
        count.rangeEnd = Data("d".utf8)
        count.countOnly = true
        let all = try await kv.range(count)
        XCTAssertEqual(all.count, 300)
    }
}

/// A raw HTTP/2 client (NIOHTTP2 in frame mode) for what grpc-swift's client never sends.
final class RawHTTP2Tests: XCTestCase {
    /// Collects every frame the server sends.
    final class Frames: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame
        let frames = TestLocked<[HTTP2Frame]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let f = unwrapInboundIn(data)
            frames.withLock { $0.append(f) }
        }
    }

    static func requestHeaders(_ path: String) -> HPACKHeaders {
        HPACKHeaders([(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
                      ("content-type", "application/grpc"), ("te", "trailers")])
    }

    static func message(_ m: some SwiftProtobuf.Message) throws -> ByteBuffer {
        let bytes: [UInt8] = try m.serializedBytes()
        var b = ByteBuffer()
        b.writeInteger(UInt8(0))
        b.writeInteger(UInt32(bytes.count))
        b.writeBytes(bytes)
        return b
    }

    /// Go's gRPC client pings whenever data arrives (bandwidth estimation) and cancels streams
    /// freely; a server that took that for abuse (NIOHTTP2's default 200 per 30 s) dropped the
    /// connection with GOAWAY(0), and the client retried puts that had been applied. 1,000
    /// pings and 300 cancelled watches later the connection still answers.
    func testBusyGoClientIsNotAbuse() async throws {
        let h = ServerHarness(dataDir: try temporaryDirectory(self) + "/raw.etcd")
        try await h.start()
        defer { Task { await h.stop() } }
        let collector = Frames()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    // The test's own client must tolerate 1,000 PING acks.
                    var c = NIOHTTP2Handler.ConnectionConfiguration()
                    c.controlFrameRateLimit.maximumCount = 100_000
                    try ch.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client, connectionConfiguration: c))
                    try ch.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: h.server!.clientPorts[0]).get()
        defer { channel.close(promise: nil) }
        for i in 0..<1000 {
            channel.write(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: UInt64(i)), ack: false)), promise: nil)
        }
        var watch = Etcdserverpb_WatchRequest()
        watch.createRequest.key = Data("w".utf8)
        for i in 0..<300 {
            let id = HTTP2StreamID(1 + 2 * i)
            channel.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: Self.requestHeaders("/etcdserverpb.Watch/Watch")))), promise: nil)
            channel.write(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(try Self.message(watch))))), promise: nil)
            channel.write(HTTP2Frame(streamID: id, payload: .rstStream(.cancel)), promise: nil)
        }
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("x".utf8)
        let last = HTTP2StreamID(601)
        channel.write(HTTP2Frame(streamID: last, payload: .headers(.init(headers: Self.requestHeaders("/etcdserverpb.KV/Range")))), promise: nil)
        try await channel.writeAndFlush(HTTP2Frame(streamID: last, payload: .data(.init(data: .byteBuffer(try Self.message(range)), endStream: true))))
        let deadline = Date().addingTimeInterval(10)
        var status: String?
        while status == nil && Date() < deadline {
            try await Task.sleep(nanoseconds: 20_000_000)
            for f in collector.frames.withLock({ $0 }) {
                if case .goAway(_, let code, _) = f.payload { XCTFail("the server sent GOAWAY \(code)"); return }
                if f.streamID == last, case .headers(let hs) = f.payload, hs.endStream { status = hs.headers.first(name: "grpc-status") }
            }
        }
        XCTAssertEqual(status, "0")
        let pongs = collector.frames.withLock { $0.filter { if case .ping(_, ack: true) = $0.payload { return true } else { return false } }.count }
        XCTAssertEqual(pongs, 1000)
    }
}
