import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// On every client connection with a direct path, before NIO's HTTP/1 parser: reads the
/// connection's bytes itself (``DirectRequestReader``) and plans each bodiless request whose
/// path is a gateway's (``DirectForwarding/plan(_:caller:)``). A planned request goes to
/// ``DirectForwardingHandler`` as a placeholder head and end from the codec to HTTP types (as
/// ``DirectRequestIntake``'s do), and its answer is written as bytes from here, past NIO's
/// HTTP/1 encoder: a forwarded request then passes neither NIO codec, which cost about 15 %
/// of its CPU (perf, 2026-12-03).
///
/// Any other request's head goes on to the parser as it came, and the reading goes on after
/// it. From the first request this reader does not take whole (a body, another version, a
/// byte outside its grammar) every byte of the connection goes to the parser, which reads or
/// refuses it as before; so does any byte still unread when the input ends or fails.
final class DirectByteIntake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let forwarding: DirectForwarding
    private let direct: DirectForwardingHandler
    private let ends: DirectAnswerEnds
    /// The codec's context: a planned request's placeholder goes on from there.
    private var codec: ChannelHandlerContext?
    private var caller: String?
    /// Bytes of a head not whole yet.
    private var unread: ByteBuffer?
    /// Every byte goes to the parser from now on.
    private var parserReads = false
    /// The credential the last request was allowed by, for the next one that presents it again.
    private var remembered = RememberedCredential()

    // Made once: a request part wrapped for the pipeline is boxed on the heap each time it is
    // made. Never mutated; copies share the box.
    nonisolated(unsafe) private static let placeholderHead = NIOAny(HTTPRequestPart.head(DirectForwardingHandler.placeholder))
    nonisolated(unsafe) private static let placeholderEnd = NIOAny(HTTPRequestPart.end(nil))

    init(_ forwarding: DirectForwarding, _ direct: DirectForwardingHandler, _ ends: DirectAnswerEnds) {
        self.forwarding = forwarding
        self.direct = direct
        self.ends = ends
    }

    func handlerAdded(context: ChannelHandlerContext) {
        codec = try? context.pipeline.syncOperations.context(handlerType: HTTP1ToHTTPServerCodec.self)
        caller = context.channel.remoteAddress?.ipAddress
        direct.answerInBytes(through: context, ends: ends)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        codec = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !parserReads, let codec, direct.answersDirectly else {
            toParser(data, context)
            return
        }
        var bytes = unwrapInboundIn(data)
        if var held = unread.take() {
            held.writeBuffer(&bytes)
            bytes = held
        }
        while bytes.readableBytes > 0 {
            let outcome = bytes.withUnsafeReadableBytes { DirectRequestReader.read($0) }
            switch outcome {
            case .incomplete:
                unread = bytes
                return
            case .other:
                parserReads = true
                context.fireChannelRead(wrapInboundOut(bytes))
                return
            case .bodiless(let head):
                let planned = bytes.withUnsafeReadableBytes {
                    forwarding.plan(head, $0, caller: caller, forwards: direct.forwardsDirectly, remembered: &remembered)
                }
                let request = bytes.readSlice(length: head.length)!
                guard let planned else {
                    // The pipeline's: the parser reads this head as it reads any.
                    context.fireChannelRead(wrapInboundOut(request))
                    continue
                }
                if case .forward(let plan) = planned { plan.inBytes = true }
                // Moved, not copied: a copy retains, and then releases, each reference it holds.
                direct.accept(consume planned)
                codec.fireChannelRead(Self.placeholderHead)
                codec.fireChannelRead(Self.placeholderEnd)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { flushUnread(context) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        flushUnread(context)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        flushUnread(context)
        context.fireChannelInactive()
    }

    /// What is left of a head goes to the parser, which decides what it was.
    private func flushUnread(_ context: ChannelHandlerContext) {
        guard let held = unread.take() else { return }
        parserReads = true
        context.fireChannelRead(wrapInboundOut(held))
        context.fireChannelReadComplete()
    }

    private func toParser(_ data: NIOAny, _ context: ChannelHandlerContext) {
        parserReads = true
        if let held = unread.take() { context.fireChannelRead(wrapInboundOut(held)) }
        context.fireChannelRead(data)
    }
}

/// Right after the codec to HTTP types, on a connection with ``DirectByteIntake``: the end of
/// an answer written as bytes still passes the handlers that count requests and answers (the
/// connection state's idle timeout and graceful close, the parser errors'), and stops here,
/// before the codec and NIO's encoder, which never saw its head.
final class DirectAnswerEnds: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The next answer's end written stops here.
    var stopsNextEnd = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if stopsNextEnd, case .end = unwrapOutboundIn(data) {
            stopsNextEnd = false
            promise?.succeed(())
            return
        }
        context.write(data, promise: promise)
    }
}
