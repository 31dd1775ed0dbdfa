import AsyncHTTPClient
import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Scopes
import Synchronization

/// The backend of a gateway surface: forwards an allowed request to the upstream without
/// the caller's credential, with identity headers the upstream can trust. The upstream's
/// answer (its errors included) goes back unchanged, small ones whole and large ones
/// streamed; an unreachable upstream is a 502, a slow one a 504, both in our error shape.
struct UpstreamForwarder: Sendable {
    let surface: String
    let upstream: UpstreamConfiguration
    /// Bodiless requests to a plain-http upstream go through this pool (cheaper than
    /// async-http-client); everything else through async-http-client, streaming.
    let pool: UpstreamConnectionPool?
    let client: HTTPClient
    /// Peers (proxies in front of Caregate) whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    let trustedProxies: Set<String>
    /// The upstream URL's path, put before the request's.
    let basePath: String
    /// A plain-http upstream's address, for ``DirectForwardingHandler`` (nil for https).
    let direct: LoopUpstreams.Target?

    init(surface: String, upstream: UpstreamConfiguration, pool: UpstreamConnectionPool?, client: HTTPClient, trustedProxies: Set<String>) {
        self.surface = surface
        self.upstream = upstream
        self.pool = pool
        self.client = client
        self.trustedProxies = trustedProxies
        let path = URLComponents(string: upstream.url)?.path ?? ""
        basePath = path.hasSuffix("/") ? String(path.dropLast()) : path
        direct = pool.map { LoopUpstreams.Target(host: $0.host, port: $0.port, hostHeader: $0.hostHeader) }
    }

    /// Answers up to this size are buffered rather than streamed.
    static let bufferedResponseLimit = 256 * 1024
    /// Request bodies of a known length up to this size are read whole before forwarding.
    static let bufferedRequestLimit: Int64 = 256 * 1024

