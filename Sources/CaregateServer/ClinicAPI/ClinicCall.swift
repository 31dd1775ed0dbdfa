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
    var organization: String { credential.organizationID }
    /// The surface's catalog and the credential's effective set on it.
    var catalog: CompiledCatalog { surface.catalog }
    var effective: ScopeSet { credential.effective[surface.index] }

    /// A path id that must have the collection's prefix; a malformed one is simply not found.
    func pathID(_ i: Int, prefix: String) throws -> String {
        let id = segments[i]
        guard Validate.isID(id, prefix: prefix) else { throw APIError.notFound("no \(prefix) record \"\(Validate.safe(id))\"") }
        return id
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
