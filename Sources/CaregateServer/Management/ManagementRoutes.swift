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

    /// Every management route, as registered (the OpenAPI document is checked against this).
    static let routes: [(method: HTTPRequest.Method, path: String)] = [
        (.post, "/manage/developers"), (.post, "/manage/organizations"), (.post, "/manage/organizations/{orgId}/sample-data"),
        (.post, "/manage/apps"), (.get, "/manage/apps/{appId}"), (.post, "/manage/apps/{appId}/versions"),
        (.post, "/manage/apps/{appId}/keys"), (.get, "/manage/apps/{appId}/keys"), (.post, "/manage/apps/{appId}/oauth-clients"),
        (.post, "/manage/keys/{keyId}/rotate"), (.delete, "/manage/keys/{keyId}"),
        (.post, "/manage/installations"), (.get, "/manage/installations/{id}"), (.post, "/manage/installations/{id}/approve"),
        (.delete, "/manage/installations/{id}"), (.get, "/manage/audit"),
        (.get, "/manage/signing-keys"), (.post, "/manage/signing-keys/rotate"),
        (.post, "/manage/tokens/rotate"), (.post, "/manage/tokens"), (.get, "/manage/tokens"), (.delete, "/manage/tokens/{tokenId}"),
    ]

    func register(on router: Router<CaregateContext>) {
        let group = router.group("manage")
        group.post("developers") { request, context in try await self.createDeveloper(request, context) }
        group.post("organizations") { request, context in try await self.createOrganization(request, context) }
        group.post("organizations/:orgId/sample-data") { request, context in try await self.sampleData(request, context) }
        group.post("apps") { request, context in try await self.createApp(request, context) }
        group.get("apps/:appId") { request, context in try await self.getApp(request, context) }
        group.post("apps/:appId/versions") { request, context in try await self.createVersion(request, context) }
        group.post("apps/:appId/keys") { request, context in try await self.createKey(request, context) }
        group.get("apps/:appId/keys") { request, context in try await self.listKeys(request, context) }
        group.post("apps/:appId/oauth-clients") { request, context in try await self.createOAuthClient(request, context) }
        group.post("keys/:keyId/rotate") { request, context in try await self.rotateKey(request, context) }
        group.delete("keys/:keyId") { request, context in try await self.revokeKey(request, context) }
        group.post("installations") { request, context in try await self.install(request, context) }
        group.get("installations/:id") { request, context in try await self.getInstallation(request, context) }
        group.post("installations/:id/approve") { request, context in try await self.approve(request, context) }
        group.delete("installations/:id") { request, context in try await self.uninstall(request, context) }
        group.get("audit") { request, context in try await self.auditPage(request, context) }
        group.get("signing-keys") { request, context in try await self.signingKeys(request, context) }
        group.post("signing-keys/rotate") { request, context in try await self.rotateSigningKey(request, context) }
        group.post("tokens/rotate") { request, context in try await self.rotateToken(request, context) }
        group.post("tokens") { request, context in try await self.issueToken(request, context) }
        group.get("tokens") { request, context in try await self.listTokens(request, context) }
        group.delete("tokens/:tokenId") { request, context in try await self.revokeToken(request, context) }
    }

    // MARK: Management tokens

    /// `expiresAt` (ISO 8601, in the future) of a body, as milliseconds.
    static func expiresAt(_ body: JSONInput) throws -> Int64? {
        guard let text = try body.string("expiresAt", max: 40, required: false) else { return nil }
        guard let date = ISO8601DateFormatter().date(from: text) else {
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

    /// The caller's own token is replaced: the new one is shown once, the presented one stops at once.
    func rotateToken(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.operator, .developer, .clinicAdmin])
        var request = request
        var expiresAt: Int64?
        if request.headers[.contentType] != nil {
            expiresAt = try Self.expiresAt(try await JSONInput(&request, allowed: ["expiresAt"]))
        }
        let presented = String(request.headers[.authorization]!.dropFirst(7))  // principal() read it
        let (token, record) = try await grants.rotateToken(presented, of: principal, expiresAt: expiresAt)
        return JSONResponse.make(tokenJSON(record, token: token), status: .created)
    }

    /// The operator issues a token for a developer (`dev_…`) or a clinic (`org_…`).
    func issueToken(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        var request = request
        let body = try await JSONInput(&request, allowed: ["subjectId", "expiresAt"])
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

    func listTokens(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        let query = try QueryInput(request.uri.query, allowed: ["subjectId"])
        let subject = query["subjectId"].map { Identifier.organizationID(fromClientForm: $0) ?? $0 }
        let tokens = try await grants.managementTokens(subjectID: subject)
        return JSONResponse.make(["code": "success", "data": .array(tokens.map { tokenJSON($0) })] as JSONValue)
    }

    /// The operator ends a developer's or clinic admin's token at once.
    func revokeToken(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        let id = try context.parameters.require("tokenId")
        guard id.utf8.count == 16, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
              try await grants.revokeManagementToken(id: id)
        else { throw APIError.notFound("no active developer or clinic-admin token \"\(Validate.safe(id))\"") }
        return Response(status: .noContent)
    }

    // MARK: Token-signing keys (operator)

    /// The published keys: the one that signs, and retired ones still verifying unexpired tokens.
    func signingKeys(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        let current = tokens.current
        let keys: [JSONValue] = current.algorithms.keys.sorted().map { kid in
            ["kid": .string(kid), "algorithm": .string(current.algorithms[kid]!), "signing": .bool(kid == current.kid)]
        }
        return JSONResponse.make(["code": "success", "data": .array(keys)] as JSONValue)
    }

    /// Retires the signing key and signs with a new one; the old public key stays published
    /// until the tokens it signed have expired.
    func rotateSigningKey(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        let previous = tokens.current.kid
        let key = try await tokens.rotate()
        return JSONResponse.make(
            ["kid": .string(key.kid), "algorithm": .string(key.algorithm), "retired": .string(previous)] as JSONValue, status: .created)
    }

    // MARK: Authentication

    func principal(_ request: Request, allowed: Set<Principal.Kind>) async throws -> Principal {
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("Missing credential: send Authorization: Bearer <management token>", invalidToken: false)
        }
        guard header.count > 7, header.prefix(7).lowercased() == "bearer ",
              let principal = try await grants.authenticate(token: String(header.dropFirst(7)))
        else { throw APIError.unauthorized("Invalid management token", invalidToken: true) }
        guard allowed.contains(principal.kind) else {
            throw APIError.forbidden("This call needs a \(allowed.map(\.label).sorted().joined(separator: " or ")) token")
        }
        return principal
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

    // MARK: Operator

    func createDeveloper(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        var request = request
        let body = try await JSONInput(&request, allowed: ["name", "email"])
        let name = try body.string("name", max: 200)!
        let email = try body.string("email", max: 254)!
        guard Validate.isEmail(email) else { throw APIError.badRequest("field \"email\" must be an email address") }
        let (developer, token) = try await grants.createDeveloper(name: name, email: email)
        return JSONResponse.make(["id": .string(developer.id), "name": .string(name), "email": .string(email), "token": .string(token)] as JSONValue, status: .created)
    }

    func createOrganization(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        var request = request
        let body = try await JSONInput(&request, allowed: ["name", "environment"])
        let name = try body.string("name", max: 200)!
        let environment = try body.string("environment", max: 3, required: false) ?? "prd"
        guard ["prd", "sbx"].contains(environment) else { throw APIError.badRequest("field \"environment\" must be prd or sbx") }
        let (organization, token) = try await grants.createOrganization(name: name, environment: environment)
        return JSONResponse.make([
            "id": .string(organization.id), "uuid": .string(Identifier.uuidForm(ofOrganization: organization.id)),
            "name": .string(name), "environment": .string(environment), "adminToken": .string(token),
        ] as JSONValue, status: .created)
    }

    func sampleData(_ request: Request, _ context: CaregateContext) async throws -> Response {
        _ = try await principal(request, allowed: [.operator])
        let orgID = try context.parameters.require("orgId")
        guard let organization = Identifier.organizationID(fromClientForm: orgID), try await grants.organization(organization) != nil else {
            throw APIError.notFound("no organization \"\(Validate.safe(orgID))\"")
        }
        var request = request
        var patients: Int64 = 20
        if request.headers[.contentType] != nil || (request.headers[.contentLength].flatMap(Int.init) ?? 0) > 0 {
            let body = try await JSONInput(&request, allowed: ["patients"])
            patients = try body.int("patients", range: 1...10_000, required: false) ?? 20
        }
        let counts = try await SampleData(store: clinic).generate(organization: organization, counts: .init(patients: Int(patients)))
        let data = JSONValue.object(counts.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })
        return JSONResponse.make(["organizationId": .string(organization), "created": data] as JSONValue, status: .created)
    }

    // MARK: Developer

    func appJSON(_ app: AppRecord) -> JSONValue {
        ["id": .string(app.id), "slug": .string(app.slug), "name": .string(app.name), "surface": .string(app.surface),
         "liveVersionId": .string(app.liveVersionID), "scopes": .array(app.scopes.map { .string($0) })]
    }

    func createApp(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        var request = request
        let body = try await JSONInput(&request, allowed: ["slug", "name", "surface", "scopes"])
        let slug = try body.string("slug", max: 40)!
        guard slug.wholeMatch(of: /[a-z][a-z0-9-]{2,39}/) != nil, !slug.hasSuffix("-") else {
            throw APIError.badRequest("field \"slug\" must be 3 to 40 lower-case letters, digits and -, starting with a letter")
        }
        let name = try body.string("name", max: 200)!
        let surface = try body.string("surface", max: 40, required: false) ?? SurfaceRegistry.defaultAppSurface
        guard registry.surface(named: surface) != nil else {
            throw APIError.badRequest(
                "field \"surface\": unknown surface \"\(Validate.safe(surface))\" (known: \(registry.surfaces.map(\.name).sorted().joined(separator: ", ")))")
        }
        let scopes = try validateScopes(try body.stringArray("scopes")!, surface: surface, field: "scopes")
        let app = try await grants.createApp(developerID: principal.subjectID, slug: slug, name: name, surface: surface, scopes: scopes)
        return JSONResponse.make(appJSON(app), status: .created)
    }

    func getApp(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        return JSONResponse.make(appJSON(try await ownApp(principal, try context.parameters.require("appId"))))
    }

    func createVersion(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        let app = try await ownApp(principal, try context.parameters.require("appId"))
        var request = request
        let body = try await JSONInput(&request, allowed: ["scopes"])
        let scopes = try validateScopes(try body.stringArray("scopes")!, surface: app.surface, field: "scopes")
        let version = try await grants.createVersion(appID: app.id, scopes: scopes)
        return JSONResponse.make(["id": .string(version.id), "appId": .string(app.id), "scopes": .array(scopes.map { .string($0) })] as JSONValue, status: .created)
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

    func createKey(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        let app = try await ownApp(principal, try context.parameters.require("appId"))
        var request = request
        let body = try await JSONInput(&request, allowed: ["name", "environment", "scopes", "expiresAt"])
        let name = try body.string("name", max: 100)!
        let environment = try body.string("environment", max: 3)!
        guard environment == "prd" || environment == "sbx" else { throw APIError.badRequest("field \"environment\" must be prd or sbx") }
        var scopes: [String]?
        if let requested = try body.stringArray("scopes", required: false) {
            let valid = try validateScopes(requested, surface: app.surface, field: "scopes", credentialType: .apiKey)
            try Self.subset(valid, of: app.scopes, field: "scopes", what: "declared by the app")
            scopes = valid
        }
        let expiresAt = try Self.expiresAt(body)
        let issued = try await grants.createKey(appID: app.id, name: name, environment: environment, scopes: scopes, expiresAt: expiresAt)
        return JSONResponse.make(keyJSON(issued.record, secret: issued.key), status: .created)
    }

    func listKeys(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        let app = try await ownApp(principal, try context.parameters.require("appId"))
        return JSONResponse.make(JSONValue.array(try await grants.keys(appID: app.id).map { keyJSON($0) }))
    }

    /// `{scopes, grantTypes, credentialType?, organizationId?}` → `{clientId, clientSecret}` (the secret is shown once).
    func createOAuthClient(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        let app = try await ownApp(principal, try context.parameters.require("appId"))
        var request = request
        let body = try await JSONInput(&request, allowed: ["scopes", "grantTypes", "credentialType", "organizationId", "redirectUris", "jwks", "jwksUri"])
        if body.has("redirectUris") {
            throw APIError.badRequest("field \"redirectUris\" is not supported yet (client_credentials only)")
        }
        // A client with a JWKS authenticates with private_key_jwt (RFC 7523) and gets no secret.
        var jwks: String?
        if let value = body.value("jwks") {
            guard let text = value.jsonText(), text.utf8.count <= 16 * 1024 else {
                throw APIError.badRequest("field \"jwks\" must be a JSON Web Key Set (at most 16 KiB)")
            }
            guard case .object(let set) = value, case .array(let keys)? = set["keys"], !keys.isEmpty,
                  (try? await JWTKeyCollection().add(jwksJSON: text)) != nil
            else { throw APIError.badRequest("field \"jwks\" must be a JSON Web Key Set with usable RSA or EC keys, each with a kid") }
            // A client registers public keys only: private members mean its private key has leaked to us.
            for (i, key) in keys.enumerated() {
                guard case .object(let members) = key else { continue }
                let secret = members.keys.filter(ClientKeySets.privateMembers.contains).sorted()
                if !secret.isEmpty {
                    throw APIError.badRequest("field \"jwks\": keys[\(i)] holds private key material (\(secret.joined(separator: ", "))); register the public key only")
                }
            }
            jwks = text
        }
        // …or a URL where the client publishes them (fetched and cached; see ClientKeySets).
        let jwksURI = try body.string("jwksUri", max: 2048, required: false)
        if let jwksURI {
            guard jwks == nil else { throw APIError.badRequest("give \"jwks\" or \"jwksUri\", not both") }
            guard Self.isAcceptableJWKSURL(jwksURI) else {
                throw APIError.badRequest("field \"jwksUri\" must be an https URL (http only on a loopback host), without user, query or fragment")
            }
        }
        let grantTypes = try body.stringArray("grantTypes")!
        guard !grantTypes.isEmpty, grantTypes.allSatisfy({ $0 == "client_credentials" }) else {
            throw APIError.badRequest("field \"grantTypes\": only client_credentials is supported")
        }
        let typeName = try body.string("credentialType", max: 20, required: false) ?? "oauth2"
        guard let credentialType = CredentialType(rawValue: typeName), credentialType == .oauth2 || credentialType == .serviceKey else {
            throw APIError.badRequest("field \"credentialType\" must be oauth2 or service_key")
        }
        let scopes = try validateScopes(try body.stringArray("scopes")!, surface: app.surface, field: "scopes", credentialType: credentialType)
        try Self.subset(scopes, of: app.scopes, field: "scopes", what: "declared by the app")
        var organization: String?
        if let text = try body.string("organizationId", max: 40, required: false) {
            guard let id = Identifier.organizationID(fromClientForm: text), try await grants.organization(id) != nil else {
                throw APIError.badRequest("field \"organizationId\": no such organization")
            }
            organization = id
        }
        let (client, secret) = try await oauth.createClient(
            appID: app.id, credentialType: credentialType.rawValue, grantTypes: grantTypes, scopes: scopes, organizationID: organization,
            withSecret: jwks == nil && jwksURI == nil, jwks: jwks, jwksURI: jwksURI)
        return JSONResponse.make([
            "clientId": .string(client.clientID), "clientSecret": .optional(secret), "appId": .string(app.id),
            "credentialType": .string(client.credentialType), "grantTypes": .array(grantTypes.map { .string($0) }),
            "scopes": .array(scopes.map { .string($0) }), "organizationId": .optional(organization),
            "jwksUri": .optional(jwksURI),
            "tokenEndpointAuthMethod": .string(jwks == nil && jwksURI == nil ? "client_secret_basic" : "private_key_jwt"),
        ] as JSONValue, status: .created)
    }

    /// Keys are fetched from this URL, so it must be https, except on the loopback interface.
    static func isAcceptableJWKSURL(_ text: String) -> Bool {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(), !host.isEmpty,
              url.user == nil, url.query == nil, url.fragment == nil
        else { return false }
        return scheme == "https" || (scheme == "http" && ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host))
    }

    func ownKey(_ principal: Principal, _ keyID: String) async throws -> APIKeyRecord {
        guard Validate.isID(keyID, prefix: "key"), let key = try await grants.key(id: keyID),
              let app = try await grants.app(key.appID), app.developerID == principal.subjectID
        else { throw APIError.notFound("no key \"\(Validate.safe(keyID))\" of this developer") }
        return key
    }

    func rotateKey(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        let key = try await ownKey(principal, try context.parameters.require("keyId"))
        var request = request
        var grace: Int64 = 3600
        if request.headers[.contentType] != nil {
            let body = try await JSONInput(&request, allowed: ["graceSeconds"])
            grace = try body.int("graceSeconds", range: 0...604_800, required: false) ?? 3600
        }
        // nil: the key is gone (revoked, rotated and expired keys are StoreError.conflict, a 409).
        guard let issued = try await grants.rotate(keyID: key.id, graceSeconds: Int(grace)) else {
            throw APIError.notFound("no key \"\(key.id)\"")
        }
        return JSONResponse.make(keyJSON(issued.record, secret: issued.key), status: .created)
    }

    func revokeKey(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.developer])
        let key = try await ownKey(principal, try context.parameters.require("keyId"))
        try await grants.revoke(keyID: key.id)
        return Response(status: .noContent)
    }

    // MARK: Clinic admin

    func installationJSON(_ i: InstallationRecord) -> JSONValue {
        ["id": .string(i.id), "appId": .string(i.appID), "organizationId": .string(i.organizationID),
         "approvedVersionId": .string(i.approvedVersionID), "approvedScopes": .array(i.approvedScopes.map { .string($0) }),
         "status": .string(i.status)]
    }

    func install(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.clinicAdmin])
        var request = request
        let body = try await JSONInput(&request, allowed: ["appId", "scopes"])
        let appID = try body.string("appId", max: 40)!
        guard Validate.isID(appID, prefix: "app"), let app = try await grants.app(appID) else {
            throw APIError.notFound("no app \"\(Validate.safe(appID))\"")
        }
        var scopes = app.scopes
        if let requested = try body.stringArray("scopes", required: false) {
            let valid = try validateScopes(requested, surface: app.surface, field: "scopes")
            try Self.subset(valid, of: app.scopes, field: "scopes", what: "requested by the app's live version")
            scopes = valid
        }
        let installation = try await grants.install(appID: app.id, organizationID: principal.subjectID, versionID: app.liveVersionID, scopes: scopes)
        return JSONResponse.make(installationJSON(installation), status: .created)
    }

    func ownInstallation(_ principal: Principal, _ id: String) async throws -> InstallationRecord {
        guard Validate.isID(id, prefix: "ins"), let installation = try await grants.installation(id), installation.organizationID == principal.subjectID else {
            throw APIError.notFound("no installation \"\(Validate.safe(id))\" in this organization")
        }
        return installation
    }

    func getInstallation(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.clinicAdmin])
        let installation = try await ownInstallation(principal, try context.parameters.require("id"))
        var json = installationJSON(installation)
        if let app = try await grants.app(installation.appID) {
            // What re-approval would review: the live version's scopes.
            json.set("liveVersionId", .string(app.liveVersionID))
            json.set("liveVersionScopes", .array(app.scopes.map { .string($0) }))
        }
        return JSONResponse.make(json)
    }

    func approve(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.clinicAdmin])
        let installation = try await ownInstallation(principal, try context.parameters.require("id"))
        guard let app = try await grants.app(installation.appID) else { throw APIError.notFound("the installed app no longer exists") }
        var request = request
        let body = try await JSONInput(&request, allowed: ["scopes"])
        let scopes = try validateScopes(try body.stringArray("scopes")!, surface: app.surface, field: "scopes")
        try Self.subset(scopes, of: app.scopes, field: "scopes", what: "requested by the app's live version")
        guard let updated = try await grants.approve(installationID: installation.id, versionID: app.liveVersionID, scopes: scopes) else {
            throw APIError.notFound("installation vanished")
        }
        return JSONResponse.make(installationJSON(updated))
    }

    func uninstall(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.clinicAdmin])
        let installation = try await ownInstallation(principal, try context.parameters.require("id"))
        try await grants.uninstall(installationID: installation.id)
        return Response(status: .noContent)
    }

    // MARK: Audit

    func auditPage(_ request: Request, _ context: CaregateContext) async throws -> Response {
        let principal = try await principal(request, allowed: [.operator, .clinicAdmin])
        let query = try QueryInput(request.uri.query, allowed: ["organizationId", "appId", "decision", "limit", "cursor"])
        var organization = try query["organizationId"].map { text -> String in
            guard let id = Identifier.organizationID(fromClientForm: text) else { throw APIError.badRequest("organizationId must be an organization id") }
            return id
        }
        if principal.kind == .clinicAdmin {
            if let organization, organization != principal.subjectID { throw APIError.forbidden("a clinic admin sees only its own clinic's audit log") }
            organization = principal.subjectID
        }
        let decision = query["decision"]
        if let decision, decision != "allowed" && decision != "denied" { throw APIError.badRequest("decision must be allowed or denied") }
        let cursor = query["cursor"]
        if let cursor, !AuditStore.isEventID(cursor) { throw APIError.badRequest("cursor is not a cursor of this list") }
        await auditWriter.flush()
        let page = try await audit.page(
            organizationID: organization, appID: try query.id("appId", prefix: "app"), decision: decision, limit: try query.limit(), cursor: cursor)
        let events: [JSONValue] = page.events.map { e in
            var event: JSONValue = ["id": .string(e.id), "at": .string(Self.iso8601(e.at)), "organizationId": .optional(e.organizationID), "appId": .optional(e.appID),
             "keyId": .optional(e.keyID), "method": .string(e.method), "route": .optional(e.route), "path": .string(e.path),
             "requiredScope": .optional(e.requiredScope), "decision": .string(e.decision), "status": .int(Int64(e.status)), "traceId": .string(e.traceID)]
            if let peer = e.peer {
                event.set("peer", .string(peer))
                event.set("count", .int(Int64(e.count)))
            }
            return event
        }
        return JSONResponse.make(["code": "success", "data": .array(events), "nextCursor": .optional(page.next)] as JSONValue)
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
