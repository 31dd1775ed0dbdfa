import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import Scopes

/// The management API of SPEC §5: operator, developer and clinic-admin calls.
struct ManagementRoutes: Sendable {
    let grants: GrantStore
    let clinic: ClinicStore
    let audit: AuditStore
    let auditWriter: AuditWriter
    let tokens: TokenService
    let registry: SurfaceRegistry
    let oauth: OAuthStore
    let smart: SMARTStore
    let outbound: OutboundAddressPolicy
    /// The usage report's window never reaches past what the audit log keeps (0: it keeps all).
    let auditRetentionDays: Int

    /// `expiresAt` (ISO 8601, in the future) of a body, as milliseconds.
    static func expiresAt(_ body: JSONInput) throws -> Int64? {
        guard let text = try body.string("expiresAt", max: 40, required: false) else { return nil }
        // With or without fractional seconds, as RFC 3339 allows (JavaScript's toISOString() writes milliseconds).
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = ISO8601DateFormatter().date(from: text) ?? fractional.date(from: text) else {
            throw APIError.badRequest("field \"expiresAt\" must be an ISO 8601 date-time (2027-01-31T00:00:00Z)")
        }
        guard date > Date() else { throw APIError.badRequest("field \"expiresAt\" must be in the future") }
        return Int64(date.timeIntervalSince1970 * 1000)
    }

    func tokenJSON(_ record: ManagementTokenRecord, token: String? = nil) -> JSONValue {
        var value: JSONValue = [
            "id": .string(record.id), "kind": .string(record.kind.rawValue), "subjectId": .string(record.subjectID),
            "createdAt": .string(Self.iso8601(record.createdAt)), "expiresAt": .optional(record.expiresAt.map(Self.iso8601)),
            "revokedAt": .optional(record.revokedAt.map(Self.iso8601)),
        ]
        if let token { value.set("token", .string(token)) }
        return value
    }

    func ownApp(_ principal: Principal, _ appID: String) async throws -> AppRecord {
        guard Validate.isID(appID, prefix: "app"), let app = try await grants.app(appID), app.developerID == principal.subjectID else {
            throw APIError.notFound("no app \"\(Validate.safe(appID))\" of this developer")
        }
        return app
    }

    /// Every scope must exist on the app's surface (and, for a key, be one an API key may carry).
    func validateScopes(_ names: [String], surface: String, field: String, credentialType: CredentialType? = nil) throws -> [String] {
        guard names.count <= ScopeLimits.maxListEntries else { throw APIError.badRequest("\(field): at most \(ScopeLimits.maxListEntries) scopes") }
        switch registry.validateScopes(names, ofApp: surface, credentialType: credentialType) {
        case .success(let valid): return valid
        case .failure(let refusal): throw APIError(.badRequest, "invalid_scope", "\(field): \(refusal.message)")
        }
    }

    static func subset(_ names: [String], of allowed: [String], field: String, what: String) throws {
        let allowedSet = Set(allowed)
        if let extra = names.first(where: { !allowedSet.contains($0) }) {
            throw APIError(.badRequest, "invalid_scope", "\(field): \"\(extra)\" is not \(what)")
        }
    }

    func appJSON(_ app: AppRecord) -> JSONValue {
        ["id": .string(app.id), "slug": .string(app.slug), "name": .string(app.name), "surface": .string(app.surface),
         "liveVersionId": .string(app.liveVersionID), "scopes": .array(app.scopes.map { .string($0) })]
    }

    func keyJSON(_ key: APIKeyRecord, secret: String? = nil) -> JSONValue {
        var object: JSONValue = [
            "id": .string(key.id), "appId": .string(key.appID), "name": .string(key.name), "environment": .string(key.environment),
            "display": .string(key.display), "scopes": key.scopes.map { .array($0.map { .string($0) }) } ?? .null,
            "inheritsApprovedScopes": .bool(key.scopes == nil),
            "expiresAt": key.expiresAt.map { .string(Self.iso8601($0)) } ?? .null,
            "revoked": .bool(key.revokedAt != nil), "replacedBy": .optional(key.replacedBy),
        ]
        if let secret { object.set("key", .string(secret)) }
        return object
    }

    static func iso8601(_ millis: Int64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    /// Keys are fetched from this URL, so it must be https (http only for an allowlisted host),
    /// without user, query or fragment; the host is checked by ``OutboundAddressPolicy`` too.
    /// - Returns: the URL's host, or nil when the URL is not acceptable.
    func acceptableJWKSHost(_ text: String) -> String? {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(), !host.isEmpty,
              url.user == nil, url.query == nil, url.fragment == nil,
              scheme == "https" || (scheme == "http" && outbound.allowedHosts.contains(host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))))
        else { return nil }
        return host
    }

    func ownKey(_ principal: Principal, _ keyID: String) async throws -> APIKeyRecord {
        guard Validate.isID(keyID, prefix: "key"), let key = try await grants.key(id: keyID),
              let app = try await grants.app(key.appID), app.developerID == principal.subjectID
        else { throw APIError.notFound("no key \"\(Validate.safe(keyID))\" of this developer") }
        return key
    }

    func reviewJSON(_ r: ScopeReviewRecord, app: AppRecord?) -> JSONValue {
        ["id": .string(r.id), "appId": .string(r.appID), "appName": .optional(app?.name), "scope": .string(r.scope), "status": .string(r.status),
         "reason": .optional(r.reason), "requestedAt": .string(Self.iso8601(r.requestedAt)), "decidedAt": .optional(r.decidedAt.map(Self.iso8601))]
    }

    func installationJSON(_ i: InstallationRecord) -> JSONValue {
        ["id": .string(i.id), "appId": .string(i.appID), "organizationId": .string(i.organizationID),
         "approvedVersionId": .string(i.approvedVersionID), "approvedScopes": .array(i.approvedScopes.map { .string($0) }),
         "status": .string(i.status)]
    }

    func ownInstallation(_ principal: Principal, _ id: String) async throws -> InstallationRecord {
        guard Validate.isID(id, prefix: "ins"), let installation = try await grants.installation(id), installation.organizationID == principal.subjectID else {
            throw APIError.notFound("no installation \"\(Validate.safe(id))\" in this organization")
        }
        return installation
    }
}
