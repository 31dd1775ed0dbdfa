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
        for operation in ManagementAPI.operations {
            var responses: [(String, JSONValue)] = [
                (String(operation.success.code), operation.response.map { ["description": "Success", "content": ["application/json": ["schema": Schema.ref($0).json]]] }
                    ?? ["description": "Success"]),
                ("400", errorResponse), ("401", errorResponse), ("403", errorResponse), ("404", errorResponse),
            ]
            if operation.conflicts { responses.append(("409", errorResponse)) }
            var parameters = parameters(operation.path)
            for query in operation.query {
                parameters.append(["name": .string(query.name), "in": "query", "required": false, "schema": query.schema.json, "description": .string(query.description)])
            }
            var document: JSONValue = [
                "summary": .string(operation.summary), "tags": ["management"], "security": [["managementToken": []]],
                "parameters": .array(parameters), "responses": .object(responses),
            ]
            if let body = operation.body {
                responses.append(("413", errorResponse))
                responses.append(("415", errorResponse))
                document.set("responses", .object(responses))
                document.set("requestBody", ["required": .bool(!body.optional), "content": ["application/json": ["schema": Schema.ref(body.name).json]]])
            }
            add(operation.method.rawValue.lowercased(), operation.path, document)
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
                "schemas": .object([
                    ("Error", ["type": "object", "required": ["code", "message", "trace_id"],
                               "properties": ["code": ["type": "string"], "message": ["type": "string"], "trace_id": ["type": "string", "format": "uuid"]]]),
                ] + ManagementAPI.schemas.map { ($0.0, $0.1.json) }),
            ],
        ]
    }

    /// A route template as an OpenAPI path: a trailing `*` (any deeper path) becomes `{rest}`.
    static func documentedPath(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false).map { $0 == "*" ? "{rest}" : String($0) }.joined(separator: "/")
    }
}

extension JSONValue {
    var asArray: JSONValue { .array([self]) }
}
