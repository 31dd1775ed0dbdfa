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

    struct Surface: Sendable {
        var prefix: String
        var catalog: CompiledCatalog
        var index: Int
        /// By route index: the handler, and whether it reads path parameters.
        var handlers: [(handler: ClinicHandler?, usesSegments: Bool)] = []
    }

    private(set) var surfaces: [Surface]
    let authenticator: RequestAuthenticator
    let store: ClinicStore
    let audit: AuditWriter

    /// `catalogs` are all served surfaces, in the resolver's order; the marketplace ones are this gateway's.
    init(catalogs: [CompiledCatalog], resolver: CredentialResolver, store: ClinicStore, audit: AuditWriter) {
        surfaces = catalogs.enumerated().compactMap { i, catalog in
            switch catalog.surface {
            case "marketplace-v3": Surface(prefix: "/v3", catalog: catalog, index: i)
            case "marketplace-v1": Surface(prefix: "/v1", catalog: catalog, index: i)
            default: nil
            }
        }
        authenticator = RequestAuthenticator(resolver: resolver)
        self.store = store
        self.audit = audit
        let handlers = ClinicRoutes.handlers()
        for i in surfaces.indices {
            let prefix = surfaces[i].prefix
            surfaces[i].handlers = surfaces[i].catalog.routes.map { route in
                (handlers["\(route.method) \(route.path.dropFirst(prefix.count))"], route.path.contains("{"))
            }
        }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard let surface = surfaces.first(where: { path.isPath(under: $0.prefix) }) else {
            return try await next(request, context)
        }
        return try await audit.recording(request, context) { event in try await enforce(request, context, surface, &event) }
    }

    private func enforce(_ request: Request, _ context: Context, _ surface: Surface, _ event: inout AuditEvent) async throws -> Response {
        let credential = try await authenticator.authenticate(request, &event)

        // 2. Route requirement.
        let effective = credential.effective[surface.index]
        let catalog = surface.catalog
        guard let method = Scopes.HTTPMethod(request.method.rawValue) else {
            throw APIError(.methodNotAllowed, "method_not_allowed", "Method \(request.method.rawValue) is not allowed")
        }
        let decision = catalog.decide(effective, method: method, path: request.uri.path, query: request.uri.query)
        switch decision {
        case .allowed(let route):
            let info = catalog.routes[route.index]
            event.route = info.template
            event.requiredScope = info.isPublic ? nil : info.requirement
            event.decision = "allowed"
            let entry = surface.handlers[route.index]
            guard let handler = entry.handler else { throw APIError.notFound("Not found") }
            var segments: [String] = []
            if entry.usesSegments {
                guard case .success(let decoded) = RequestPath.segments(request.uri.path) else { throw APIError.badRequest("invalid path") }
                segments = decoded
            }
            var call = ClinicCall(
                request: request, context: context, credential: credential, catalog: catalog, effective: effective,
                meBody: credential.meBody[surface.index], segments: segments, store: store)
            var response = try await handler(&call)
            if method == .head { response.body = .init() }
            return response
        case .insufficientScope(let route, let required):
            event.route = catalog.routes[route.index].template
            event.requiredScope = required
            throw APIError.insufficientScope(required)
        case .notFound, .methodNotAllowed, .invalidPath:
            throw APIError.refusal(decision, request)
        }
    }
}
