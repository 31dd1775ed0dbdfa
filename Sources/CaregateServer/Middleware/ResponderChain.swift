import Hummingbird

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
/// ``TraceMiddleware``; this, its first middleware, answers them in ours.
struct RouterErrorMiddleware: RouterMiddleware {
    typealias Context = CaregateContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return TraceMiddleware.response(for: error, traceID: context.traceID, logger: context.logger)
        }
    }
}
