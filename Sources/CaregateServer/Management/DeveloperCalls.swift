import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import Scopes

/// A developer's calls: apps and versions, API keys, OAuth clients.
extension ManagementRoutes {
    func createApp(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let body = try await call.body()
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
        let app = try await grants.createApp(
            developerID: principal.subjectID, slug: slug, name: name, surface: surface, scopes: scopes,
            reviewed: registry.scopesNeedingReview(scopes, ofApp: surface))
        return JSONResponse.make(appJSON(app), status: .created)
    }

    func listApps(_ call: inout ManagementCall) async throws -> Response {
        JSONResponse.make(.array(try await grants.apps(developerID: call.principal.subjectID).map(appJSON)))
    }

    func getApp(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        return JSONResponse.make(appJSON(try await ownApp(principal, try call.parameter("appId"))))
    }

    func createVersion(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let app = try await ownApp(principal, try call.parameter("appId"))
        let body = try await call.body()
        let scopes = try validateScopes(try body.stringArray("scopes")!, surface: app.surface, field: "scopes")
        let version = try await grants.createVersion(appID: app.id, scopes: scopes, reviewed: registry.scopesNeedingReview(scopes, ofApp: app.surface))
        return JSONResponse.make(["id": .string(version.id), "appId": .string(app.id), "scopes": .array(scopes.map { .string($0) })] as JSONValue, status: .created)
    }

    func createKey(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let app = try await ownApp(principal, try call.parameter("appId"))
        let body = try await call.body()
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

    func listKeys(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let app = try await ownApp(principal, try call.parameter("appId"))
        return JSONResponse.make(JSONValue.array(try await grants.keys(appID: app.id).map { keyJSON($0) }))
    }

    /// `{scopes, grantTypes, credentialType?, organizationId?}` → `{clientId, clientSecret}` (the secret is shown once).
    func createOAuthClient(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let app = try await ownApp(principal, try call.parameter("appId"))
        let body = try await call.body()
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
            guard let host = acceptableJWKSHost(jwksURI) else {
                throw APIError.badRequest("field \"jwksUri\" must be an https URL (http only for an allowlisted host), without user, query or fragment")
            }
            do {
                try await outbound.check(host: host)
            } catch {
                throw APIError.badRequest("field \"jwksUri\": \(error) (a client's keys are fetched from public addresses only)")
            }
        }
        let grantTypes = try body.stringArray("grantTypes")!
        // Two kinds of client: a backend service (client_credentials), or a SMART app acting for
        // a person (authorization_code, with refresh_token if it keeps access).
        let launches = grantTypes.contains("authorization_code")
        guard !grantTypes.isEmpty, Set(grantTypes).count == grantTypes.count,
              launches ? Set(grantTypes).isSubset(of: ["authorization_code", "refresh_token"]) : grantTypes == ["client_credentials"]
        else {
            throw APIError.badRequest("field \"grantTypes\" must be [\"client_credentials\"], or authorization_code with refresh_token optionally")
        }
        let typeName = try body.string("credentialType", max: 20, required: false) ?? (launches ? CredentialType.smartOnFHIR.rawValue : "oauth2")
        guard let credentialType = CredentialType(rawValue: typeName),
              launches ? credentialType == .smartOnFHIR : (credentialType == .oauth2 || credentialType == .serviceKey)
        else {
            throw APIError.badRequest("field \"credentialType\" must be oauth2 or service_key (client_credentials), smart_on_fhir (authorization_code)")
        }
        let redirectURIs = try body.stringArray("redirectUris", required: false) ?? []
        let launchURL = try body.string("launchUrl", max: 2048, required: false)
        let isPublic = try body.bool("public") ?? false
        if launches {
            guard (1...10).contains(redirectURIs.count), Set(redirectURIs).count == redirectURIs.count, redirectURIs.allSatisfy(Self.isRedirectURI) else {
                throw APIError.badRequest(
                    "field \"redirectUris\": 1 to 10 distinct absolute URLs, https or http on a loopback host, without fragment or spaces (at most 2048 bytes)")
            }
            if let launchURL, !Self.isRedirectURI(launchURL) {
                throw APIError.badRequest("field \"launchUrl\" must be an absolute https URL, or http on a loopback host")
            }
            if isPublic, jwks != nil || jwksURI != nil {
                throw APIError.badRequest("a public client has no keys: give \"public\": true, or \"jwks\"/\"jwksUri\", not both")
            }
        } else if !redirectURIs.isEmpty || launchURL != nil || isPublic {
            throw APIError.badRequest("redirectUris, launchUrl and public are for authorization_code clients")
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
            withSecret: jwks == nil && jwksURI == nil && !isPublic, jwks: jwks, jwksURI: jwksURI, redirectURIs: redirectURIs, launchURL: launchURL,
            isPublic: isPublic)
        return JSONResponse.make(clientJSON(client, secret: secret), status: .created)
    }

