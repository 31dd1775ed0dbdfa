import CaregateStore
import HTTPTypes
import Hummingbird
import Logging
import Scopes

/// Enforcement for the built-in clinic data API (`/v3/…`, `/v1/…`): authenticate the API key
/// and clinic → effective scopes (cached) → `decide` on the surface's route table →
/// handler → audit. Unknown routes answer 404 only after authentication, so nothing can
/// be probed without a key; a refusal never depends on whether a record exists.
struct ClinicGateway: RouterMiddleware {
    typealias Context = CaregateContext

    /// A reference, so that finding a request's surface copies nothing.
    final class Surface: Sendable {
        let prefix: String
        let catalog: CompiledCatalog
        let index: Int
        /// By route index: the handler (nil for a catalog route the API does not serve).
        let handlers: [ClinicHandler?]
        /// By route index: whether the handler reads path parameters.
        let usesSegments: [Bool]
        /// `GET …/marketplace/me`: answered from the credential, without a handler call.
        let meRoute: Int?

        init(prefix: String, catalog: CompiledCatalog, index: Int, handlers table: [String: ClinicHandler]) {
            self.prefix = prefix
            self.catalog = catalog
            self.index = index
            handlers = catalog.routes.map { table["\($0.method) \($0.path.dropFirst(prefix.count))"] }
            usesSegments = catalog.routes.map { $0.path.contains("{") }
            meRoute = catalog.routes.firstIndex { $0.method == .get && $0.path == prefix + "/marketplace/me" }
        }
    }

    let surfaces: [Surface]
    let authenticator: RequestAuthenticator
    let store: ClinicStore
    let audit: AuditWriter

    /// `catalogs` are all served surfaces, in the resolver's order; the marketplace ones are this gateway's.
    init(catalogs: [CompiledCatalog], resolver: CredentialResolver, store: ClinicStore, audit: AuditWriter) {
        let handlers = ClinicRoutes.handlers()
        surfaces = catalogs.enumerated().compactMap { i, catalog in
            switch catalog.surface {
            case "marketplace-v3": Surface(prefix: "/v3", catalog: catalog, index: i, handlers: handlers)
            case "marketplace-v1": Surface(prefix: "/v1", catalog: catalog, index: i, handlers: handlers)
            default: nil
            }
        }
        authenticator = RequestAuthenticator(resolver: resolver)
        self.store = store
        self.audit = audit
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Read once, and without a copy when the target has no query (see `targetPath`).
        let path = request.targetPath
        guard let surface = surfaces.first(where: { path.isPath(under: $0.prefix) }) else {
            return try await next(request, context)
        }
        return try await audit.recording(request, path: path, context) { event in try await enforce(request, path, context, surface, &event) }
    }

    private func enforce(_ request: Request, _ path: String, _ context: Context, _ surface: Surface, _ event: inout AuditEvent) async throws -> Response {
        let credential = try await authenticator.authenticate(request, &event)

        // 2. Route requirement.
        let catalog = surface.catalog
        guard let method = Scopes.HTTPMethod(request.method) else {
            throw APIError(.methodNotAllowed, "method_not_allowed", "Method \(request.method.rawValue) is not allowed")
        }
        let query = request.uri.query
        let decision = catalog.decide(credential.effective[surface.index], method: method, path: path, query: query)
        event.note(decision, in: catalog)
        switch decision {
        case .allowed(let route):
            var response: Response
            if route.index == surface.meRoute {
                if query != nil { _ = try QueryInput(query, allowed: []) }
                response = Response(status: .ok, headers: JSONResponse.headers, body: .init(byteBuffer: credential.meBody[surface.index]))
            } else {
                guard let handler = surface.handlers[route.index] else { throw APIError.notFound("Not found") }
                var segments: [String] = []
                if surface.usesSegments[route.index] {
                    guard case .success(let decoded) = RequestPath.segments(path) else { throw APIError.badRequest("invalid path") }
                    segments = decoded
                }
                var call = ClinicCall(request: request, credential: credential, surface: surface, segments: segments, store: store)
                response = try await handler(&call)
            }
            if method == .head { response.body = .init() }
            return response
        case .insufficientScope(_, let required):
            throw APIError.insufficientScope(required)
        case .notFound, .methodNotAllowed, .invalidPath:
            throw APIError.refusal(decision, request)
        }
    }
}
