import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// On every client connection with a direct path, right before the codec that turns HTTP/1
/// parts into HTTP types: plans each request as NIO's parser read it (``DirectForwarding/plan(_:caller:)``),
/// once ``DirectByteIntake`` has left the connection's bytes to the parser.
/// A planned request is handed to ``DirectForwardingHandler`` and goes on past the codec as a
/// placeholder head and an end, which the handlers between (the parser errors', the connection
/// state's) count as they count any request; every other part goes through the codec as before.
/// Converting a forwarded request's head into HTTP types, only to read a few of its fields, cost
/// 6 % of its CPU (perf, 2026-12-02).
final class DirectRequestIntake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let forwarding: DirectForwarding
    private let direct: DirectForwardingHandler
    /// The codec's context: a planned request's parts are passed on from there, past the codec.
    private var codec: ChannelHandlerContext?
    private var caller: String?
    /// The request whose parts arrive was planned.
    private var planned = false

    init(_ forwarding: DirectForwarding, _ direct: DirectForwardingHandler) {
        self.forwarding = forwarding
        self.direct = direct
    }

    func handlerAdded(context: ChannelHandlerContext) {
        codec = try? context.pipeline.syncOperations.context(handlerType: HTTP1ToHTTPServerCodec.self)
        caller = context.channel.remoteAddress?.ipAddress
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        codec = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            planned = false
            if let codec, direct.forwardsDirectly, let plan = forwarding.plan(head, caller: caller) {
                planned = true
                direct.accept(.forward(plan))
                codec.fireChannelRead(NIOAny(HTTPRequestPart.head(DirectForwardingHandler.placeholder)))
                return
            }
        case .body(let body) where planned:
            // Never for a plan (only bodiless requests are planned), but passed on like the rest.
            codec?.fireChannelRead(NIOAny(HTTPRequestPart.body(body)))
            return
        case .end where planned:
            planned = false
            codec?.fireChannelRead(NIOAny(HTTPRequestPart.end(nil)))
            return
        default:
            break
        }
        context.fireChannelRead(data)
    }
}
