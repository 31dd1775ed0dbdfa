import CaregateStore
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// On every client connection, between Hummingbird's connection handler and its request
/// loop: forwards the requests ``DirectRequestIntake`` planned (each arrives here as a
/// placeholder head) on the connection's own event loop, and hands every other request on to
/// Hummingbird untouched.
///
/// Answers leave in the order requests came: while a request is forwarded here or answered by
/// Hummingbird, the parts of the next one wait (and, once one waits, the connection stops
/// reading), and the end of the input or a parser error waits for the answer in progress. A client that goes
/// away before its answer is recorded with status 499 (nginx's convention).
final class DirectForwardingHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamReceiver {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let forwarding: DirectForwarding
    private var context: ChannelHandlerContext?
    /// The context of the handler that turns HTTP/1 parts into HTTP types: an answer's head and
    /// body are written from there, in the upstream's HTTP/1 form, saving two conversions of its
    /// headers; its end goes through this handler's context, so that the handlers in between
    /// (the idle timeout's, the parser errors') see the answer end.
    private var http1: ChannelHandlerContext?
    /// ``DirectByteIntake``'s context: answers to the requests it read are written from there,
    /// as bytes; their ends stop at `ends`.
    private var bytesOut: ChannelHandlerContext?
    private var ends: DirectAnswerEnds?
    /// The answer written as bytes is chunked.
    private var chunkedBytes = false
    private var idle: IdleLinks?

    private enum Phase {
        case idle
        /// Hummingbird has the request.
        case passing
        /// Forwarded here.
        case forwarding
    }
    private var phase = Phase.idle
    private var requestEnded = true
    private var responseEnded = true
    /// Parts of the requests after the one in progress.
    private var queued = CircularBuffer<HTTPRequestPart>()
    private var readHeld = false
    /// Parts that waited are being taken in turn (``settle(_:)``).
    private var replaying = false
    private var inputClosedHeld = false
    private var errorHeld: (any Error)?

    /// The forwarded request in progress (nil once it is answered).
    private var plan: DirectForwarding.Plan?
    /// What the placeholder heads not taken yet stand for, in order.
    private var planned = CircularBuffer<DirectForwarding.Planned>()
    private var exchange = 0
    private var link: UpstreamLink?
    private var reused = false
    private var retried = false
    /// The answer's status once its head is written.
    private var status: Int?
    private var keepAlive = false
    private var heard = false
    private var silenceWatched = false
    private var awaitingWritability = false

    /// What the exchange's deadline is for.
    private enum Watch {
        /// No answer's head yet: a 504.
        case head
        /// A body under way: the upstream must not fall silent.
        case silence
    }
    /// The exchange in progress's deadline, and what happens at it.
    private var deadline: (at: NIODeadline, watch: Watch)?
    /// The one timer of the connection, due at `timerDue`: not scheduled and cancelled per
    /// request (that cost 2 % of a forwarded request's CPU) but left running across exchanges;
    /// when it fires before the current deadline it is scheduled again for it.
    private var timer: Scheduled<Void>?
    private var timerDue: NIODeadline?

    init(_ forwarding: DirectForwarding) { self.forwarding = forwarding }

    /// What a planned request's head is, past the codec: a method no parser produces.
    static let placeholder = HTTPRequest(method: HTTPRequest.Method("CAREGATE-DIRECT")!, scheme: nil, authority: nil, path: nil)

    /// Whether requests on this connection can be forwarded here (a loop with upstream connections).
    var forwardsDirectly: Bool { idle != nil }
    /// Whether requests on this connection can be answered here (past the codec to HTTP types).
    var answersDirectly: Bool { http1 != nil }

    /// What the next placeholder head stands for.
    func accept(_ planned: consuming DirectForwarding.Planned) {
        self.planned.append(planned)
    }

    /// Answers to the requests ``DirectByteIntake`` reads go out as bytes from its context.
    func answerInBytes(through context: ChannelHandlerContext, ends: DirectAnswerEnds) {
        bytesOut = context
        self.ends = ends
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        http1 = try? context.pipeline.syncOperations.context(handlerType: HTTP1ToHTTPServerCodec.self)
        // Without that codec (or on a loop of another group) every request goes on to Hummingbird.
        idle = http1 == nil ? nil : forwarding.upstreams.idle(on: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if plan != nil { clientGone() }
        timer?.cancel()
        timer = nil
        self.context = nil
        http1 = nil
        bytesOut = nil
    }

    // MARK: The client's side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        take(unwrapInboundIn(data), context)
    }

