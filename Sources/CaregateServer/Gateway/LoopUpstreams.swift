import NIOCore
import NIOHTTP1
import NIOPosix

/// Keep-alive connections to the plain-http upstreams, kept per event loop: a request that
/// ``DirectForwardingHandler`` forwards takes a connection of its client connection's own
/// loop, so the whole exchange (read the request, write it upstream, read the answer, write it
/// back) runs on one thread without a task or a thread hop.
final class LoopUpstreams: Sendable {
    /// Where one surface's upstream is.
    struct Target: Sendable {
        var host: String
        var port: Int
        /// The `Host` header the upstream gets.
        var hostHeader: String
    }

    private let loops: [ObjectIdentifier: NIOLoopBoundBox<IdleLinks>]
    /// Idle connections kept per loop and surface; more are closed when they come back.
    static let maxIdle = 128

    init(group: any EventLoopGroup, surfaces: Int) {
        var loops: [ObjectIdentifier: NIOLoopBoundBox<IdleLinks>] = [:]
        for loop in group.makeIterator() {
            loops[ObjectIdentifier(loop)] = .makeBoxSendingValue(IdleLinks(surfaces: surfaces), eventLoop: loop)
        }
        self.loops = loops
    }

    /// The idle connections of `loop` (nil for a loop of another group); only on `loop`.
    func idle(on loop: any EventLoop) -> IdleLinks? { loops[ObjectIdentifier(loop)]?.value }

    /// Closes every idle connection (at shutdown).
    func shutdown() {
        for bound in loops.values {
            bound.eventLoop.execute { bound.value.closeAll() }
        }
    }

    /// Opens a connection to `target` on `loop` (``UpstreamLink/init(channel:)`` then takes it, on `loop`).
    static func connect(_ target: Target, on loop: any EventLoop) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                // No HTTP handlers: the request goes out as the bytes the plan made, and the answer
                // is read by ``UpstreamRelay``'s own parser.
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UpstreamRelay()) }
            }
            .connect(host: target.host, port: target.port)
    }
}

/// One loop's idle upstream connections, by surface index.
final class IdleLinks {
    private var links: [[UpstreamLink]]

    init(surfaces: Int) { links = Array(repeating: [], count: surfaces) }

    /// The most recently used open connection to the surface's upstream, if any.
    func take(_ surface: Int) -> UpstreamLink? {
        while let link = links[surface].popLast() {
            if link.channel.isActive { return link }
        }
        return nil
    }

    /// Back after a complete keep-alive exchange (reading by itself).
    func put(_ link: UpstreamLink, _ surface: Int) {
        guard link.channel.isActive, links[surface].count < LoopUpstreams.maxIdle else {
            link.channel.close(promise: nil)
            return
        }
        links[surface].append(link)
    }

    func closeAll() {
        for link in links.joined() { link.channel.close(promise: nil) }
        links = links.map { _ in [] }
    }
}

/// One connection to an upstream and the handler that hands its answers on.
final class UpstreamLink {
    let channel: any Channel
    let relay: UpstreamRelay

    /// A connection opened by ``LoopUpstreams/connect(_:on:)``; only on its loop.
    init(channel: any Channel) throws {
        self.channel = channel
        relay = try channel.pipeline.syncOperations.handler(type: UpstreamRelay.self)
    }
}

/// Whoever waits for an upstream's answer (on the connection's loop).
protocol UpstreamReceiver: AnyObject {
    /// The final answer's head (interim ones are not passed on); `keepAlive`: the connection can
    /// carry another exchange once the answer has ended.
    func upstreamHead(_ head: UpstreamHead, keepAlive: Bool)
    func upstreamBody(_ part: ByteBuffer)
    func upstreamEnd()
    /// A read of the connection ended (the moment to flush, and to ask for more).
    func upstreamReadComplete()
    /// The connection closed or failed before the answer's end, or (`malformed`) the answer
    /// could not be read: the upstream answered, so the request is not sent again.
    func upstreamFailed(malformed: UpstreamAnswerParser.Malformed?)
}

/// Reads the upstream's answers (``UpstreamAnswerParser``) and hands their parts to the exchange
/// waiting for them. The connection reads by itself (asking for each read would re-register it
/// with epoll every time); the exchange turns `autoRead` off while its client cannot take more,
/// so a slow client slows the upstream down.
final class UpstreamRelay: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// The exchange in progress; nil between exchanges (an answer then is nobody's: the
    /// connection is closed).
    private(set) var receiver: (any UpstreamReceiver)?
    private var parser = UpstreamAnswerParser()

    /// An exchange's request is written: its answer goes to `receiver`. `head`: a `HEAD` request.
    func expect(_ receiver: any UpstreamReceiver, head: Bool) {
        self.receiver = receiver
        parser.expectAnswer(toHead: head)
    }

    /// The exchange gave up waiting (the connection is being closed).
    func abandon() { receiver = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        while let receiver {
            let part: UpstreamAnswerParser.Event?
            do {
                part = try parser.next(&buffer)
            } catch {
                failed(malformed: error as? UpstreamAnswerParser.Malformed ?? .init(description: "\(error)"))
                context.close(promise: nil)
                return
            }
            guard let part else { return }
            switch part {
            case .head(let head, let keepAlive): receiver.upstreamHead(head, keepAlive: keepAlive)
            case .body(let bytes): receiver.upstreamBody(bytes)
            case .end:
                self.receiver = nil
                receiver.upstreamEnd()
                // Bytes after an answer's end came before any next request was written: an
                // upstream out of step, whose connection is closed (failing whichever exchange now
                // holds it: one that took it from the idle ones tries a new connection).
                if buffer.readableBytes > 0 {
                    failed()
                    context.close(promise: nil)
                }
                return
            }
        }
        // An answer that is nobody's.
        if buffer.readableBytes > 0 { context.close(promise: nil) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        receiver?.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // An answer framed by the connection's end ends here; any other is cut.
        if let receiver, parser.closed() != nil {
            self.receiver = nil
            receiver.upstreamEnd()
        } else {
            failed()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failed()
        context.close(promise: nil)
    }

    private func failed(malformed: UpstreamAnswerParser.Malformed? = nil) {
        let receiver = self.receiver
        self.receiver = nil
        receiver?.upstreamFailed(malformed: malformed)
    }
}
