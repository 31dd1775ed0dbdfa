import Hummingbird
import Synchronization

/// What every request goes through, in order: trace id → metrics → the clinic data API
/// (`/v3`, `/v1`) → gateway surfaces → the router (management, OAuth, health, documents).
/// The enforced prefixes are dispatched before the router, so their requests never walk
/// its route tree only to miss.
struct CaregateResponder: HTTPResponder {
    typealias Context = CaregateContext
    private let chain: any HTTPResponder<CaregateContext>

    init(front middlewares: [any MiddlewareProtocol<Request, Response, CaregateContext>], router: Router<CaregateContext>) {
        var chain: any HTTPResponder<CaregateContext> = router.buildResponder()
        for middleware in middlewares.reversed() {
            chain = Link(middleware: middleware, next: chain)
        }
        self.chain = chain
    }

    func respond(to request: Request, context: CaregateContext) async throws -> Response {
        try await chain.respond(to: request, context: context)
    }

    /// One middleware in front of the rest of the chain.
    private struct Link: HTTPResponder {
        let middleware: any MiddlewareProtocol<Request, Response, CaregateContext>
        let next: any HTTPResponder<CaregateContext>

        func respond(to request: Request, context: CaregateContext) async throws -> Response {
            try await middleware.handle(request, context: context) { request, context in
                try await next.respond(to: request, context: context)
            }
        }
    }
}

/// The router's own error shaping: Hummingbird's router answers errors thrown below it
/// (a route's, or its not-found) in its own format before they could reach
/// ``TraceMiddleware``; this, its first middleware, answers them in ours. A path the router
/// knows under other methods is a 405 with `Allow` (Hummingbird's router would say 404).
struct RouterErrorMiddleware: RouterMiddleware {
    typealias Context = CaregateContext
    let methods: RouterMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = methods.allowed(request.uri.path)
            let refusal: any Error = allowed.isEmpty ? error : APIError.methodNotAllowed(request.method, allow: allowed)
            return TraceMiddleware.response(for: refusal, request: request, traceID: context.traceID, logger: context.logger)
        } catch {
            return TraceMiddleware.response(for: error, request: request, traceID: context.traceID, logger: context.logger)
        }
    }
}

/// The methods of each route of the router, filled in once its routes are registered.
final class RouterMethods: Sendable {
    private let routes = Mutex<[(method: String, segments: [Substring])]>([])

    func set(_ routes: [(method: String, path: String)]) {
        self.routes.withLock { $0 = routes.map { ($0.method, $0.path.split(separator: "/")) } }
    }

    /// The methods of the routes the router would match `path` with, as Hummingbird's trie
    /// matches: segment by segment a literal beats a `{name}` and there is no backtracking
    /// (`/manage/tokens/rotate` is the POST route's only, not `DELETE /manage/tokens/{tokenId}`'s).
    /// `HEAD` comes with `GET`.
    func allowed(_ path: String) -> [String] {
        let segments = path.split(separator: "/")
        var candidates = routes.withLock { $0 }.filter { $0.segments.count == segments.count }
        for (i, segment) in segments.enumerated() {
            let literal = candidates.filter { $0.segments[i] == segment }
            candidates = literal.isEmpty ? candidates.filter { $0.segments[i].hasPrefix("{") } : literal
        }
        var methods = candidates.map(\.method)
        if methods.contains("GET") { methods.append("HEAD") }
        let order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return Set(methods).sorted { (order.firstIndex(of: $0) ?? 99, $0) < (order.firstIndex(of: $1) ?? 99, $1) }
    }
}
