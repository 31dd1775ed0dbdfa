import CaregateStore
import HTTPTypes
import Scopes

/// The OpenAPI 3.1 document of the whole HTTP surface, built from the same lists that
/// register the routes: the management routes and the catalogs' route tables.
enum OpenAPIDocument {
    static func build(registry: SurfaceRegistry, version: String) -> JSONValue {
        var paths: [(String, [(String, JSONValue)])] = []
        func add(_ method: String, _ path: String, _ operation: JSONValue) {
            if let i = paths.firstIndex(where: { $0.0 == path }) { paths[i].1.append((method, operation)) } else { paths.append((path, [(method, operation)])) }
        }
        func parameters(_ path: String) -> [JSONValue] {
            path.split(separator: "/").filter { $0.hasPrefix("{") }.map { segment in
                ["name": .string(String(segment.dropFirst().dropLast())), "in": "path", "required": true, "schema": ["type": "string"]]
            }
        }
        let errorResponse: JSONValue = ["description": "Error", "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]]]
        let jsonBody: JSONValue = ["required": true, "content": ["application/json": ["schema": ["type": "object"]]]]

        for (path, summary) in [("/healthz", "Liveness"), ("/readyz", "Readiness (database reachable)"), ("/metrics", "Prometheus metrics"),
                                ("/openapi.json", "This document"), ("/.well-known/jwks.json", "Public keys of the access-token signer"),
                                ("/.well-known/oauth-authorization-server", "Authorization server metadata (RFC 8414)"),
                                ("/.well-known/smart-configuration", "SMART on FHIR configuration (backend services)")] {
            add("get", path, ["summary": .string(summary), "security": [], "responses": ["200": ["description": "OK"]]])
        }
        for path in ["/oauth2/token", "/api/2.0/oauth2/token"] {
            add("post", path, [
                "summary": "Token endpoint: client_credentials with client_secret_basic or client_secret_post (RFC 6749)",
                "tags": ["oauth"], "security": [],
                "requestBody": ["required": true, "content": ["application/x-www-form-urlencoded": ["schema": ["type": "object", "properties": [
                    "grant_type": ["type": "string"], "scope": ["type": "string"], "client_id": ["type": "string"], "client_secret": ["type": "string"],
                ]]]]],
                "responses": ["200": ["description": "access_token, token_type, expires_in, scope"], "400": ["description": "RFC 6749 error"],
                              "401": ["description": "invalid_client"]],
            ])
        }
        for (path, summary) in [("/oauth2/introspect", "Token introspection (RFC 7662); client-authenticated"),
                                ("/oauth2/revoke", "Token revocation (RFC 7009); client-authenticated")] {
            add("post", path, [
                "summary": .string(summary), "tags": ["oauth"], "security": [],
                "requestBody": ["required": true, "content": ["application/x-www-form-urlencoded": ["schema": ["type": "object", "properties": [
                    "token": ["type": "string"], "token_type_hint": ["type": "string"],
                ]]]]],
                "responses": ["200": ["description": "OK"], "400": ["description": "RFC 6749 error"], "401": ["description": "invalid_client"]],
            ])
        }
        for route in ManagementRoutes.routes {
            let method = route.method.rawValue.lowercased()
            var operation: JSONValue = [
                "summary": .string(managementSummaries[route.method.rawValue + " " + route.path] ?? route.path),
                "tags": ["management"], "security": [["managementToken": []]],
                "parameters": .array(parameters(route.path)),
                "responses": [
                    route.method == .delete ? "204" : (route.method == .get || route.path.hasSuffix("/approve") ? "200" : "201"): ["description": "Success"],
                    "400": errorResponse, "401": errorResponse, "403": errorResponse, "404": errorResponse,
                ],
            ]
            if route.method == .post { operation.set("requestBody", jsonBody) }
            add(method, route.path, operation)
        }
        for catalog in registry.clinicAPISurfaces.map(\.catalog) {
            for route in catalog.routes {
                var responses: [(String, JSONValue)] = [
                    (route.method == .post ? "201" : (route.method == .delete ? "204" : "200"), ["description": "Success"]),
                    ("400", errorResponse), ("401", errorResponse), ("404", errorResponse),
                ]
                if !route.isPublic { responses.append(("403", errorResponse)) }
                var operation: JSONValue = [
                    "summary": .string(route.description ?? route.template),
                    "description": .string("Required scope: \(route.requirement)"),
                    "tags": .string(catalog.surface).asArray,
                    "x-required-scope": .string(route.requirement),
                    "security": [["apiKey": []]],
                    "parameters": .array(parameters(route.path) + [
                        ["name": "X-Organization-Id", "in": "header", "required": true, "schema": ["type": "string"],
                         "description": "The clinic: org_<32 hex> or its UUID form"],
                    ]),
                    "responses": .object(responses),
                ]
                if route.method == .post || route.method == .put || route.method == .patch { operation.set("requestBody", jsonBody) }
                add(route.method.description.lowercased(), route.path, operation)
            }
        }
        for catalog in registry.gatewaySurfaces.map(\.catalog) {
            for route in catalog.routes where !route.isPublic {
                let path = documentedPath(route.path)
                var operation: JSONValue = [
                    "summary": .string(route.description ?? route.template),
                    "description": .string("Gateway route (forwarded to the \(catalog.surface) upstream). Required scope: \(route.requirement)"),
                    "tags": .string(catalog.surface).asArray,
                    "x-required-scope": .string(route.requirement),
                    "security": [["credential": []]],
                    "parameters": .array(parameters(path) + [
                        ["name": "X-Organization-Id", "in": "header", "required": false, "schema": ["type": "string"],
                         "description": "The clinic (not needed with a token of a clinic-bound client)"],
                    ]),
                    "responses": [
                        "200": ["description": "The upstream's answer, passed through"], "401": errorResponse, "403": errorResponse,
                        "404": errorResponse, "502": errorResponse, "504": errorResponse,
                    ],
                ]
                if route.method == .post || route.method == .put || route.method == .patch {
                    operation.set("requestBody", ["content": ["*/*": ["schema": [:] as JSONValue]]])
                }
                add(route.method.description.lowercased(), path, operation)
            }
        }
        return [
            "openapi": "3.1.0",
            "info": ["title": "Caregate", "version": .string(version),
                     "description": "Scope-based permission system for healthcare partner APIs: management API and the built-in clinic data API."],
            "paths": .object(paths.map { ($0.0, .object($0.1)) }),
            "components": [
                "securitySchemes": [
                    "apiKey": ["type": "http", "scheme": "bearer", "description": "API key (<prefix>_<env>_ak_…) with X-Organization-Id"],
                    "managementToken": ["type": "http", "scheme": "bearer", "description": "Operator, developer or clinic-admin token"],
                    "credential": ["type": "http", "scheme": "bearer", "description": "API key or OAuth 2.0 access token"],
                ],
                "schemas": [
                    "Error": ["type": "object", "required": ["code", "message", "trace_id"],
                              "properties": ["code": ["type": "string"], "message": ["type": "string"], "trace_id": ["type": "string", "format": "uuid"]]],
                ],
            ],
        ]
    }

    /// A route template as an OpenAPI path: a trailing `*` (any deeper path) becomes `{rest}`.
    static func documentedPath(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false).map { $0 == "*" ? "{rest}" : String($0) }.joined(separator: "/")
    }

