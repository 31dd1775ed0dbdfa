import HTTPTypes
import Hummingbird
import Scopes

/// The one enforcement pipeline, for every protected surface (the clinic data API and the
/// gateway surfaces alike): find the surface → open the audit record → authenticate (API key
/// or access token) → the credential's effective set on the surface (cached) → `decide` →
/// the surface's backend. Refusals take the same path and the same words on every surface.
/// Unknown routes and methods answer only after authentication, so nothing can be probed
/// without a credential; a refusal never depends on whether a record exists.
struct EnforcementMiddleware: RouterMiddleware {
    typealias Context = CaregateContext

    let registry: SurfaceRegistry
    let authenticator: RequestAuthenticator
    let audit: AuditWriter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Read once, and without a copy when the target has no query (see `targetPath`).
        let path = request.targetPath
        guard let surface = registry.surface(for: path) else { return try await next(request, context) }
        // A gateway surface's public routes (the practice API's token endpoint) are Caregate's own.
        if surface.isRouterPath(path) { return try await next(request, context) }
        let method = Scopes.HTTPMethod(request.method)
        return try await audit.recording(request, path: path, context) { event in
            let credential = try await authenticator.authenticate(request, &event)
            let decision = method.map { Self.decide(surface, credential.decisionSets[surface.decisionIndex], $0, path, request.uri.query) } ?? .methodNotAllowed
            event.note(decision, on: surface)
            if let route = decision.route { context.coreContext.endpointPath.value = surface.routeTemplates[route.index] }
            switch decision {
            case .allowed(let route):
                switch surface.backend {
                case .clinicAPI(let api):
                    return try await api.respond(request, path: path, route: route, credential: credential, surface: surface)
                case .upstream(let forwarder):
                    return try await forwarder.forward(
                        request, path: path, context: context, credential: credential, scopeHeader: credential.scopeHeader[surface.index])
                case .fhir(let api):
                    return try await api.respond(request, path: path, route: route, credential: credential, surface: surface)
                case .fhirGateway(let gateway):
                    return try await gateway.respond(request, path: path, route: route, context: context, credential: credential, surface: surface)
                case .notServed:
                    throw APIError.notFound()
                }
            case .insufficientScope(_, let required):
                throw APIError.insufficientScope(required, detail: surface.credentialTypeLimit(required, credential.type))
            case .methodNotAllowed:
                // A method no route table knows (PROPFIND) is a 405 where the path exists, else a 404.
                let allow = Self.allowedMethods(surface, path)
                guard !allow.isEmpty else { throw APIError.refusal(.notFound, request) }
                throw APIError.methodNotAllowed(request.method, allow: allow)
            case .notFound, .invalidPath:
                throw APIError.refusal(decision, request)
            }
        }
    }

    /// The one place a request is decided.
    static func decide(_ surface: Surface, _ effective: ScopeSet, _ method: Scopes.HTTPMethod, _ path: String, _ query: String?) -> Decision {
        surface.catalog.decide(effective, method: method, path: path, query: query)
    }

    /// The methods some route of `path` answers (the `Allow` of a 405): those a decision
    /// finds a route for, whatever the scopes, narrowed by a FHIR API that serves fewer (its
    /// read-only types take no writes).
    private static func allowedMethods(_ surface: Surface, _ path: String) -> [String] {
        let routed = Scopes.HTTPMethod.allCases.filter { decide(surface, .empty, $0, path, nil).route != nil }.map(\.description)
        if case .fhir = surface.backend, !routed.isEmpty, let served = FHIRAPI.allowedMethods(path) { return served }
        return routed
    }
}
