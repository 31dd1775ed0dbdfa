import CaregateStore
import Hummingbird
import Scopes

/// One authorised call of the clinic data API, as a handler sees it.
struct ClinicCall {
    var request: Request
    let credential: Credential
    let surface: Surface
    /// Decoded path segments (`["v3", "patients", "pat_…"]`); empty for routes without parameters.
    let segments: [String]
    let store: ClinicStore
    let operation: ClinicOperation
    /// Where each path parameter is among ``segments`` (the version prefix is segment 0).
    let parameterIndex: [String: Int]
    var organization: String { credential.organizationID }
    /// The surface's catalog and the credential's effective set on it.
    var catalog: CompiledCatalog { surface.catalog }
    var effective: ScopeSet { credential.effective[surface.index] }

    /// A path parameter that is a record id of the prefix the operation declares; a malformed
    /// one is simply not found.
    func id(_ name: String) throws -> String {
        let id = segments[parameterIndex[name]!]
        let prefix = operation.ids[name]!
        guard Validate.isID(id, prefix: prefix) else { throw APIError.notFound("no \(prefix) record \"\(Validate.safe(id))\"") }
        return id
    }

    /// The query string, read with exactly the parameters the operation declares, each value
    /// checked against its rule and the required ones present.
    func query() throws -> QueryInput { try QueryInput(request.uri.query, declared: operation.query) }

    /// The JSON body, read with exactly the fields the operation's body schema declares.
    mutating func body() async throws -> JSONInput {
        guard case .json(_, let schema) = operation.body else { return try await JSONInput(&request, allowed: []) }
        return try await JSONInput(&request, allowed: schema.propertyNames)
    }
}

typealias ClinicHandler = @Sendable (inout ClinicCall) async throws -> Response

/// `{"code":"success","data":…}` — the shape of seed 002's answers.
enum Success {
    struct Pagination {
        var limit: Int
        var nextCursor: String?
    }

    static func response(_ data: JSONValue, status: HTTPResponse.Status = .ok, pagination: Pagination? = nil) -> Response {
        var body: JSONValue = ["code": "success", "data": data]
        if let pagination {
            body.set("pagination", ["limit": .int(Int64(pagination.limit)), "nextCursor": .optional(pagination.nextCursor)])
        }
        return JSONResponse.make(body, status: status)
    }
}
