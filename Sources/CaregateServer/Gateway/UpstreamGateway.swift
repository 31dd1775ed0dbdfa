import AsyncHTTPClient
import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import Scopes

/// Gateway mode: enforcement in front of services Caregate does not host (the practice API
/// of seed 004, the product routes of seed 003). For a request on a gateway surface:
/// authenticate → effective scopes (cached) → `decide` on the surface's route table →
/// forward to the upstream without the caller's credential, with identity headers the
/// upstream can trust → audit. The upstream's answer (its errors included) goes back
/// unchanged, small ones whole and large ones streamed; an unreachable upstream is a 502,
/// a slow one a 504, both in our error shape.
struct UpstreamGateway: RouterMiddleware {
    typealias Context = CaregateContext

    struct Surface: Sendable {
        var catalog: CompiledCatalog
        /// Index of the catalog in ``Credential/effective``.
        var index: Int
        var upstream: UpstreamConfiguration
        /// Whether some route of the catalog is public (then Caregate serves it itself).
        var hasPublicRoutes: Bool
        /// Bodiless requests to a plain-http upstream go through this pool (cheaper than
        /// async-http-client); everything else through async-http-client, streaming.
        var pool: UpstreamConnectionPool?
        /// The upstream URL's path, put before the request's.
        var basePath: String
    }

    /// Path prefixes (`/api/2.0`, `/fhir/R4`, …) → surface, longest first.
    private let prefixes: [(prefix: String, surface: Int)]
    private let surfaces: [Surface]
    let authenticator: RequestAuthenticator
    let audit: AuditWriter
    let client: HTTPClient
    /// Peers (proxies in front of Caregate) whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    let trustedProxies: Set<String>

    /// `catalogs` are all served surfaces, in the resolver's order.
    init(
        catalogs: [CompiledCatalog], upstreams: [UpstreamConfiguration], pools: [String: UpstreamConnectionPool], resolver: CredentialResolver,
        audit: AuditWriter, client: HTTPClient, trustedProxies: Set<String> = []
    ) {
        var surfaces: [Surface] = []
        var prefixes: [(String, Int)] = []
        for upstream in upstreams {
            guard let index = catalogs.firstIndex(where: { $0.surface == upstream.surface }) else { continue }
            let catalog = catalogs[index]
            let path = URLComponents(string: upstream.url)?.path ?? ""
            surfaces.append(Surface(
                catalog: catalog, index: index, upstream: upstream, hasPublicRoutes: catalog.routes.contains(where: \.isPublic),
                pool: pools[upstream.surface], basePath: path.hasSuffix("/") ? String(path.dropLast()) : path))
            for prefix in Self.prefixes(of: catalog) { prefixes.append((prefix, surfaces.count - 1)) }
        }
        self.surfaces = surfaces
        self.prefixes = prefixes.sorted { $0.0.count > $1.0.count }
        authenticator = RequestAuthenticator(resolver: resolver)
        self.audit = audit
        self.client = client
        self.trustedProxies = trustedProxies
    }

    /// The leading literal segments (at most two) of each route: the paths a surface owns.
    static func prefixes(of catalog: CompiledCatalog) -> Set<String> {
        Set(catalog.routes.compactMap { route in
            let literal = route.path.split(separator: "/").prefix { !$0.contains("{") && !$0.contains("*") }.prefix(2)
            return literal.isEmpty ? nil : "/" + literal.joined(separator: "/")
        })
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.targetPath
        guard let match = prefixes.first(where: { path.isPath(under: $0.prefix) })
        else { return try await next(request, context) }
        let surface = surfaces[match.surface]
        guard let method = Scopes.HTTPMethod(request.method) else {
            throw APIError(.methodNotAllowed, "method_not_allowed", "Method \(request.method.rawValue) is not allowed")
        }
        // Public routes (the practice API's token endpoint) are Caregate's own.
        if surface.hasPublicRoutes, case .allowed(let route) = surface.catalog.decide(.empty, method: method, path: path, query: request.uri.query),
           surface.catalog.routes[route.index].isPublic {
            return try await next(request, context)
        }
        return try await audit.recording(request, path: path, context) { event in try await enforce(request, path, context, method, surface, &event) }
    }

    private func enforce(
        _ request: Request, _ path: String, _ context: Context, _ method: Scopes.HTTPMethod, _ surface: Surface, _ event: inout AuditEvent
    ) async throws -> Response {
        let credential = try await authenticator.authenticate(request, &event)
        let catalog = surface.catalog
        let decision = catalog.decide(credential.effective[surface.index], method: method, path: path, query: request.uri.query)
        event.note(decision, in: catalog)
        switch decision {
        case .allowed:
            return try await forward(request, path, context, credential, surface)
        case .insufficientScope(_, let required):
            if let scope = catalog.scope(named: required), !scope.credentialTypes.contains(credential.type) {
                throw APIError.insufficientScope(
                    required,
                    detail: "A credential of type \(credential.type.rawValue) cannot carry \(required) (allowed: \(scope.credentialTypes.map(\.rawValue).joined(separator: ", "))).")
            }
            throw APIError.insufficientScope(required)
        case .notFound, .methodNotAllowed, .invalidPath:
            throw APIError.refusal(decision, request)
        }
    }

    /// Answers up to this size are buffered rather than streamed.
    static let bufferedResponseLimit = 256 * 1024

