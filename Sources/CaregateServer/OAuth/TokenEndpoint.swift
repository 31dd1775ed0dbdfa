import CaregateStore
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import Scopes

/// `POST /oauth2/token` (and `/api/2.0/oauth2/token/` for the practice API): the
/// `client_credentials` grant with a client secret (HTTP Basic or in the body), RFC 6749
/// error answers, signed JWT access tokens.
struct TokenEndpoint: Sendable {
    let grants: GrantStore
    let oauth: OAuthStore
    let tokens: TokenService
    let registry: SurfaceRegistry
    /// JWK Sets of clients registered with a `jwksUri`.
    let keySets: ClientKeySets
    let smart: SMARTStore

    struct OAuthError: Error {
        var status: HTTPResponse.Status = .badRequest
        var error: String
        var description: String
        var basicChallenge = false
        /// The client a failed authentication named (counted against it).
        var clientID: String?
        /// Seconds until the caller may try again (a 429).
        var retryAfter: Int?
    }

    /// Failed client authentications per caller address and per client id, each over a
    /// minute: past the limit the endpoint answers 429 with `Retry-After`.
    let addressFailures = FailureLimiter(limit: 60)
    let clientFailures = FailureLimiter(limit: 20)

    static let maxBodyBytes = 16 * 1024

    func handle(_ request: Request, _ context: CaregateContext) async throws -> Response {
        try await respond(request, context, token)
    }

    /// RFC 7662: a client may introspect the tokens issued to it; anything else is `{"active":false}`.
    func introspect(_ request: Request, _ context: CaregateContext) async throws -> Response {
        try await respond(request, context) { request in
            let claims = try await ownToken(request)
            guard let claims, try await !oauth.isRevoked(jti: claims.jti.value) else { return Self.json(["active": false]) }
            if let family = claims.fam, try await !smart.isFamilyActive(family) { return Self.json(["active": false]) }
            var answer: JSONValue = [
                "active": true, "scope": .string(claims.scope), "client_id": .string(claims.client_id), "token_type": "Bearer",
                "exp": .int(Int64(claims.exp.value.timeIntervalSince1970)), "iat": .int(Int64(claims.iat.value.timeIntervalSince1970)),
                "sub": .string(claims.sub.value), "aud": .string(TokenService.audience), "iss": .string(claims.iss.value),
                "jti": .string(claims.jti.value),
            ]
            if let org = claims.org { answer.set("org", .string(org)) }
            if let patient = claims.patient { answer.set("patient", .string(patient)) }
            if let encounter = claims.encounter { answer.set("encounter", .string(encounter)) }
            if let fhirUser = claims.fhirUser { answer.set("fhirUser", .string(tokens.fhirBase + "/" + fhirUser)) }
            return Self.json(answer)
        }
    }

    /// RFC 7009: 200 whether or not the token was known; a client revokes only its own tokens.
    func revoke(_ request: Request, _ context: CaregateContext) async throws -> Response {
        try await respond(request, context) { request in
            var request = request
            let form = try await form(&request)
            let client = try await authenticate(request, form)
            guard let token = form["token"] else { throw OAuthError(error: "invalid_request", description: "token is required") }
            // A refresh token ends its whole family: every access token the authorization issued.
            if try await !smart.revokeRefreshToken(token, clientID: client.clientID),
               let claims = await tokens.verify(token), claims.client_id == client.clientID {
                try await oauth.revoke(jti: claims.jti.value, expiresAt: Int64(claims.exp.value.timeIntervalSince1970 * 1000))
            }
            return Response(status: .ok, headers: [.cacheControl: "no-store"])
        }
    }

    /// Introspection and revocation: the authenticated client's `token` parameter, when it is a
    /// valid token issued to that client (`nil` otherwise: such tokens are not its business).
    private func ownToken(_ request: Request) async throws -> AccessTokenClaims? {
        var request = request
        let form = try await form(&request)
        let client = try await authenticate(request, form)
        guard let token = form["token"] else { throw OAuthError(error: "invalid_request", description: "token is required") }
        guard let claims = await tokens.verify(token), claims.client_id == client.clientID else { return nil }
        return claims
    }