    /// A redirect or launch URL: absolute, https (or http on a loopback host, for native and
    /// test apps), no fragment, no user part, nothing that would not survive a redirect unchanged.
    static func isRedirectURI(_ text: String) -> Bool {
        guard text.utf8.count <= 2048, !text.contains(" "), !text.contains("#"), let url = URL(string: text), let scheme = url.scheme?.lowercased(),
              let host = url.host, !host.isEmpty, url.user == nil, url.absoluteString == text
        else { return false }
        return scheme == "https" || (scheme == "http" && ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased()))
    }

    /// A client as the API shows it; the secret only in the answer that created it.
    func clientJSON(_ client: OAuthClientRecord, secret: String?) -> JSONValue {
        [
            "clientId": .string(client.clientID), "clientSecret": .optional(secret), "appId": .string(client.appID),
            "credentialType": .string(client.credentialType), "grantTypes": .array(client.grantTypes.map { .string($0) }),
            "scopes": .array(client.scopes.map { .string($0) }), "organizationId": .optional(client.organizationID),
            "jwksUri": .optional(client.jwksURI),
            "tokenEndpointAuthMethod": .string(client.isPublic ? "none" : client.jwks == nil && client.jwksURI == nil ? "client_secret_basic" : "private_key_jwt"),
            "redirectUris": .array(client.redirectURIs.map { .string($0) }), "launchUrl": .optional(client.launchURL), "public": .bool(client.isPublic),
        ]
    }

    func listOAuthClients(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let app = try await ownApp(principal, try call.parameter("appId"))
        let clients = try await oauth.clients(appID: app.id).filter { $0.revokedAt == nil }
        return JSONResponse.make(.array(clients.map { clientJSON($0, secret: nil) }))
    }

    func rotateKey(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let key = try await ownKey(principal, try call.parameter("keyId"))
        var grace: Int64 = 3600
        var narrowed: [String]?
        if call.hasBody {
            let body = try await call.body()
            grace = try body.int("graceSeconds", range: 0...604_800, required: false) ?? 3600
            if let scopes = try body.stringArray("scopes", required: false) {
                guard let app = try await grants.app(key.appID) else { throw APIError.notFound("the key's app is gone") }
                let valid = try validateScopes(scopes, surface: app.surface, field: "scopes")
                guard !valid.isEmpty else { throw APIError.badRequest("field \"scopes\" must name at least one scope") }
                try Self.subset(valid, of: key.scopes ?? app.scopes, field: "scopes", what: "held by the key")
                narrowed = valid
            }
        }
        // nil: the key is gone (revoked, rotated and expired keys are StoreError.conflict, a 409).
        guard let issued = try await grants.rotate(keyID: key.id, graceSeconds: Int(grace), scopes: narrowed) else {
            throw APIError.notFound("no key \"\(key.id)\"")
        }
        return JSONResponse.make(keyJSON(issued.record, secret: issued.key), status: .created)
    }

    func revokeKey(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let key = try await ownKey(principal, try call.parameter("keyId"))
        try await grants.revoke(keyID: key.id)
        return Response(status: .noContent)
    }

    /// The least-privilege report. A held scope counts as used when it alone allows a route the
    /// credential was allowed in the window (decided again, per route, with that one scope), so
    /// a scope that implies another is credited for what it opened.
    func usage(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let app = try await ownApp(principal, try call.parameter("appId"))
        var days = try call.query()["days"].flatMap { Int($0) } ?? 30
        // Scopes used before the oldest event kept would look unused: the window stops there.
        if auditRetentionDays > 0 { days = min(days, auditRetentionDays) }
        await auditWriter.flush()
        let now = Clock.millis()
        let used = try await audit.usage(appID: app.id, since: now - Int64(days) * 86_400_000)
        let catalogs = registry.catalogs(ofApp: app.surface)
        func entry(_ kind: String, id: String, name: String?, held: [String], type: CredentialType) -> JSONValue {
            let routes = Array((used[id]?.routes ?? [:]).values)
            let usedScopes = held.filter { scope in
                catalogs.contains { catalog in
                    guard let set = try? catalog.resolve(names: [scope], credentialType: type) else { return false }
                    return routes.contains { catalog.decide(set, method: $0.method, target: $0.path).isAllowed }
                }
            }
            return [
                "credential": .string(kind), "id": .string(id), "name": .optional(name), "held": .array(held.map { .string($0) }),
                "used": .array(usedScopes.map { .string($0) }), "droppable": .array(held.filter { !usedScopes.contains($0) }.map { .string($0) }),
                "lastUsedAt": .optional(used[id].map { Self.iso8601($0.lastUsedAt) }),
            ]
        }
        var entries: [JSONValue] = []
        for key in try await grants.keys(appID: app.id) where key.revokedAt == nil && (key.expiresAt.map { $0 > now } ?? true) {
            entries.append(entry("api_key", id: key.id, name: key.name, held: key.scopes ?? app.scopes, type: .apiKey))
        }
        for client in try await oauth.clients(appID: app.id) where client.revokedAt == nil {
            entries.append(entry("oauth_client", id: client.clientID, name: nil, held: client.scopes, type: CredentialType(rawValue: client.credentialType) ?? .oauth2))
        }
        return JSONResponse.make(["code": "success", "days": .int(Int64(days)), "data": .array(entries)] as JSONValue)
    }

    func appReviews(_ call: inout ManagementCall) async throws -> Response {
        let principal = call.principal
        let app = try await ownApp(principal, try call.parameter("appId"))
        return JSONResponse.make(.array(try await grants.reviews(appID: app.id).map { reviewJSON($0, app: app) }))
    }
}
