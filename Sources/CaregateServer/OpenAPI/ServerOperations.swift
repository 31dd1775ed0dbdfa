import CaregateStore

/// Caregate's own routes beside the management API: health, metrics, this document, the
/// OAuth 2.0 endpoints and the discovery documents.
enum ServerOperations {
    static func add(to paths: inout OpenAPIPaths, schemas: inout [(String, JSONValue)]) {
        func get(_ path: String, _ summary: String, _ responses: [(String, JSONValue)]) {
            let (documented, _) = paths.file(path)
            paths.add("get", documented, [
                "summary": .string(summary), "tags": ["server"], "security": [],
                "responses": .object(responses + [("405", OpenAPIDocument.methodNotAllowed)]),
            ])
        }
        func json(_ schema: Schema) -> JSONValue { ["description": "OK", "content": ["application/json": ["schema": schema.json]]] }
        let status = Schema.object([("status", .text)], required: ["status"])
        get("/healthz", "Liveness", [("200", json(status))])
        get("/readyz", "Readiness: the database answers", [("200", json(status)), ("503", OpenAPIDocument.errorResponse("The database is not reachable"))])
        get("/metrics", "Prometheus metrics (requests by route template, method and status)", [
            ("200", ["description": "OK", "content": ["text/plain": ["schema": ["type": "string"]]]]),
        ])
        get("/openapi.json", "This document", [("200", json(.map(.any)))])
        get("/.well-known/jwks.json", "Public keys of the access-token signer", [("200", json(.object([("keys", .array(.map(.any)))], required: ["keys"])))])
        get("/.well-known/oauth-authorization-server", "Authorization server metadata (RFC 8414)", [("200", json(.ref("ServerMetadata")))])
        get("/.well-known/smart-configuration", "SMART App Launch configuration", [("200", json(.ref("ServerMetadata")))])
        get(Discovery.fhirSMARTConfigurationPath, "SMART App Launch configuration at the FHIR base", [("200", json(.ref("ServerMetadata")))])
        get("/.well-known/openid-configuration", "OpenID Connect discovery (id_tokens are RS256)", [("200", json(.ref("ServerMetadata")))])
        get(Discovery.metadataPath, "FHIR R4 CapabilityStatement, with the SMART oauth-uris extension (public)", [
            ("200", ["description": "OK", "content": ["application/fhir+json": ["schema": Schema.map(.any).json]]]),
        ])
        get(SMARTStyle.path, "The style a SMART app launched from Caregate may follow (smart_style_url)", [("200", json(.map(.text)))])
        authorize(&paths)
        schemas.append(("ServerMetadata", Schema.object(
            [("issuer", .text), ("token_endpoint", .text), ("jwks_uri", .text), ("grant_types_supported", .array(.text)),
             ("token_endpoint_auth_methods_supported", .array(.text)), ("scopes_supported", .array(.text))],
            required: ["issuer", "token_endpoint", "jwks_uri", "grant_types_supported", "token_endpoint_auth_methods_supported"]).json))

        schemas.append(("TokenRequest", tokenRequest.json))
        schemas.append(("TokenResponse", Schema.object(
            [("access_token", .text), ("token_type", .oneOf(["Bearer"])), ("expires_in", .integer(minimum: 1)), ("scope", .text),
             ("refresh_token", .text), ("id_token", .text), ("patient", .text), ("encounter", .text), ("need_patient_banner", .boolean),
             ("smart_style_url", .text)],
            required: ["access_token", "token_type", "expires_in", "scope"]).json))
        schemas.append(("TokenQuery", tokenQuery.json))
        schemas.append(("Introspection", Schema.object(
            [("active", .boolean), ("scope", .text), ("client_id", .text), ("token_type", .text), ("exp", .integer()), ("iat", .integer()),
             ("sub", .text), ("aud", .text), ("iss", .text), ("jti", .text), ("org", .text), ("patient", .text), ("encounter", .text),
             ("fhirUser", .text)],
            required: ["active"]).json))
        for path in ["/oauth2/token", "/api/2.0/oauth2/token"] {
            oauth(&paths, path, "Token endpoint: client_credentials, authorization_code (PKCE S256) and refresh_token (rotating), with client_secret_basic, client_secret_post, private_key_jwt, or client_id alone for a public client (RFC 6749, RFC 7523, RFC 7636)",
                  request: "TokenRequest", success: json(.ref("TokenResponse")))
        }
        oauth(&paths, "/oauth2/introspect", "Token introspection (RFC 7662); a client introspects its own tokens",
              request: "TokenQuery", success: json(.ref("Introspection")))
        oauth(&paths, "/oauth2/revoke", "Token revocation (RFC 7009); a client revokes its own tokens",
              request: "TokenQuery", success: ["description": "Revoked, or not a token of this client"])
    }