    /// Headers that belong to one connection (RFC 9110 §7.6.1) and never cross a proxy.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host",
    ]

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
    private func outboundHeaders(_ request: Request, _ context: Context, _ credential: Credential, _ surface: Surface) -> HTTPHeaders {
        var headers = HTTPHeaders()
        for field in request.headers {
            let name = field.name.canonicalName
            if Self.hopByHop.contains(name) || name == "authorization" || name == "x-organization-id" || name.hasPrefix("x-caregate-")
                || name.utf8.contains(UInt8(ascii: "_")) || Self.callerControlled.contains(name) { continue }
            headers.add(name: field.name.rawName, value: field.value)
        }
        headers.add(name: "X-Caregate-Client", value: credential.keyID)
        headers.add(name: "X-Caregate-App", value: credential.appID)
        headers.add(name: "X-Caregate-Credential-Type", value: credential.type.rawValue)
        headers.add(name: "X-Caregate-Organization", value: credential.organizationID)
        headers.add(name: "X-Caregate-Scopes", value: credential.scopeHeader[surface.index])
        headers.add(name: "X-Caregate-Trace-Id", value: context.traceID)
        let caller = context.remoteIP ?? "unknown"
        if trustedProxies.contains(caller) {
            let earlier = request.headers[values: .xForwardedFor].joined(separator: ", ")
            headers.add(name: "X-Forwarded-For", value: earlier.isEmpty ? caller : earlier + ", " + caller)
            headers.add(name: "X-Forwarded-Proto", value: request.headers[values: .xForwardedProto].first ?? "http")
        } else {
            headers.add(name: "X-Forwarded-For", value: caller)
            headers.add(name: "X-Forwarded-Proto", value: "http")
        }
        return headers
    }

    /// The upstream's answer headers, without the ones that belong to its connection.
    private static func answerHeaders(_ headers: HTTPHeaders) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in headers where !hopByHop.contains(name.lowercased()) {
            if let fieldName = HTTPField.Name(name) { fields.append(HTTPField(name: fieldName, value: value)) }
        }
        return fields
    }

    private func forward(_ request: Request, _ path: String, _ context: Context, _ credential: Credential, _ surface: Surface) async throws -> Response {
        let target = path + (request.uri.query.map { "?" + $0 } ?? "")
        let headers = outboundHeaders(request, context, credential, surface)
        let hasBody = request.headers[.contentLength].map { $0 != "0" } ?? false || request.headers[.transferEncoding] != nil
        if let pool = surface.pool, !hasBody, [.get, .head, .delete, .options].contains(request.method) {
            var head = HTTPRequestHead(version: .http1_1, method: .init(rawValue: request.method.rawValue), uri: surface.basePath + target, headers: headers)
            head.headers.replaceOrAdd(name: "Host", value: pool.port == 80 ? pool.host : "\(pool.host):\(pool.port)")
            head.headers.remove(name: "Expect")  // nothing to send after a 100 Continue
            let answer: UpstreamConnectionPool.Answer
            do {
                answer = try await pool.execute(head, timeout: .milliseconds(Int64(surface.upstream.timeoutSeconds * 1000)))
            } catch .timeout {
                throw timeoutError(surface)
            } catch {
                context.logger.warning("upstream unreachable", metadata: ["surface": "\(surface.catalog.surface)", "error": "\(error)"])
                throw unavailableError(surface)
            }
            let status = HTTPResponse.Status(code: Int(answer.head.status.code))
            switch answer {
            case .buffered(let head, let body):
                return Response(status: status, headers: Self.answerHeaders(head.headers), body: .init(byteBuffer: body))
            case .streaming(let head, let body):
                return Response(status: status, headers: Self.answerHeaders(head.headers), body: ResponseBody(asyncSequence: body))
            }
        }

        var outbound = HTTPClientRequest(url: surface.upstream.base + target)
        outbound.method = .init(rawValue: request.method.rawValue)
        outbound.headers = headers
        if let length = request.headers[.contentLength].flatMap(Int64.init) {
            outbound.body = .stream(request.body, length: .known(length))
        } else if request.headers[.transferEncoding] != nil {
            outbound.body = .stream(request.body, length: .unknown)
        }
        let upstream: HTTPClientResponse
        do {
            upstream = try await client.execute(outbound, deadline: .now() + .milliseconds(Int64(surface.upstream.timeoutSeconds * 1000)))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .getConnectionFromPoolTimeout {
            throw timeoutError(surface)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            context.logger.warning("upstream unreachable", metadata: ["surface": "\(surface.catalog.surface)", "error": "\(error)"])
            throw unavailableError(surface)
        }
        let status = HTTPResponse.Status(code: Int(upstream.status.code))
        let answerHeaders = Self.answerHeaders(upstream.headers)
        // A small answer of known length is read whole and written in one go (far fewer hops
        // between the two connections); anything else streams through as it arrives.
        if let length = upstream.headers.first(name: "content-length").flatMap(Int.init), length <= Self.bufferedResponseLimit {
            let body = try await upstream.body.collect(upTo: length)
            return Response(status: status, headers: answerHeaders, body: .init(byteBuffer: body))
        }
        return Response(status: status, headers: answerHeaders, body: ResponseBody(asyncSequence: upstream.body))
    }

    private func timeoutError(_ surface: Surface) -> APIError {
        APIError(.gatewayTimeout, "gateway_timeout", "The upstream of \(surface.catalog.surface) did not answer within \(surface.upstream.timeoutSeconds) s")
    }

    private func unavailableError(_ surface: Surface) -> APIError {
        APIError(.badGateway, "bad_gateway", "The upstream of \(surface.catalog.surface) is unavailable")
    }
}
