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
    let resolver: CredentialResolver
    let store: ClinicStore
    let audit: AuditWriter

    init(catalogs: [CompiledCatalog], resolver: CredentialResolver, store: ClinicStore, audit: AuditWriter) {
        surfaces = catalogs.enumerated().compactMap { i, catalog in
            switch catalog.surface {
            case "marketplace-v3": Surface(prefix: "/v3", catalog: catalog, index: i)
            case "marketplace-v1": Surface(prefix: "/v1", catalog: catalog, index: i)
            default: nil
            }
        }
        self.resolver = resolver
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
        guard let surface = surfaces.first(where: { path == $0.prefix || path.hasPrefix($0.prefix + "/") }) else {
            return try await next(request, context)
        }
        var event = AuditEvent(
            at: Clock.millis(), organizationID: nil, appID: nil, keyID: nil, method: request.method.rawValue, route: nil,
            path: String(path.prefix(512)), requiredScope: nil, decision: "denied", status: 0, traceID: context.traceID)
        do {
            let response = try await enforce(request, context, surface, &event)
            event.status = response.status.code
            audit.record(event)
            return response
        } catch let error as APIError {
            event.status = error.status.code
            audit.record(event)
            throw error
        } catch {
            event.status = 500
            audit.record(event)
            throw error
        }
    }

    private func enforce(_ request: Request, _ context: Context, _ surface: Surface, _ event: inout AuditEvent) async throws -> Response {
        // 1. Credential: Bearer API key (never in the query string) and the clinic.
        guard let authorization = request.headers[.authorization] else {
            throw APIError.unauthorized("Missing credential: send Authorization: Bearer <API key>", invalidToken: false)
        }
        guard authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else {
            throw APIError.unauthorized("Authorization must use the Bearer scheme", invalidToken: true)
        }
        let key = String(authorization.dropFirst(7))
        guard let organizationHeader = request.headers[.organizationID] else {
            throw APIError.badRequest("X-Organization-Id header is required")
        }
        guard let organizationID = Identifier.organizationID(fromClientForm: organizationHeader) else {
            throw APIError.badRequest("X-Organization-Id must be an organization id (org_<32 hex> or its UUID form)")
        }
        event.organizationID = organizationID
        let credential: Credential
        switch try await resolver.resolve(key: key, organizationID: organizationID) {
        case .invalidKey:
            throw APIError.unauthorized("Invalid, expired or revoked credential", invalidToken: true)
        case .notInstalled:
            throw APIError.unauthorized("This credential's app is not installed in (or not bound to) organization \(organizationID)", invalidToken: true)
        case .ok(let found):
            credential = found
        }
        event.appID = credential.appID
        event.keyID = credential.keyID

        // 2. Route requirement.
        let effective = credential.effective[surface.index]
        let catalog = surface.catalog
        guard let method = Scopes.HTTPMethod(request.method.rawValue) else {
            throw APIError(.methodNotAllowed, "method_not_allowed", "Method \(request.method.rawValue) is not allowed")
        }
        switch catalog.decide(effective, method: method, path: request.uri.path, query: request.uri.query) {
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
        case .notFound:
            throw APIError.notFound("No route \(request.method.rawValue) \(Validate.safe(request.uri.path))")
        case .methodNotAllowed:
            throw APIError(.methodNotAllowed, "method_not_allowed", "Method \(request.method.rawValue) is not allowed on this path")
        case .invalidPath(let error):
            throw APIError.badRequest("Invalid path: \(error)")
        }
    }
}
