import Foundation
import GRPCCore
import KeelIO
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One gRPC call on a `GRPCConnection`: its request side (fed on the connection's loop) and
/// its response side (written from any thread; every write hops to the loop). State marked
/// "loop" is touched only on the connection's event loop.
final class GRPCCall: @unchecked Sendable {
    let streamID: HTTP2StreamID
    let loop: any EventLoop
    let metadata: Metadata
    let descriptor: MethodDescriptor
    let context: ServerContext
    /// loop
    private var connection: GRPCConnection?
    /// loop
    private(set) var isStreaming = false
    /// loop
    private var inbound: AsyncThrowingStream<ByteBuffer, any Error>.Continuation?
    /// loop
    private var task: Task<Void, Never>?
    /// loop
    private var headersSent = false
    /// loop
    private var finished = false

    init(streamID: HTTP2StreamID, connection: GRPCConnection, loop: any EventLoop, metadata: Metadata,
         descriptor: MethodDescriptor, remotePeer: String, localPeer: String) {
        self.streamID = streamID
        self.connection = connection
        self.loop = loop
        self.metadata = metadata
        self.descriptor = descriptor
        context = ServerContext(descriptor: descriptor, remotePeer: remotePeer, localPeer: localPeer, cancellation: .init())
    }

    // MARK: Request side (loop)

    func startUnary(_ route: GRPCRoute, _ message: ByteBuffer) {
        task = Task { await route.run(self, .unary(message)) }
    }

    func startStreaming(_ route: GRPCRoute) {
        isStreaming = true
        let (stream, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        inbound = continuation
        task = Task { await route.run(self, .stream(stream)) }
    }

    func receive(_ message: ByteBuffer) { inbound?.yield(message) }

    /// Bytes of a client stream read by the handler and not yet given back to the client's
    /// window; given back in quarters of the window, one hop each.
    private let unreturned = Locked(0)

    /// The handler took a message of `size` bytes (plus its 5-byte prefix) from the stream.
    func consumed(_ size: Int) {
        let give: Int = unreturned.withLock { n in
            n += size + 5
            guard n >= GRPCConnection.streamWindow / 4 else { return 0 }
            defer { n = 0 }
            return n
        }
        guard give > 0 else { return }
        onLoop { [self] in connection?.credit(stream: streamID, bytes: give) }
    }

    func endOfMessages() {
        inbound?.finish()
        inbound = nil
    }

    /// The client reset the stream or the connection went away.
    func cancel() {
        guard !finished else { return }
        finished = true
        connection = nil
        inbound?.finish(throwing: CancellationError())
        inbound = nil
        task?.cancel()
        context.cancellation.cancel()
    }

    // MARK: Response side (any thread)

    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if loop.inEventLoop { body() } else { loop.execute(body) }
    }

    /// A unary answer: headers, the message and OK trailers in one hop.
    func respond(_ message: [UInt8], metadata: Metadata, trailers: Metadata) {
        onLoop { [self] in
            guard !finished, let connection else { return }
            finished = true
            self.connection = nil
            headersSent = true
            connection.write([Self.responseHeaders(metadata), .data(.init(data: .byteBuffer(Self.frame(message)))),
                              .headers(.init(headers: Self.trailers(nil, trailers), endStream: true))],
                             on: streamID, ends: true, promise: nil)
        }
    }

    /// Messages of a streaming answer, written and flushed together; returns once the last is
    /// written to the socket (the caller's backpressure), or throws when the call is over.
    func send(_ messages: [[UInt8]]) async throws {
        guard !messages.isEmpty else { return }
        let promise = loop.makePromise(of: Void.self)
        onLoop { [self] in
            guard !finished, let connection else {
                promise.fail(CancellationError())
                return
            }
            var frames: [HTTP2Frame.FramePayload] = []
            frames.reserveCapacity(messages.count + 1)
            if !headersSent {
                headersSent = true
                frames.append(Self.responseHeaders([:]))
            }
            for m in messages { frames.append(.data(.init(data: .byteBuffer(Self.frame(m))))) }
            connection.write(frames, on: streamID, ends: false, promise: promise)
        }
        try await promise.futureResult.get()
    }

    /// Sends response headers now (a streaming answer that was accepted).
    func sendHeaders(_ metadata: Metadata) {
        onLoop { [self] in
            guard !finished, !headersSent, let connection else { return }
            headersSent = true
            connection.write([Self.responseHeaders(metadata)], on: streamID, ends: false, promise: nil)
        }
    }

    /// Ends the call: OK when `error` is nil, else its status (a trailers-only response when
    /// nothing was sent yet).
    func finish(_ error: RPCError?, trailers: Metadata = [:]) {
        onLoop { [self] in
            guard !finished, let connection else { return }
            finished = true
            self.connection = nil
            var headers = headersSent ? HPACKHeaders() : HPACKHeaders([(":status", "200"), ("content-type", "application/grpc")])
            headers.add(contentsOf: Self.trailers(error, trailers))
            connection.write([.headers(.init(headers: headers, endStream: true))], on: streamID, ends: true, promise: nil)
        }
    }

    // MARK: Encoding

    static func frame(_ message: [UInt8]) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: 5 + message.count)
        b.writeInteger(UInt8(0))
        b.writeInteger(UInt32(message.count))
        b.writeBytes(message)
        return b
    }

    static func responseHeaders(_ metadata: Metadata) -> HTTP2Frame.FramePayload {
        var h = HPACKHeaders([(":status", "200"), ("content-type", "application/grpc")])
        add(metadata, to: &h)
        return .headers(.init(headers: h))
    }

    static func trailers(_ error: RPCError?, _ metadata: Metadata) -> HPACKHeaders {
        var h = HPACKHeaders()
        if let error {
            h.add(name: "grpc-status", value: "\(error.code.rawValue)")
            if !error.message.isEmpty { h.add(name: "grpc-message", value: percentEncoded(error.message)) }
            add(error.metadata, to: &h)
        } else {
            h.add(name: "grpc-status", value: "0")
        }
        add(metadata, to: &h)
        return h
    }

    static func add(_ metadata: Metadata, to h: inout HPACKHeaders) {
        for (key, value) in metadata {
            switch value {
            case .string(let s): h.add(name: key, value: s)
            case .binary(let b): h.add(name: key, value: Base64Text.encode(b))
            }
        }
    }

    /// gRPC's grpc-message encoding: bytes outside printable ASCII, and '%', as %XX.
    static func percentEncoded(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Standard base64 (binary metadata values).
enum Base64Text {
    static func encode(_ bytes: [UInt8]) -> String {
        [UInt8](bytes).withUnsafeBufferPointer { Foundation.Data(buffer: $0).base64EncodedString() }
    }
}
