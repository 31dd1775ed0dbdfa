import CaregateStore
import HTTPTypes
import Hummingbird

/// The first step of enforcement on every protected surface: the `Authorization: Bearer`
/// credential (an API key or an access token, never from the query string) and the clinic
/// it acts for (`X-Organization-Id`, optional for a token whose client is bound to a clinic).
struct RequestAuthenticator: Sendable {
    let resolver: CredentialResolver

    func authenticate(_ request: Request, _ event: inout AuditEvent) async throws -> Credential {
        guard let authorization = request.headers.value(.authorization) else {
            throw APIError.unauthorized("Missing credential: send Authorization: Bearer <API key or access token>", invalidToken: false)
        }
        guard Self.hasBearerScheme(authorization) else {
            throw APIError.unauthorized("Authorization must use the Bearer scheme", invalidToken: true)
        }
        let organizationHeader = request.headers.value(.organizationID)
        switch try await resolver.resolve(key: authorization.dropFirst(7), organizationHeader: organizationHeader) {
        case .ok(let credential):
            event.note(credential)
            return credential
        case .invalidOrganization:
            throw APIError.badRequest("X-Organization-Id must be an organization id (org_<32 hex> or its UUID form)")
        case .organizationRequired:
            throw APIError.badRequest("X-Organization-Id header is required")
        // Neither failure is filed under the clinic the caller named: the request never
        // authenticated there (the audit writer tallies it by peer instead).
        case .invalidKey:
            throw APIError.unauthorized("Invalid, expired or revoked credential", invalidToken: true)
        case .notInstalled:
            let organizationID = organizationHeader.flatMap(Identifier.organizationID(fromClientForm:))
            throw APIError.unauthorized(
                "This credential's app is not installed in (or not bound to) organization \(organizationID ?? "?")", invalidToken: true)
        }
    }

    /// `Bearer ` in any letter case, followed by at least one character; compares bytes, allocates nothing.
    static func hasBearerScheme(_ authorization: String) -> Bool {
        var authorization = authorization
        return authorization.withUTF8 { hasBearerScheme(UnsafeRawBufferPointer($0)) }
    }

    /// The same, of an `Authorization` value as the request's bytes.
    static func hasBearerScheme(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > 7 else { return false }
        let scheme: InlineArray<7, UInt8> = [0x62, 0x65, 0x61, 0x72, 0x65, 0x72, 0x20]  // "bearer "
        for i in 0..<7 {
            let byte = bytes[i]
            let lowered = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
            guard lowered == scheme[i] else { return false }
        }
        return true
    }
}