    private func take(_ part: HTTPRequestPart, _ context: ChannelHandlerContext) {
        if !queued.isEmpty || (phase != .idle && requestEnded) {
            queued.append(part)
            return
        }
        switch phase {
        case .idle:
            guard case .head(let head) = part else {
                context.fireChannelRead(wrapInboundOut(part))
                return
            }
            requestEnded = false
            responseEnded = false
            if head.method == Self.placeholder.method {
                guard let next = planned.popFirst() else {
                    // Cannot happen: the intake hands over a plan with each placeholder.
                    context.close(promise: nil)
                    return
                }
                phase = .forwarding
                switch consume next {
                case .forward(let plan): begin(plan, context)
                case .answer(let answer): self.answer(answer, context)
                }
            } else {
                phase = .passing
                context.fireChannelRead(wrapInboundOut(part))
            }
        case .passing:
            if case .end = part { requestEnded = true }
            context.fireChannelRead(wrapInboundOut(part))
            settle(context)
        case .forwarding:
            // Only bodiless requests are forwarded here: the end is all that follows the head.
            if case .end = part { requestEnded = true }
            settle(context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if !queued.isEmpty {
            readHeld = true
        } else {
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard phase == .passing, case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        context.write(data, promise: promise)
        responseEnded = true
        if queued.isEmpty && !inputClosedHeld && errorHeld == nil {
            settle(context)
        } else {
            // Not from inside Hummingbird's own write: the next request is replayed after it.
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute {
                guard let context = bound.value.context else { return }
                bound.value.settle(context)
            }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, awaitingWritability, let link {
            awaitingWritability = false
            try? link.channel.syncOptions?.setOption(.autoRead, value: true)
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent, phase == .forwarding || !queued.isEmpty {
            inputClosedHeld = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if phase == .forwarding || !queued.isEmpty {
            if errorHeld == nil { errorHeld = error }
            return
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if plan != nil { clientGone() }
        context.fireChannelInactive()
    }

    /// Once the request in progress is read and answered: the next one, and what was held for it.
    private func settle(_ context: ChannelHandlerContext) {
        guard phase != .idle, requestEnded, responseEnded else { return }
        phase = .idle
        // A request answered here ends within its own replay: the replay goes on with the next
        // part, and only then does what was held for the requests follow.
        guard !replaying else { return }
        if !queued.isEmpty {
            let parts = queued
            queued.removeAll()
            replaying = true
            for part in parts { take(part, context) }
            replaying = false
            context.fireChannelReadComplete()
        }
        // Reads are held only while parts wait; the end of the input and errors also wait for a
        // request forwarded here (Hummingbird takes them in order after a request it has).
        guard queued.isEmpty else { return }
        if phase != .forwarding {
            if let error = errorHeld {
                errorHeld = nil
                context.fireErrorCaught(error)
            }
            if inputClosedHeld {
                inputClosedHeld = false
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            }
        }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// An answer made here, written whole (as bytes, past NIO's encoder, like any answer to a
    /// request read as bytes), then the next request.
    private func answer(_ answer: LocalAnswer, _ context: ChannelHandlerContext) {
        if let bytesOut, let ends {
            bytesOut.write(NIOAny(IOData.byteBuffer(answer.bytes)), promise: nil)
            endInBytes(bytesOut, ends, context)
        } else {
            // Cannot happen: only requests read as bytes are answered here.
            context.close(promise: nil)
        }
        forwarding.finished(answer)
        responseEnded = true
        settle(context)
    }

    // MARK: The upstream's side

    private func begin(_ plan: DirectForwarding.Plan, _ context: ChannelHandlerContext) {
        self.plan = plan
        exchange += 1
        retried = false
        status = nil
        forwarding.metrics.started(plan)
        // The deadline covers the answer's head (connecting included); a body then streams.
        watch(.head, plan, context)
        if let link = idle?.take(plan.surface.index) {
            send(plan, on: link, reused: true)
        } else {
            connect(plan, context)
        }
    }

    private func connect(_ plan: DirectForwarding.Plan, _ context: ChannelHandlerContext) {
        let exchange = self.exchange
        let surface = plan.surface.index
        LoopUpstreams.connect(plan.upstream.target, on: context.eventLoop).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let channel):
                guard let link = try? UpstreamLink(channel: channel) else {
                    channel.close(promise: nil)
                    if exchange == self.exchange { unreachable(plan, "no HTTP handler on the new connection") }
                    return
                }
                // Too late for the exchange it was opened for (timed out): kept for the next.
                guard exchange == self.exchange, let current = self.plan else {
                    idle?.put(link, surface)
                    return
                }
                send(current, on: link, reused: false)
            case .failure(let error):
                if exchange == self.exchange, self.plan != nil { unreachable(plan, "\(error)") }
            }
        }
    }

    private func send(_ plan: DirectForwarding.Plan, on link: UpstreamLink, reused: Bool) {
        self.link = link
        self.reused = reused
        link.relay.expect(self, head: plan.method == .head)
        link.channel.writeAndFlush(plan.request, promise: nil)
    }

    func upstreamHead(_ head: UpstreamHead, keepAlive: Bool) {
        guard let plan, context != nil else { return }
        deadline = nil
        status = head.code
        self.keepAlive = keepAlive
        writeHead(head, plan)
        heard = true
        silenceWatched = false
    }

    func upstreamBody(_ part: ByteBuffer) {
        guard status != nil else { return }
        heard = true
        writeBody(part)
    }

    func upstreamReadComplete() {
        guard let context, let link, let plan else { return }
        (plan.inBytes ? bytesOut ?? context : context).flush()
        // The answer goes on past this read: from now on the upstream may not fall silent for long.
        // (An answer that ends in the read that brought its head never needs the watch.)
        if status != nil, !silenceWatched {
            silenceWatched = true
            watch(.silence, plan, context)
        }
        if !context.channel.isWritable, !awaitingWritability {
            awaitingWritability = true
            try? link.channel.syncOptions?.setOption(.autoRead, value: false)
        }
    }

    func upstreamEnd() {
        guard let plan, let context, let link else { return }
        guard let status else { return unreachable(plan, "an answer without a head") }
        writeEnd(plan, context)
        self.link = nil
        if awaitingWritability {
            awaitingWritability = false
            try? link.channel.syncOptions?.setOption(.autoRead, value: true)
        }
        if keepAlive {
            idle?.put(link, plan.surface.index)
        } else {
            link.channel.close(promise: nil)
        }
        finish(status: status, failed: false)
    }

    func upstreamFailed(malformed: UpstreamAnswerParser.Malformed?) {
        guard let plan, let context else { return }
        let link = self.link
        self.link = nil
        link?.channel.close(promise: nil)
        if status != nil {
            // Cut in the middle of the answer: the client's answer cannot end well either.
            context.close(promise: nil)
            finish(status: status!, failed: false)
        } else if let malformed {
            forwarding.logger.warning(
                "upstream answer malformed", metadata: ["surface": "\(plan.surface.name)", "error": "\(malformed)", "trace_id": "\(plan.traceID)"])
            fail(plan.upstream.forwarder.unavailableError())
        } else if reused && !retried {
            // An idle connection the upstream had closed meanwhile is replaced once.
            retried = true
            connect(plan, context)
        } else {
            unreachable(plan, "connection closed before the answer")
        }
    }

    private func unreachable(_ plan: DirectForwarding.Plan, _ reason: String) {
        forwarding.logger.warning(
            "upstream unreachable", metadata: ["surface": "\(plan.surface.name)", "error": "\(reason)", "trace_id": "\(plan.traceID)"])
        fail(plan.upstream.forwarder.unavailableError())
    }

    private func headTimedOut() {
        guard let plan, status == nil else { return }
        abandon()
        fail(plan.upstream.forwarder.timeoutError())
    }

    /// An upstream that stops sending in the middle of a body (while the client takes it) is
    /// given up after the timeout: the client's answer ends short.
    private func checkSilence() {
        guard let plan, let context, let status else { return }
        if heard || awaitingWritability {
            heard = false
            watch(.silence, plan, context)
            return
        }
        abandon()
        context.close(promise: nil)
        finish(status: status, failed: false)
    }

    /// Caregate's own answer (502, 504), in the error shape.
    private func fail(_ error: APIError) {
        guard let plan, let context else { return }
        let body = error.body(traceID: plan.traceID)
        // Its length is the body's, whatever the error's own fields say.
        let fields = error.responseHeaders.filter { $0.name != .contentLength }.map { ($0.name.rawName, $0.value) }
            + [("Content-Length", "\(body.readableBytes)")]
        writeHead(UpstreamHead(code: error.status.code, fields: fields), plan)
        // NIO's encoder leaves out the body of an answer to HEAD; so do answers written as bytes.
        if !(plan.inBytes && plan.method == .head) { writeBody(body) }
        writeEnd(plan, context)
        finish(status: error.status.code, failed: true)
    }

    // MARK: The answer

    /// The answer's head: as bytes past NIO's encoder for a request read as bytes, else in its
    /// HTTP/1 form from the codec's context (two conversions of its headers fewer).
    private func writeHead(_ head: UpstreamHead, _ plan: DirectForwarding.Plan) {
        if plan.inBytes, let bytesOut {
            let answer = forwarding.answerBytes(head, traceID: plan.traceID, toHead: plan.method == .head)
            chunkedBytes = answer.chunked
            bytesOut.write(NIOAny(IOData.byteBuffer(answer.head)), promise: nil)
        } else {
            chunkedBytes = false
            http1?.write(NIOAny(HTTPServerResponsePart.head(forwarding.answerHead(head, traceID: plan.traceID))), promise: nil)
        }
    }

    private func writeBody(_ part: ByteBuffer) {
        guard plan?.inBytes == true, let bytesOut else {
            http1?.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(part))), promise: nil)
            return
        }
        guard chunkedBytes else {
            bytesOut.write(NIOAny(IOData.byteBuffer(part)), promise: nil)
            return
        }
        // Framed as NIO's encoder frames a chunk; an empty part would end the body, so it is not written.
        guard part.readableBytes > 0 else { return }
        var size = ByteBufferAllocator().buffer(capacity: 24)
        size.writeString(String(part.readableBytes, radix: 16))
        size.writeStaticString("\r\n")
        bytesOut.write(NIOAny(IOData.byteBuffer(size)), promise: nil)
        bytesOut.write(NIOAny(IOData.byteBuffer(part)), promise: nil)
        bytesOut.write(NIOAny(IOData.byteBuffer(ByteBuffer(staticString: "\r\n"))), promise: nil)
    }

    /// The answer's end, through the handlers that count answers (idle timeout, graceful close);
    /// for an answer written as bytes it stops before NIO's codec (``DirectAnswerEnds``) and the
    /// bytes are flushed from where they were written.
    private func writeEnd(_ plan: DirectForwarding.Plan, _ context: ChannelHandlerContext) {
        guard plan.inBytes, let bytesOut, let ends else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if chunkedBytes { bytesOut.write(NIOAny(IOData.byteBuffer(ByteBuffer(staticString: "0\r\n\r\n"))), promise: nil) }
        endInBytes(bytesOut, ends, context)
    }

    /// The end of an answer written as bytes: it passes the counting handlers and stops at
    /// `ends`, and the bytes are flushed from where they were written.
    private func endInBytes(_ bytesOut: ChannelHandlerContext, _ ends: DirectAnswerEnds, _ context: ChannelHandlerContext) {
        ends.stopsNextEnd = true
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
        bytesOut.flush()
    }

    /// The client went away: the exchange is given up and recorded as 499.
    private func clientGone() {
        abandon()
        finish(status: 499, failed: false)
    }

    /// The upstream connection is closed without waiting for the rest of its answer.
    private func abandon() {
        guard let link else { return }
        self.link = nil
        link.relay.abandon()
        link.channel.close(promise: nil)
    }

    private func finish(status: Int, failed: Bool) {
        guard let plan else { return }
        self.plan = nil
        deadline = nil
        awaitingWritability = false
        forwarding.finished(plan, status: status, failed: failed)
        responseEnded = true
        if let context { settle(context) }
    }

    /// Sets the exchange's deadline, the upstream's timeout from now.
    private func watch(_ watch: Watch, _ plan: DirectForwarding.Plan, _ context: ChannelHandlerContext) {
        let at = NIODeadline.now() + plan.upstream.timeout
        deadline = (at, watch)
        // A timer due no later than the deadline wakes in time to look again.
        if let timerDue, timerDue <= at { return }
        schedule(at, context)
    }

    private func schedule(_ due: NIODeadline, _ context: ChannelHandlerContext) {
        timer?.cancel()
        timerDue = due
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { [self] in
            timer = nil
            timerDue = nil
            guard let deadline, let context = self.context else { return }
            guard NIODeadline.now() >= deadline.at else {
                schedule(deadline.at, context)
                return
            }
            self.deadline = nil
            switch deadline.watch {
            case .head: headTimedOut()
            case .silence: checkSilence()
            }
        }
    }
}
