import CaregateStore
import Hummingbird
import Scopes

/// The backend of the clinic data API's surfaces (`/v3`, `/v1`): the handler of each
/// catalog route, found by the index `decide` returned.
struct ClinicAPI: Sendable {
    /// By route index: the operation (nil for a catalog route the API does not serve).
    let operations: [ClinicOperation?]
    /// By route index: where each path parameter is among the path's segments.
    let parameterIndexes: [[String: Int]]
    /// `GET …/marketplace/me`: answered from the credential, without a handler call.
    let meRoute: Int?
    let store: ClinicStore

    init(catalog: CompiledCatalog, prefix: String, store: ClinicStore, operations table: [ClinicOperation] = ClinicRoutes.operations) {
        let byKey = Dictionary(uniqueKeysWithValues: table.map { ($0.key, $0) })
        operations = catalog.routes.map { byKey["\($0.method) \($0.path.dropFirst(prefix.count))"] }
        parameterIndexes = catalog.routes.map { route in
            var indexes: [String: Int] = [:]
            for (i, segment) in route.path.split(separator: "/").enumerated() where segment.hasPrefix("{") {
                indexes[String(segment.dropFirst().dropLast())] = i
            }
            return indexes
        }
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
            guard let operation = operations[route.index] else { throw APIError.notFound("Not found") }
            var segments: [String] = []
            if !parameterIndexes[route.index].isEmpty {
                guard case .success(let decoded) = RequestPath.segments(path) else { throw APIError.badRequest("invalid path") }
                segments = decoded
            }
            var call = ClinicCall(
                request: request, credential: credential, surface: surface, segments: segments, store: store, operation: operation,
                parameterIndex: parameterIndexes[route.index])
            response = try await operation.handler(&call)
        }
        if request.method == .head { response.body = .init() }
        return response
    }
}
