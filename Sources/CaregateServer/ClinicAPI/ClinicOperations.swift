import CaregateStore
import HTTPTypes
import Hummingbird

/// One operation of the clinic data API, keyed by method and path template without the
/// version (`GET /patients/{id}`; `/v1` and `/v3` share them): its parameters, body and
/// answer as the OpenAPI document gives them, and the handler, which reads exactly the
/// query parameters and body fields declared here.
struct ClinicOperation: Sendable {
    enum Body: Sendable {
        /// A JSON object (its name under `components/schemas`).
        case json(name: String, schema: Schema)
        /// An image: a binary body (`image/png`, …) or a multipart form with a `file` field.
        case image
    }

    var method: String
    var path: String
    /// Path parameters that are record ids, with their prefix (`id` → `pat`).
    var ids: [String: String] = [:]
    var query: [QueryParameter] = []
    var body: Body?
    var success: HTTPResponse.Status = .ok
    /// The `data` of the `{code, data}` answer (nil: an empty answer).
    var data: Schema?
    var paginated = false
    /// Whether the operation can answer 409.
    var conflicts = false
    var handler: ClinicHandler

    var key: String { "\(method) \(path)" }
}

extension ClinicOperation {
    /// The query parameters of a list: its filters, `limit` and `cursor`.
    static func listQuery(_ collection: ClinicCollection) -> [QueryParameter] {
        collection.filters.keys.sorted().map { name in
            QueryParameter(name: name, rule: ClinicRules.rule(for: name, in: collection), description: "Filter on \(name)")
        } + [
            QueryParameter(name: "limit", rule: .limit, description: "Page size (default 50)"),
            QueryParameter(name: "cursor", rule: .id(prefix: collection.idPrefix), description: "pagination.nextCursor of the previous page"),
        ]
    }

    static let providerID = QueryParameter(
        name: "providerId", rule: .id(prefix: "prv"), required: true, description: "The provider acting in the EHR (must exist in the clinic)")
    static let includeSOAP = QueryParameter(
        name: "includeSoapNote", rule: .flag, description: "true: include SOAP content (needs read:notes and read:soap_notes)")
}

/// The value rules of the collections' filters.
enum ClinicRules {
    /// Status values each collection knows.
    static let statuses: [String: [String]] = [
        "appointments": ["scheduled", "completed", "cancelled", "no_show"],
        "bills": ["open", "paid", "submitted"],
        "claims": ["submitted", "accepted", "denied", "paid"],
        "tasks": ["open", "completed", "cancelled"],
        "emails": ["queued", "sent", "received", "failed"],
    ]
    static let inventoryReasons = ["restock", "usage", "adjustment", "correction"]
    static let idPrefixes = ["patientId": "pat", "providerId": "prv", "facilityId": "fac", "noteId": "not", "productId": "prd"]

    static func rule(for name: String, in collection: ClinicCollection) -> ValueRule {
        if let prefix = idPrefixes[name] { return .id(prefix: prefix) }
        switch name {
        case "status": return .oneOf(statuses[collection.name] ?? [])
        case "direction": return .oneOf(["inbound", "outbound"])
        case "reason": return .oneOf(inventoryReasons)
        case "startDate", "endDate", "dateOfBirth": return .date
        case "email": return .email
        case "phone": return .phone
        case "active": return .flag
        case "sku": return .text(max: 64)
        default: return .searchText
        }
    }
}
