import CaregateStore
import HTTPTypes
import Hummingbird

/// The first step of enforcement on every protected surface: the `Authorization: Bearer`
/// credential (an API key or an access token, never from the query string) and the clinic
/// it acts for (`X-Organization-Id`, optional for a token whose client is bound to a clinic).
struct RequestAuthenticator: Sendable {
    let resolver: CredentialResolver

    func authenticate(_ request: Request, _ event: inout AuditEvent) async throws -> Credential {
        guard let authorization = request.headers[.authorization] else {
            throw APIError.unauthorized("Missing credential: send Authorization: Bearer <API key or access token>", invalidToken: false)
        }
        guard authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else {
            throw APIError.unauthorized("Authorization must use the Bearer scheme", invalidToken: true)
        }
        let presented = String(authorization.dropFirst(7))
        var organizationID: String?
        if let header = request.headers[.organizationID] {
            guard let id = Identifier.organizationID(fromClientForm: header) else {
                throw APIError.badRequest("X-Organization-Id must be an organization id (org_<32 hex> or its UUID form)")
            }
            organizationID = id
            event.organizationID = id
        }
        switch try await resolver.resolve(key: presented, organizationID: organizationID) {
        case .invalidKey:
            throw APIError.unauthorized("Invalid, expired or revoked credential", invalidToken: true)
        case .organizationRequired:
            throw APIError.badRequest("X-Organization-Id header is required")
        case .notInstalled:
            throw APIError.unauthorized(
                "This credential's app is not installed in (or not bound to) organization \(organizationID ?? "?")", invalidToken: true)
        case .ok(let credential):
            event.organizationID = credential.organizationID
            event.appID = credential.appID
            event.keyID = credential.keyID
            return credential
        }
    }
}