    /// `GET|POST /oauth2/authorize`: the start of a SMART authorization. Its answer is a page
    /// (sign-in), a redirect to the app (an error other than the two below, with `state`), or
    /// an error page for an unknown client or a redirect URI that is not registered exactly. The
    /// pages that follow post to `/oauth2/authorize/{step}`: forms for people, not API.
    static func authorize(_ paths: inout OpenAPIPaths) {
        let (documented, _) = paths.file("/oauth2/authorize")
        let parameters: [(String, String)] = [
            ("response_type", "code"), ("client_id", "A registered SMART client"), ("redirect_uri", "One of the client's redirect URIs, exactly"),
            ("scope", "Space-separated scopes"), ("state", "Echoed on the redirect"), ("aud", "The FHIR base URL"),
            ("code_challenge", "BASE64URL(SHA-256(code_verifier))"), ("code_challenge_method", "S256"), ("launch", "From an EHR launch"),
            ("nonce", "Echoed in the id_token"),
        ]
        let html: JSONValue = ["text/html": ["schema": ["type": "string"]]]
        let responses: JSONValue = [
            "200": ["description": "The sign-in page", "content": html],
            "302": ["description": "Back to the app's redirect URI with error, error_description and state",
                    "headers": ["Location": ["required": true, "schema": ["type": "string"]]]],
            "400": ["description": "An error page: unknown client, a redirect URI not registered, a repeated parameter", "content": html],
            "405": OpenAPIDocument.methodNotAllowed,
        ]
        let summary = "SMART App Launch authorization request (RFC 6749 §4.1, PKCE S256 required)"
        paths.add("get", documented, [
            "summary": .string(summary), "tags": ["oauth"], "security": [],
            "parameters": .array(parameters.map { name, description in
                ["name": .string(name), "in": "query", "required": false, "description": .string(description), "schema": ["type": "string"]]
            }),
            "responses": responses,
        ])
        var formResponses = responses
        formResponses.set("413", OpenAPIDocument.errorResponse("The form is over 64 KiB"))
        formResponses.set("415", OpenAPIDocument.errorResponse("The body is not application/x-www-form-urlencoded"))
        paths.add("post", documented, [
            "summary": .string(summary + ", as a form"), "tags": ["oauth"], "security": [],
            "requestBody": ["required": true, "content": ["application/x-www-form-urlencoded": ["schema": Schema.map(.text).json]]],
            "responses": formResponses,
        ])
    }

    static let assertionFields: [(String, Schema)] = [
        ("client_assertion_type", .oneOf(["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"])), ("client_assertion", .string(maxLength: TokenEndpoint.maxAssertionLength)),
    ]

    /// An RFC 6749 form: the named parameters, any other as a single string (ignored); one client
    /// authentication method per request (a secret and an assertion never together), and an
    /// assertion always with its type (RFC 7521 §4.2).
    static func form(_ properties: [(String, Schema)], required: [String]) -> Schema {
        func needs(_ field: String, _ other: String) -> Schema {  // never field without other
            .not(.allOf([.object([], required: [field]), .not(.object([], required: [other]))]))
        }
        return .allOf([
            .openObject(properties + [("client_id", .text), ("client_secret", .text)] + assertionFields, required: required, additional: .text),
            .not(.object([], required: ["client_secret", "client_assertion"])),
            .not(.object([], required: ["client_secret", "client_assertion_type"])),
            needs("client_assertion", "client_assertion_type"),
            needs("client_assertion_type", "client_assertion"),
        ])
    }

    static let tokenRequest = form([("grant_type", .text), ("scope", .text)], required: ["grant_type"])
    static let tokenQuery = form([("token", .text), ("token_type_hint", .text)], required: ["token"])

    static func oauth(_ paths: inout OpenAPIPaths, _ path: String, _ summary: String, request: String, success: JSONValue) {
        let (documented, _) = paths.file(path)
        let oauthError: JSONValue = ["description": "RFC 6749 error", "content": ["application/json": ["schema": Schema.ref("OAuthError").json]]]
        paths.add("post", documented, [
            // The client authenticates with HTTP Basic, or in the form (the empty alternative).
            "summary": .string(summary), "tags": ["oauth"], "security": [["oauthClient": []], [:]],
            "requestBody": ["required": true, "content": ["application/x-www-form-urlencoded": ["schema": Schema.ref(request).json]]],
            "responses": [
                "200": success, "400": oauthError, "401": oauthError, "405": OpenAPIDocument.methodNotAllowed,
                "413": ["description": "Body over 16 KiB", "content": ["application/json": ["schema": Schema.ref("OAuthError").json]]],
                "429": [
                    "description": "Too many failed client authentications from this address or for this client; retry after the given seconds",
                    "headers": ["Retry-After": ["required": true, "schema": ["type": "integer", "minimum": 1]]],
                    "content": ["application/json": ["schema": Schema.ref("OAuthError").json]],
                ],
            ],
        ])
    }
}
