import CaregateStore
import HTTPTypes
import Hummingbird

/// One operation of the management API: everything the router, the caller check and the
/// OpenAPI document need, declared once (``ManagementAPI/operations``).
struct ManagementOperation: Sendable {
    typealias Handler = @Sendable (ManagementRoutes, inout ManagementCall) async throws -> Response

    struct Body: Sendable {
        /// Its name under `components/schemas`.
        var name: String
        var schema: Schema
        /// Whether a call may come without a body (every field optional).
        var optional = false
    }

    var method: HTTPRequest.Method
    /// OpenAPI form: `/manage/apps/{appId}`.
    var path: String
    var callers: Set<Principal.Kind>
    var summary: String
    var query: [QueryParameter] = []
    var body: Body?
    var success: HTTPResponse.Status
    /// The success body's name under `components/schemas` (nil: no body).
    var response: String?
    /// The success body's media type (for `application/x-ndjson`, `response` is one line's schema).
    var mediaType = "application/json"
    /// Whether the operation can answer 409 (the state forbids it: a taken slug, a rotated key).
    var conflicts = false
    var handler: Handler
}

/// One authorised call, as a management handler sees it.
struct ManagementCall {
    var request: Request
    let context: CaregateContext
    /// The caller, already checked against the operation's callers.
    let principal: Principal
    let operation: ManagementOperation

    func parameter(_ name: String) throws -> String { try context.parameters.require(name) }

    /// The JSON body, read with exactly the fields the operation's body schema declares.
    mutating func body() async throws -> JSONInput {
        try await JSONInput(&request, allowed: operation.body?.schema.propertyNames ?? [])
    }

    /// The query string, read with exactly the parameters the operation declares, each value checked against its rule.
    func query() throws -> QueryInput { try QueryInput(request.uri.query, declared: operation.query) }

    /// Whether a body came (for operations whose body is optional).
    var hasBody: Bool {
        request.headers[.contentType] != nil || (request.headers[.contentLength].flatMap(Int.init) ?? 0) > 0
    }
}

extension ManagementRoutes {
    /// Registers every operation of ``ManagementAPI/operations`` on the router, each behind its caller check.
    func register(on router: Router<CaregateContext>) {
        for operation in ManagementAPI.operations {
            router.on(RouterPath(operation.path), method: operation.method) { request, context in
                let principal = try await self.principal(request, allowed: operation.callers)
                var call = ManagementCall(request: request, context: context, principal: principal, operation: operation)
                return try await operation.handler(self, &call)
            }
        }
    }

    /// The caller of a management operation, from its `Authorization: Bearer` token.
    func principal(_ request: Request, allowed: Set<Principal.Kind>) async throws -> Principal {
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("Missing credential: send Authorization: Bearer <management token>", invalidToken: false)
        }
        guard RequestAuthenticator.hasBearerScheme(header), let principal = try await grants.authenticate(token: String(header.dropFirst(7)))
        else { throw APIError.unauthorized("Invalid management token", invalidToken: true) }
        guard allowed.contains(principal.kind) else {
            throw APIError.forbidden("This call needs a \(allowed.map(\.label).sorted().joined(separator: " or ")) token")
        }
        return principal
    }
}

extension Principal.Kind {
    var label: String {
        switch self {
        case .operator: "operator"
        case .developer: "developer"
        case .clinicAdmin: "clinic admin"
        }
    }
}