    static func json(_ value: JSONValue) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store", .pragma: "no-cache"],
                 body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
    }

    /// Runs one of the endpoints with RFC 6749 error answers; a caller past its limit of failed
    /// client authentications gets 429 with `Retry-After`, whatever it sends.
    func respond(_ request: Request, _ context: CaregateContext, _ body: (Request) async throws -> Response) async throws -> Response {
        let peer = "address " + (context.remoteIP ?? "unknown")
        do {
            if let wait = addressFailures.retryAfter(peer) { throw Self.tooManyFailures(wait) }
            return try await body(request)
        } catch let e as OAuthError {
            if e.status == .unauthorized {
                addressFailures.recordFailure(peer)
                if let client = e.clientID { clientFailures.recordFailure(client) }
            }
            var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store", .pragma: "no-cache"]
            if e.basicChallenge { headers[.wwwAuthenticate] = #"Basic realm="caregate""# }
            if let wait = e.retryAfter { headers[.retryAfter] = String(wait) }
            let answer: JSONValue = ["error": .string(e.error), "error_description": .string(e.description)]
            return Response(status: e.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer.serialized())))
        }
    }

    static func tooManyFailures(_ wait: Int) -> OAuthError {
        OAuthError(
            status: .tooManyRequests, error: "temporarily_unavailable",
            description: "too many failed client authentications; retry after \(wait) s", retryAfter: wait)
    }

    /// The form body: `application/x-www-form-urlencoded`, at most 16 KiB, no repeated parameter.
    func form(_ request: inout Request) async throws -> [String: String] {
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/x-www-form-urlencoded") else {
            throw OAuthError(error: "invalid_request", description: "the body must be application/x-www-form-urlencoded")
        }
        guard let body = try? await request.collectBody(upTo: Self.maxBodyBytes) else {
            throw OAuthError(status: .contentTooLarge, error: "invalid_request", description: "the body may be at most \(Self.maxBodyBytes) bytes")
        }
        var form: [String: String] = [:]
        for (name, value) in QueryItems.parse(String(buffer: body)) {
            guard form[name] == nil else { throw OAuthError(error: "invalid_request", description: "parameter \(Validate.safe(name)) is repeated") }
            form[name] = value
        }
        return form
    }

    /// Client authentication: HTTP Basic or client_secret_post, not both; the secret is
    /// compared as a keyed hash in constant time.
    func authenticate(_ request: Request, _ form: [String: String]) async throws -> OAuthClientRecord {
        var clientID: String
        var secret: String
        var basic = false
        // RFC 6749 §2.3: one method per request. Counting them first means no assertion beside
        // a Basic header is silently ignored (and its `jti` left unconsumed).
        let hasBasic = request.headers[.authorization].map { $0.lowercased().hasPrefix("basic ") } ?? false
        let methods = [hasBasic, form["client_secret"] != nil, form["client_assertion_type"] != nil || form["client_assertion"] != nil]
        guard methods.filter({ $0 }).count <= 1 else {
            throw OAuthError(error: "invalid_request", description: "use one client authentication method (HTTP Basic, client_secret or client_assertion)")
        }
        if hasBasic, let authorization = request.headers[.authorization] {
            guard let decoded = Data(base64Encoded: String(authorization.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
                  let pair = String(data: decoded, encoding: .utf8), let colon = pair.firstIndex(of: ":")
            else { throw OAuthError(status: .unauthorized, error: "invalid_client", description: "malformed Basic credentials", basicChallenge: true) }
            // RFC 6749 §2.3.1: both parts are form-urlencoded.
            clientID = QueryItems.parse("a=" + pair[..<colon]).first?.value ?? ""
            secret = QueryItems.parse("a=" + pair[pair.index(after: colon)...]).first?.value ?? ""
            basic = true
            if let bodyClient = form["client_id"], bodyClient != clientID {
                throw OAuthError(error: "invalid_request", description: "client_id differs from the authenticated client")
            }
        } else if form["client_assertion_type"] != nil || form["client_assertion"] != nil {
            return try await authenticateAssertion(request, form)
        } else if let id = form["client_id"], let bodySecret = form["client_secret"] {
            clientID = id
            secret = bodySecret
        } else if let id = form["client_id"] {
            // A public client names itself; PKCE (or owning the token) is its proof.
            if let wait = clientFailures.retryAfter(id) { throw Self.tooManyFailures(wait) }
            guard let client = try await oauth.client(id), client.isPublic, client.revokedAt == nil else {
                throw OAuthError(status: .unauthorized, error: "invalid_client", description: "client authentication is required", basicChallenge: true,
                                 clientID: String(id.prefix(100)))
            }
            return client
        } else {
            throw OAuthError(status: .unauthorized, error: "invalid_client", description: "client authentication is required", basicChallenge: true)
        }
        if let wait = clientFailures.retryAfter(clientID) { throw Self.tooManyFailures(wait) }
        guard let client = try await oauth.client(clientID), client.revokedAt == nil, let stored = client.secretHash,
              Secrets.constantTimeEquals(stored, grants.hash(secret))
        else {
            throw OAuthError(
                status: .unauthorized, error: "invalid_client", description: "unknown client or wrong secret", basicChallenge: basic,
                clientID: String(clientID.prefix(100)))
        }
        return client
    }

    static let assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    /// In code points, as the document's maxLength counts them (a JWT is ASCII).
    static let maxAssertionLength = 8_192

    /// RFC 7523 / SMART backend services: a JWT signed with one of the client's registered
    /// keys (RS384 or ES384, `kid` required), `iss` = `sub` = client id, `aud` = this token
    /// endpoint's URL, `exp` at most five minutes ahead, `jti` never seen before.
    func authenticateAssertion(_ request: Request, _ form: [String: String]) async throws -> OAuthClientRecord {
        func refuse(_ why: String) -> OAuthError { OAuthError(status: .unauthorized, error: "invalid_client", description: why) }
        guard form["client_assertion_type"] == Self.assertionType else {
            throw OAuthError(error: "invalid_request", description: "client_assertion_type must be \(Self.assertionType)")
        }
        guard let assertion = form["client_assertion"] else {
            throw OAuthError(error: "invalid_request", description: "client_assertion is required")
        }
        guard assertion.unicodeScalars.count <= Self.maxAssertionLength else {
            throw OAuthError(error: "invalid_request", description: "client_assertion may be at most \(Self.maxAssertionLength) characters")
        }
        guard let header = TokenService.header(of: assertion) else { throw refuse("the assertion is not a JWT") }
        guard let alg = header["alg"] as? String, alg == "RS384" || alg == "ES384" else { throw refuse("the assertion must be signed with RS384 or ES384") }
        guard let kid = header["kid"] as? String else { throw refuse("the assertion header needs a kid") }
        guard let payload = TokenService.segment(1, of: assertion), let unverified = try? JSONDecoder().decode(AssertionPeek.self, from: payload),
              let client = try await oauth.client(unverified.iss), client.revokedAt == nil
        else { throw refuse("unknown client") }
        // The keys: registered inline, or fetched from the registered URL — never from a URL
        // the assertion names (`jku` must be that registered URL).
        let jwks: String
        if let inline = client.jwks {
            guard header["jku"] == nil else { throw refuse("jku is not allowed: this client registered its keys inline") }
            jwks = inline
        } else if let url = client.jwksURI {
            if let jku = header["jku"] { guard jku as? String == url else { throw refuse("jku must be the registered JWKS URL") } }
            do {
                jwks = try await keySets.keySet(url: url, kid: kid)
            } catch {
                throw refuse("\(error)")
            }
        } else {
            throw refuse("this client has no registered keys (it authenticates with its secret)")
        }
        if let id = form["client_id"], id != client.clientID { throw OAuthError(error: "invalid_request", description: "client_id differs from the assertion's issuer") }
        guard let keys = await keySets.keys(json: jwks), let claims = try? await keys.verify(assertion, as: ClientAssertionClaims.self)
        else { throw refuse("the assertion's signature, key or expiry is not valid") }
        guard claims.iss.value == client.clientID, claims.sub.value == client.clientID else { throw refuse("iss and sub must both be the client id") }
        let tokenURL = tokens.issuer + request.uri.path
        guard claims.aud.value.contains(tokenURL) else { throw refuse("aud must be \(tokenURL)") }
        let expiry = claims.exp.value.timeIntervalSinceNow
        guard expiry <= 300 else { throw refuse("exp may be at most 5 minutes ahead") }
        guard try await oauth.useAssertion(jti: claims.jti.value, clientID: client.clientID, expiresAt: Int64(claims.exp.value.timeIntervalSince1970 * 1000)) else {
            throw refuse("this assertion (jti) was already used")
        }
        return client
    }

    struct AssertionPeek: Decodable { var iss: String }

    private func token(_ request: Request) async throws -> Response {
        var request = request
        let form = try await form(&request)
        let client = try await authenticate(request, form)

        guard let grantType = form["grant_type"] else { throw OAuthError(error: "invalid_request", description: "grant_type is required") }
        guard Self.grantTypes.contains(grantType) else {
            throw OAuthError(error: "unsupported_grant_type", description: "grant_type \(Validate.safe(grantType)) is not supported")
        }
        guard client.grantTypes.contains(grantType) else {
            throw OAuthError(error: "unauthorized_client", description: "this client may not use \(grantType)")
        }
        guard let app = try await grants.app(client.appID) else { throw OAuthError(error: "invalid_client", description: "the client's app is gone") }
        switch grantType {
        case "authorization_code": return try await authorizationCode(form, client: client, app: app)
        case "refresh_token": return try await refresh(form, client: client, app: app)
        default: return try await clientCredentials(form, client: client, app: app)
        }
    }

    static let grantTypes: Set<String> = ["client_credentials", "authorization_code", "refresh_token"]

    private func clientCredentials(_ form: [String: String], client: OAuthClientRecord, app: AppRecord) async throws -> Response {
        let surfaceCatalogs = registry.catalogs(ofApp: app.surface)
        let credentialType = CredentialType(rawValue: client.credentialType) ?? .oauth2

        // Scopes: space-separated; none asked → the surface's global scope, or everything the client may have.
        var requested: [String]
        if let text = form["scope"] {
            do {
                requested = try ScopeList.parse(text).map(\.description)
            } catch {
                throw OAuthError(error: "invalid_scope", description: error.description)
            }
            if requested.isEmpty { throw OAuthError(error: "invalid_scope", description: "scope is empty") }
        } else if let global = surfaceCatalogs.first?.globalScope {
            requested = [global]
        } else {
            requested = client.scopes
        }
        for catalog in surfaceCatalogs where catalog.globalScope != nil {
            do {
                _ = try catalog.resolve(names: requested, credentialType: credentialType)
            } catch {
                throw OAuthError(error: "invalid_scope", description: error.description)
            }
        }
        // What the client may have, per catalog: resolved once, not once per requested scope.
        let allowedSets = surfaceCatalogs.map { CredentialResolver.known(client.scopes, in: $0) }
        for name in requested {
            var known = false
            var problem = "unknown scope \"\(Validate.safe(name))\""
            for (catalog, allowed) in zip(surfaceCatalogs, allowedSets) {
                do {
                    let asked = try catalog.resolve(names: [name], credentialType: credentialType)
                    guard asked.isSubset(of: allowed) else {
                        problem = "scope \"\(name)\" is not allowed for this client"
                        continue
                    }
                    known = true
                    break
                } catch {
                    problem = error.description
                }
            }
            if !known { throw OAuthError(error: "invalid_scope", description: problem) }
        }
        let scope = requested.joined(separator: " ")
        let issued = try await tokens.issue(clientID: client.clientID, scope: scope, organizationID: client.organizationID)
        return Self.json([
            "access_token": .string(issued.token), "token_type": "Bearer", "expires_in": .int(TokenService.lifetime), "scope": .string(scope),
        ])
    }

    // MARK: SMART App Launch

    /// `authorization_code`: the code is taken once (a second presentation revokes what the
    /// first issued), then checked against the redirect URI and the PKCE verifier.
    private func authorizationCode(_ form: [String: String], client: OAuthClientRecord, app: AppRecord) async throws -> Response {
        guard let code = form["code"], !code.isEmpty else { throw OAuthError(error: "invalid_request", description: "code is required") }
        guard let redirectURI = form["redirect_uri"] else { throw OAuthError(error: "invalid_request", description: "redirect_uri is required") }
        let record: AuthorizationCodeRecord
        switch try await smart.redeemCode(code, clientID: client.clientID) {
        case .invalid:
            throw OAuthError(error: "invalid_grant", description: "the code is unknown, expired or another client's")
        case .replayed:
            throw OAuthError(error: "invalid_grant", description: "the code was already used; the tokens issued for it are revoked")
        case .redeemed(let redeemed):
            record = redeemed
        }
        guard record.redirectURI == redirectURI else {
            throw OAuthError(error: "invalid_grant", description: "redirect_uri differs from the authorization request's")
        }
        guard let verifier = form["code_verifier"], !verifier.isEmpty else {
            throw OAuthError(error: "invalid_grant", description: "code_verifier is required (PKCE)")
        }
        guard PKCE.matches(verifier: verifier, challenge: record.codeChallenge) else {
            throw OAuthError(error: "invalid_grant", description: "code_verifier does not match the code_challenge")
        }
        let family = TokenFamilyRecord(
            id: record.familyID, clientID: client.clientID, userID: record.userID, organizationID: record.organizationID, scope: record.scope,
            context: record.context, revokedAt: nil)
        guard try await smart.createFamily(family) else {
            throw OAuthError(error: "invalid_grant", description: "the code was already used; the tokens issued for it are revoked")
        }
        // Checked after the family exists: a removal racing this exchange either comes first (refused
        // here) or revokes the family it finds.
        guard try await grants.clinicUser(id: record.userID) != nil else {
            try await smart.revokeFamily(family.id)
            throw OAuthError(error: "invalid_grant", description: "the person who approved this is no longer a user")
        }
        return try await launchTokens(client: client, family: family, scope: record.scope, nonce: record.context.nonce)
    }

    /// `refresh_token`: rotating (each use returns the next one; a reused one revokes the
    /// family), bound to the client, narrowing allowed and widening refused.
    private func refresh(_ form: [String: String], client: OAuthClientRecord, app: AppRecord) async throws -> Response {
        guard let token = form["refresh_token"], !token.isEmpty else { throw OAuthError(error: "invalid_request", description: "refresh_token is required") }
        guard let catalog = registry.catalogs(ofApp: app.surface).first else {
            throw OAuthError(error: "invalid_client", description: "the client's app is gone")
        }
        var narrowed: [String]?
        let use = try await smart.takeRefreshToken(token, clientID: client.clientID) { _, held in
            guard let text = form["scope"] else { return }
            switch SMARTGrant(catalog: catalog).narrowed(text, within: held) {
            case .success(let names): narrowed = names
            case .failure(let problem): throw OAuthError(error: "invalid_scope", description: problem.description)
            }
        }
        switch use {
        case .invalid:
            throw OAuthError(error: "invalid_grant", description: "the refresh token is unknown, expired, revoked or another client's")
        case .reused:
            throw OAuthError(error: "invalid_grant", description: "the refresh token was already used: every token of its authorization is revoked")
        case .taken(let family, let held):
            return try await launchTokens(client: client, family: family, scope: narrowed ?? held, nonce: nil)
        }
    }

    /// How long a refresh token lives: `offline_access` outlives the session, `online_access` a working day.
    static let offlineLifetime: Int64 = 90 * 24 * 3_600_000
    static let onlineLifetime: Int64 = 8 * 3_600_000

    /// The token answer of a SMART authorization: the access token with its launch context, a
    /// refresh token for `offline_access`/`online_access`, an id_token for `openid`.
    private func launchTokens(client: OAuthClientRecord, family: TokenFamilyRecord, scope: [String], nonce: String?) async throws -> Response {
        let text = scope.joined(separator: " ")
        let context = family.context
        let issued = try await tokens.issue(
            clientID: client.clientID, scope: text, organizationID: family.organizationID, subject: family.userID,
            context: context, family: family.id)
        var answer: [(String, JSONValue)] = [
            ("access_token", .string(issued.token)), ("token_type", "Bearer"), ("expires_in", .int(TokenService.lifetime)), ("scope", .string(text)),
        ]
        if scope.contains("offline_access") || scope.contains("online_access") {
            let lifetime = scope.contains("offline_access") ? Self.offlineLifetime : Self.onlineLifetime
            answer.append(("refresh_token", .string(try await smart.createRefreshToken(familyID: family.id, scope: scope, lifetime: lifetime))))
        }
        if scope.contains("openid") {
            let idToken = try await tokens.issueIDToken(
                clientID: client.clientID, subject: family.userID, fhirUser: scope.contains("fhirUser") ? context.fhirUser : nil, nonce: nonce)
            answer.append(("id_token", .string(idToken)))
        }
        if let patient = context.patient { answer.append(("patient", .string(patient))) }
        if let encounter = context.encounter { answer.append(("encounter", .string(encounter))) }
        if let banner = context.needPatientBanner { answer.append(("need_patient_banner", .bool(banner))) }
        answer.append(("smart_style_url", .string(tokens.issuer + SMARTStyle.path)))
        return Self.json(.object(answer))
    }
}

/// The claims of an RFC 7523 client assertion.
struct ClientAssertionClaims: JWTPayload {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var jti: IDClaim

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}
