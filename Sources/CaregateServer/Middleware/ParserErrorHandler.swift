import CaregateStore
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Answers a request the HTTP parser refused (a malformed head, an invalid header, a bad
/// chunk) in our error shape, `{code, message, trace_id}` with `X-Trace-Id`, then closes the
/// connection. Hummingbird would answer an empty 400; this handler sits between the HTTP codec
/// and Hummingbird and catches the parser's error first. When a response is still being
/// written on the connection, the error goes on to Hummingbird, which closes it.
final class ParserErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Requests read whose response has not ended yet.
    private var open = 0
    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { open += 1 }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { open = max(0, open - 1) }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError, open == 0, !answered else {
            context.fireErrorCaught(error)
            return
        }
        answered = true
        let traceID = TraceID.make()
        let body: JSONValue = ["code": "bad_request", "message": .string("Malformed HTTP request (\(parserError))"), "trace_id": .string(traceID)]
        let bytes = body.serialized()
        var fields: HTTPFields = [.contentType: "application/json", .connection: "close", .contentLength: String(bytes.count)]
        fields[HTTPField.Name("X-Trace-Id")!] = traceID
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .badRequest, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(bytes: bytes))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
