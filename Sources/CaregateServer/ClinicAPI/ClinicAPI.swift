import CaregateStore
import Hummingbird
import Scopes

/// The backend of the clinic data API's surfaces (`/v3`, `/v1`): the handler of each
/// catalog route, found by the index `decide` returned.
struct ClinicAPI: Sendable {
    /// By route index: the handler (nil for a catalog route the API does not serve).
    let handlers: [ClinicHandler?]
    /// By route index: whether the handler reads path parameters.
    let usesSegments: [Bool]
    /// `GET …/marketplace/me`: answered from the credential, without a handler call.
    let meRoute: Int?
    let store: ClinicStore

    init(catalog: CompiledCatalog, prefix: String, store: ClinicStore, handlers table: [String: ClinicHandler] = ClinicRoutes.handlers()) {
        handlers = catalog.routes.map { table["\($0.method) \($0.path.dropFirst(prefix.count))"] }
        usesSegments = catalog.routes.map { $0.path.contains("{") }
        meRoute = catalog.routes.firstIndex { $0.method == .get && $0.path == prefix + "/marketplace/me" }
        self.store = store
    }

    /// The answer to an allowed request.
    func respond(_ request: Request, path: String, route: RouteID, credential: Credential, surface: Surface) async throws -> Response {
        var response: Response
        if route.index == meRoute {
            if let query = request.uri.query { _ = try QueryInput(query, allowed: []) }
            response = Response(status: .ok, headers: JSONResponse.headers, body: .init(byteBuffer: credential.meBody[surface.index]))
        } else {
            guard let handler = handlers[route.index] else { throw APIError.notFound("Not found") }
            var segments: [String] = []
            if usesSegments[route.index] {
                guard case .success(let decoded) = RequestPath.segments(path) else { throw APIError.badRequest("invalid path") }
                segments = decoded
            }
            var call = ClinicCall(request: request, credential: credential, surface: surface, segments: segments, store: store)
            response = try await handler(&call)
        }
        if request.method == .head { response.body = .init() }
        return response
    }
}