    static let managementSummaries: [String: String] = [
        "POST /manage/developers": "Create a developer (operator) → {id, token}",
        "POST /manage/organizations": "Create an organization {name, environment?: prd|sbx} (operator) → {id, uuid, environment, adminToken}; a key works only in clinics of its own environment",
        "POST /manage/organizations/{orgId}/sample-data": "Generate synthetic clinic data {patients?} (operator)",
        "POST /manage/apps": "Create an app {slug, name, surface?, scopes} (developer)",
        "GET /manage/apps/{appId}": "Get an app (developer)",
        "POST /manage/apps/{appId}/versions": "Add an app version {scopes}; it becomes live (developer)",
        "POST /manage/apps/{appId}/keys": "Create an API key {name, environment, scopes?, expiresAt?}; the key is shown once (developer)",
        "GET /manage/apps/{appId}/keys": "List an app's keys, masked (developer)",
        "POST /manage/apps/{appId}/oauth-clients": "Register an OAuth client {scopes, grantTypes, credentialType?, organizationId?, jwks? or jwksUri?}; the secret (no keys) is shown once (developer)",
        "POST /manage/keys/{keyId}/rotate": "Rotate a key {graceSeconds?}; the old key stops after the grace (developer)",
        "DELETE /manage/keys/{keyId}": "Revoke a key at once (developer)",
        "POST /manage/installations": "Install an app {appId, scopes?} (clinic admin)",
        "GET /manage/installations/{id}": "Get an installation with the live version's scopes (clinic admin)",
        "POST /manage/installations/{id}/approve": "Re-approve against the live version {scopes} (clinic admin)",
        "DELETE /manage/installations/{id}": "Uninstall: every credential loses this clinic at once (clinic admin)",
        "GET /manage/signing-keys": "Token-signing keys still published, and which one signs (operator)",
        "POST /manage/signing-keys/rotate": "Rotate the token-signing key; the old public key stays published until its tokens expire (operator)",
        "POST /manage/tokens/rotate": "Replace the caller's management token {expiresAt?}: the new one is shown once, the presented one stops at once",
        "POST /manage/tokens": "Issue a management token for a developer or clinic {subjectId, expiresAt?} (operator); shown once",
        "GET /manage/tokens": "Developer and clinic-admin tokens ?subjectId, without the secrets (operator)",
        "DELETE /manage/tokens/{tokenId}": "Revoke a developer's or clinic admin's token at once (operator)",
        "GET /manage/audit": "Audit log ?organizationId&appId&decision&limit&cursor (operator; clinic admin: own clinic)",
    ]
}

extension JSONValue {
    var asArray: JSONValue { .array([self]) }
}