    /// Headers that belong to one connection (RFC 9110 §7.6.1) and never cross a proxy.
    static let hopByHopNames = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host",
    ]
    static let hopByHop = Set(hopByHopNames)

    /// Headers that would let a caller steer the upstream past the gate's decision: method
    /// overrides (the gate decided the request's own method) and forwarding headers (set
    /// below from Caregate's own view of the connection).
    static let callerControlled: Set<String> = [
        "x-http-method-override", "x-http-method", "x-method-override", "x-original-method",
        "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-prefix",
        "x-forwarded-server", "x-real-ip", "x-client-ip", "x-original-url", "x-rewrite-url",
    ]

    /// The request's headers as the upstream gets them: without the caller's credential,
    /// connection headers, anything claiming to be ours (in any spelling: a name with `_` is
    /// dropped whole, as nginx does, since CGI-style servers fold `X_Caregate_Scopes` into the
    /// same variable as `X-Caregate-Scopes`), method overrides and forwarding headers; with our
    /// identity headers and `X-Forwarded-For`/`X-Forwarded-Proto` as Caregate saw the call.
    /// Only when the peer is a configured trusted proxy are its `X-Forwarded-*` kept (the
    /// caller's address appended to its `X-Forwarded-For`).
    func outboundHeaders(_ request: Request, _ context: CaregateContext, _ credential: Credential, _ scopeHeader: String) -> HTTPHeaders {
        outboundHeaders(request.headers, traceID: context.traceID, caller: context.remoteIP, credential, scopeHeader)
    }

    /// ``outboundHeaders(_:_:_:_:)`` of a request's fields, its trace id and the caller's address.
    func outboundHeaders(_ fields: HTTPFields, traceID: String, caller: String?, _ credential: Credential, _ scopeHeader: String) -> HTTPHeaders {
        // Handed over whole: `HTTPHeaders.add` would check each name again, and these are names
        // HTTP types has already checked, or Caregate's own.
        HTTPHeaders(outboundFields(fields, traceID: traceID, caller: caller, credential, scopeHeader))
    }

    /// ``outboundHeaders(_:traceID:caller:_:_:)`` as name-value pairs.
    func outboundFields(_ fields: HTTPFields, traceID: String, caller: String?, _ credential: Credential, _ scopeHeader: String) -> [(String, String)] {
        outboundFields(fields.lazy.map { ($0.name.rawName, $0.value) }, traceID: traceID, caller: caller, credential, scopeHeader)
    }

    /// The same of a request's HTTP/1 headers, as the direct path reads them before they become
    /// HTTP types (which keep every field as it came, but for the first `Host`, withheld here).
    func outboundFields(_ headers: HTTPHeaders, traceID: String, caller: String?, _ credential: Credential, _ scopeHeader: String) -> [(String, String)] {
        outboundFields(headers.lazy.map { ($0.name, $0.value) }, traceID: traceID, caller: caller, credential, scopeHeader)
    }

    private func outboundFields(
        _ fields: some Collection<(String, String)>, traceID: String, caller: String?, _ credential: Credential, _ scopeHeader: String
    ) -> [(String, String)] {
        var headers: [(String, String)] = []
        headers.reserveCapacity(fields.count + 9)
        for (name, value) in fields where !Self.isWithheld(name) {
            headers.append((name, value))
        }
        let caller = caller ?? "unknown"
        var forwardedFor = caller
        var proto = "http"
        if trustedProxies.contains(caller) {
            let earlier = fields.filter { UpstreamAnswerParser.equalsLowercased($0.0, "x-forwarded-for") }.map(\.1).joined(separator: ", ")
            if !earlier.isEmpty { forwardedFor = earlier + ", " + caller }
            proto = fields.first { UpstreamAnswerParser.equalsLowercased($0.0, "x-forwarded-proto") }?.1 ?? "http"
        }
        forEachOwnField(traceID: traceID, credential, scopeHeader, forwardedFor: forwardedFor, proto: proto) { headers.append(($0, $1)) }
        return headers
    }

    /// The fields Caregate adds to every forwarded request, in order: who the credential is, the
    /// trace id, and (from Caregate's own view of the connection) who called and how.
    func forEachOwnField(
        traceID: String, _ credential: Credential, _ scopeHeader: String, forwardedFor: String, proto: String, _ field: (String, String) -> Void
    ) {
        field("X-Caregate-Client", credential.keyID)
        field("X-Caregate-App", credential.appID)
        field("X-Caregate-Credential-Type", credential.type.rawValue)
        field("X-Caregate-Organization", credential.organizationID)
        field("X-Caregate-Scopes", scopeHeader)
        field("X-Caregate-Trace-Id", traceID)
        field("X-Forwarded-For", forwardedFor)
        field("X-Forwarded-Proto", proto)
    }

    /// Whether a caller's field (its name in any letter case) stays behind: connection fields,
    /// the credential, anything claiming to be ours or spelt with `_`, and the caller-controlled
    /// ones.
    static func isWithheld(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { isWithheld(UnsafeRawBufferPointer($0)) }
    }

    static func isWithheld(_ name: UnsafeRawBufferPointer) -> Bool {
        if name.contains(UInt8(ascii: "_")) { return true }
        if name.count >= 11, UpstreamAnswerParser.equalsLowercased(UnsafeRawBufferPointer(rebasing: name[0..<11]), "x-caregate-") { return true }
        guard name.count < withheldByLength.count else { return false }
        return withheldByLength[name.count].contains { UpstreamAnswerParser.equalsLowercased(name, $0) }
    }

    /// ``withheldNames`` by their length, as bytes: a name is compared with those of its length only.
    private static let withheldByLength: [[[UInt8]]] = {
        var table = [[[UInt8]]](repeating: [], count: (withheldNames.map(\.utf8.count).max() ?? 0) + 1)
        for name in withheldNames { table[name.utf8.count].append(Array(name.utf8)) }
        return table
    }()

    private static let withheldNames = hopByHopNames + ["authorization", "x-organization-id"] + callerControlled.sorted()

    /// The upstream's answer headers, without the ones that belong to its connection.
    static func answerHeaders(_ headers: HTTPHeaders) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in headers {
            if let fieldName = HTTPField.Name(name), !hopByHop.contains(fieldName.canonicalName) {
                fields.append(HTTPField(name: fieldName, value: value))
            }
        }
        return fields
    }

    func forward(_ request: Request, path: String, context: CaregateContext, credential: Credential, scopeHeader: String) async throws -> Response {
        let target = path + (request.uri.query.map { "?" + $0 } ?? "")
        let headers = outboundHeaders(request, context, credential, scopeHeader)
        let hasBody = request.headers[.contentLength].map { $0 != "0" } ?? false || request.headers[.transferEncoding] != nil
        if let pool, !hasBody, [.get, .head, .delete, .options].contains(request.method) {
            var head = HTTPRequestHead(version: .http1_1, method: .init(rawValue: request.method.rawValue), uri: basePath + target, headers: headers)
            head.headers.replaceOrAdd(name: "Host", value: pool.hostHeader)
            head.headers.remove(name: "Expect")  // nothing to send after a 100 Continue
            let answer: UpstreamConnectionPool.Answer
            do {
                answer = try await pool.execute(head, timeout: .milliseconds(Int64(upstream.timeoutSeconds * 1000)))
            } catch .timeout {
                throw timeoutError()
            } catch {
                context.logger.warning("upstream unreachable", metadata: ["surface": "\(self.surface)", "error": "\(error)"])
                throw unavailableError()
            }
            let status = HTTPResponse.Status(code: Int(answer.head.status.code))
            switch answer {
            case .buffered(let head, let body):
                return Response(status: status, headers: Self.answerHeaders(head.headers), body: .init(byteBuffer: body))
            case .streaming(let head, let body):
                return Response(status: status, headers: Self.answerHeaders(head.headers), body: ResponseBody(asyncSequence: body))
            }
        }

        let declared = request.headers[.contentLength].flatMap(Int64.init)
        if let declared, declared > upstream.maxBodyBytes { throw Self.tooLarge(upstream.maxBodyBytes) }
        var outbound = HTTPClientRequest(url: upstream.base + target)
        outbound.method = .init(rawValue: request.method.rawValue)
        outbound.headers = headers
        // A small body is read whole and sent as bytes; a larger one streams through, once: the
        // request body allows one reader, and async-http-client asks again when it retries on
        // a fresh connection, which must fail that request (a 502), not the process.
        var reader: OneReader?
        if let length = declared, length <= Self.bufferedRequestLimit {
            outbound.body = .bytes(try await request.body.collect(upTo: Int(length)))
        } else if let length = declared {
            reader = OneReader(request.body, limit: upstream.maxBodyBytes)
            outbound.body = .stream(reader!, length: .known(length))
        } else if request.headers[.transferEncoding] != nil {
            reader = OneReader(request.body, limit: upstream.maxBodyBytes)
            outbound.body = .stream(reader!, length: .unknown)
        }
        let reply = try await execute(outbound, reader: reader, logger: context.logger)
        let status = HTTPResponse.Status(code: Int(reply.status.code))
        let answerHeaders = Self.answerHeaders(reply.headers)
        // A small answer of known length is read whole and written in one go (far fewer hops
        // between the two connections); anything else streams through as it arrives.
        if let length = reply.headers.first(name: "content-length").flatMap(Int.init), length <= Self.bufferedResponseLimit {
            let body = try await reply.body.collect(upTo: length)
            return Response(status: status, headers: answerHeaders, body: .init(byteBuffer: body))
        }
        return Response(status: status, headers: answerHeaders, body: ResponseBody(asyncSequence: reply.body))
    }

    /// Sends a request through async-http-client: a 504 when the upstream is too slow, a 413
    /// when the streamed body went past the limit, a 502 when it cannot be reached.
    private func execute(_ outbound: HTTPClientRequest, reader: OneReader?, logger: Logger) async throws -> HTTPClientResponse {
        do {
            return try await client.execute(outbound, deadline: .now() + .milliseconds(Int64(self.upstream.timeoutSeconds * 1000)))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .getConnectionFromPoolTimeout {
            throw timeoutError()
        } catch is CancellationError {
            throw CancellationError()
        } catch where reader?.exceeded == true {
            throw Self.tooLarge(upstream.maxBodyBytes)
        } catch {
            logger.warning("upstream unreachable", metadata: ["surface": "\(self.surface)", "error": "\(error)"])
            throw unavailableError()
        }
    }

    /// One upstream answer read whole, for a backend that checks it before passing it on.
    struct Exchange: Sendable {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: ByteBuffer
    }

    /// Sends one request to the upstream and reads its answer whole, up to `limit` bytes (past
    /// it: a 502, as an answer that cannot be checked is not passed on). `headers` come from
    /// ``outboundHeaders(_:_:_:_:)``; the body's own headers are set here.
    func exchange(
        method: HTTPRequest.Method, target: String, headers: HTTPHeaders, body: ByteBuffer?, limit: Int, logger: Logger
    ) async throws -> Exchange {
        var outbound = HTTPClientRequest(url: upstream.base + target)
        outbound.method = .init(rawValue: method.rawValue)
        outbound.headers = headers
        outbound.headers.remove(name: "Content-Length")
        outbound.headers.remove(name: "Expect")
        if let body {
            outbound.body = .bytes(body)
        } else {
            outbound.headers.remove(name: "Content-Type")
        }
        let reply = try await execute(outbound, reader: nil, logger: logger)
        let collected: ByteBuffer
        do {
            collected = try await reply.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.badGateway, "bad_gateway", "The upstream of \(surface) answered more than \(limit) bytes, more than Caregate reads to check an answer")
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.warning("upstream answer cut off", metadata: ["surface": "\(self.surface)", "error": "\(error)"])
            throw unavailableError()
        }
        return Exchange(status: HTTPResponse.Status(code: Int(reply.status.code)), headers: Self.answerHeaders(reply.headers), body: collected)
    }

    static func tooLarge(_ limit: Int64) -> APIError {
        APIError(.contentTooLarge, "payload_too_large", "the request body may be at most \(limit) bytes on this surface")
    }

    func timeoutError() -> APIError {
        APIError(.gatewayTimeout, "gateway_timeout", "The upstream of \(surface) did not answer within \(self.upstream.timeoutSeconds) s")
    }

    func unavailableError() -> APIError {
        APIError(.badGateway, "bad_gateway", "The upstream of \(surface) is unavailable")
    }
}

/// A request body that can be read once, up to `limit` bytes: a second reader gets an error
/// instead of the trap the underlying unicast sequence would raise, and a body that grows past
/// the limit (chunked, or longer than it said) ends the forwarding with ``exceeded`` set.
final class OneReader: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    struct SecondReader: Error {}
    struct TooLarge: Error {}

    private let body: RequestBody
    private let limit: Int64
    private let taken = Mutex(false)
    private let tooLarge = Mutex(false)

    init(_ body: RequestBody, limit: Int64) {
        self.body = body
        self.limit = limit
    }

    /// Whether the body went past the limit.
    var exceeded: Bool { tooLarge.withLock { $0 } }

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: RequestBody.AsyncIterator?
        let reader: OneReader
        var read: Int64 = 0
        mutating func next() async throws -> ByteBuffer? {
            guard base != nil else { throw SecondReader() }
            guard let chunk = try await base!.next() else { return nil }
            read += Int64(chunk.readableBytes)
            if read > reader.limit {
                reader.tooLarge.withLock { $0 = true }
                throw TooLarge()
            }
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        let first = taken.withLock { taken in
            defer { taken = true }
            return !taken
        }
        return AsyncIterator(base: first ? body.makeAsyncIterator() : nil, reader: self)
    }
}
