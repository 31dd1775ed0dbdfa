import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import Scopes

/// The operator's calls: developers, organizations, sample data, token-signing keys and management tokens.
extension ManagementRoutes {
    /// The caller's own token is replaced: the new one is shown once, the presented one stops at once.
    func rotateToken(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        var expiresAt: Int64?
        if call.hasBody {
            expiresAt = try Self.expiresAt(try await call.body())
        }
        let presented = String(call.request.headers[.authorization]!.dropFirst(7))  // principal() read it
        let (token, record) = try await grants.rotateToken(presented, of: principal, expiresAt: expiresAt)
        return JSONResponse.make(tokenJSON(record, token: token), status: .created)
    }

    /// The operator issues a token for a developer (`dev_…`) or a clinic (`org_…`).
    func issueToken(_ call: inout ManagementCall) async throws -> Response {
        let body = try await call.body()
        let subject = try body.string("subjectId", max: 100)!
        let kind: Principal.Kind
        let subjectID: String
        if Validate.isID(subject, prefix: "dev"), try await grants.developer(subject) != nil {
            (kind, subjectID) = (.developer, subject)
        } else if let organization = Identifier.organizationID(fromClientForm: subject), try await grants.organization(organization) != nil {
            (kind, subjectID) = (.clinicAdmin, organization)
        } else {
            throw APIError.notFound("no developer or organization \"\(Validate.safe(subject))\"")
        }
        let (token, record) = try await grants.issueToken(kind: kind, subject: subjectID, expiresAt: try Self.expiresAt(body))
        return JSONResponse.make(tokenJSON(record, token: token), status: .created)
    }

    func listTokens(_ call: inout ManagementCall) async throws -> Response {
        let query = try call.query()
        let subject = query["subjectId"].map { Identifier.organizationID(fromClientForm: $0) ?? $0 }
        let tokens = try await grants.managementTokens(subjectID: subject)
        return JSONResponse.make(["code": "success", "data": .array(tokens.map { tokenJSON($0) })] as JSONValue)
    }

    /// The operator ends a developer's or clinic admin's token at once.
    func revokeToken(_ call: inout ManagementCall) async throws -> Response {
        let id = try call.parameter("tokenId")
        guard id.utf8.count == 16, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
              try await grants.revokeManagementToken(id: id)
        else { throw APIError.notFound("no active developer or clinic-admin token \"\(Validate.safe(id))\"") }
        return Response(status: .noContent)
    }

    /// The published keys: those that sign (access tokens; id_tokens, with an RSA key), and
    /// retired ones still verifying unexpired tokens.
    func signingKeys(_ call: inout ManagementCall) async throws -> Response {
        let current = tokens.current
        let keys: [JSONValue] = current.algorithms.keys.sorted().map { kid in
            ["kid": .string(kid), "algorithm": .string(current.algorithms[kid]!), "signing": .bool(kid == current.kid || kid == current.idTokenKid),
             "signs": .array((kid == current.kid ? ["access_token"] : []) + (kid == current.idTokenKid ? ["id_token"] : []))]
        }
        return JSONResponse.make(["code": "success", "data": .array(keys)] as JSONValue)
    }

    /// Retires the signing keys and signs with new ones (access tokens, id_tokens); the old
    /// public keys stay published until the tokens they signed have expired.
    func rotateSigningKey(_ call: inout ManagementCall) async throws -> Response {
        let previous = tokens.current.kid
        let key = try await tokens.rotate()
        return JSONResponse.make(
            ["kid": .string(key.kid), "algorithm": .string(key.algorithm), "retired": .string(previous), "idTokenKid": .string(tokens.current.idTokenKid)]
                as JSONValue, status: .created)
    }

    func createDeveloper(_ call: inout ManagementCall) async throws -> Response {
        let body = try await call.body()
        let name = try body.string("name", max: 200)!
        let email = try body.string("email", max: 254)!
        guard Validate.isEmail(email) else { throw APIError.badRequest("field \"email\" must be an email address") }
        let (developer, token) = try await grants.createDeveloper(name: name, email: email)
        return JSONResponse.make(["id": .string(developer.id), "name": .string(name), "email": .string(email), "token": .string(token)] as JSONValue, status: .created)
    }

    func createOrganization(_ call: inout ManagementCall) async throws -> Response {
        let body = try await call.body()
        let name = try body.string("name", max: 200)!
        let environment = try body.string("environment", max: 3, required: false) ?? "prd"
        guard ["prd", "sbx"].contains(environment) else { throw APIError.badRequest("field \"environment\" must be prd or sbx") }
        let (organization, token) = try await grants.createOrganization(name: name, environment: environment)
        return JSONResponse.make([
            "id": .string(organization.id), "uuid": .string(Identifier.uuidForm(ofOrganization: organization.id)),
            "name": .string(name), "environment": .string(environment), "adminToken": .string(token),
        ] as JSONValue, status: .created)
    }

    func sampleData(_ call: inout ManagementCall) async throws -> Response {
        let orgID = try call.parameter("orgId")
        guard let organization = Identifier.organizationID(fromClientForm: orgID), try await grants.organization(organization) != nil else {
            throw APIError.notFound("no organization \"\(Validate.safe(orgID))\"")
        }
        var patients: Int64 = 20
        if call.hasBody {
            let body = try await call.body()
            patients = try body.int("patients", range: 1...10_000, required: false) ?? 20
        }
        let counts = try await SampleData(store: clinic).generate(organization: organization, counts: .init(patients: Int(patients)))
        let data = JSONValue.object(counts.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })
        return JSONResponse.make(["organizationId": .string(organization), "created": data] as JSONValue, status: .created)
    }

    /// The review queue: pending requests oldest first (or the approved or refused ones).
    func reviewQueue(_ call: inout ManagementCall) async throws -> Response {
        let status = try call.query()["status"] ?? "pending"
        var list: [JSONValue] = []
        for review in try await grants.reviews(status: status) {
            list.append(reviewJSON(review, app: try await grants.app(review.appID)))
        }
        return JSONResponse.make(.array(list))
    }

    func approveReview(_ call: inout ManagementCall) async throws -> Response {
        try await decideReview(&call, approve: true)
    }

    func refuseReview(_ call: inout ManagementCall) async throws -> Response {
        try await decideReview(&call, approve: false)
    }

    /// Approving or refusing is a grant-chain change and goes into the audit log, under the app,
    /// with the scope as the event's scope.
    private func decideReview(_ call: inout ManagementCall, approve: Bool) async throws -> Response {
        let id = try call.parameter("id")
        var reason: String?
        if !approve {
            reason = try await call.body().string("reason", max: 500)!
        }
        guard Validate.isID(id, prefix: "rev"), let review = try await grants.review(id) else { throw APIError.notFound("no review \"\(Validate.safe(id))\"") }
        guard review.status == "pending" else { throw APIError.conflict("this review was \(review.status) already") }
        guard let decided = try await grants.decideReview(id: id, approve: approve, reason: reason) else { throw APIError.notFound("no review \"\(id)\"") }
        auditWriter.record(AuditEvent(
            at: Clock.millis(), organizationID: nil, appID: review.appID, keyID: nil, method: "POST",
            route: approve ? "POST /manage/scope-reviews/{id}/approve" : "POST /manage/scope-reviews/{id}/refuse",
            path: "/manage/scope-reviews/\(id)/\(approve ? "approve" : "refuse")", requiredScope: review.scope,
            decision: approve ? "allowed" : "denied", status: 200, traceID: call.context.traceID))
        return JSONResponse.make(reviewJSON(decided, app: try await grants.app(decided.appID)))
    }
}
