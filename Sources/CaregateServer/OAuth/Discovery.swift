import CaregateStore

/// The discovery documents: RFC 8414 authorization server metadata and the SMART App Launch
/// configuration, built from one list of what the server offers.
enum Discovery {
    static func documents(issuer: String, scopeNames: [String]) -> (authorizationServer: JSONValue, smart: JSONValue) {
        func common(_ authMethods: [String]) -> [(String, JSONValue)] {
            [
                ("issuer", .string(issuer)), ("token_endpoint", .string(issuer + "/oauth2/token")),
                ("jwks_uri", .string(issuer + "/.well-known/jwks.json")),
                ("introspection_endpoint", .string(issuer + "/oauth2/introspect")), ("revocation_endpoint", .string(issuer + "/oauth2/revoke")),
                ("grant_types_supported", ["client_credentials"]),
                ("token_endpoint_auth_methods_supported", .array(authMethods.map { .string($0) })),
                ("token_endpoint_auth_signing_alg_values_supported", ["RS384", "ES384"]),
                ("response_types_supported", []),
            ]
        }
        let authorizationServer = JSONValue.object(
            common(["client_secret_basic", "client_secret_post", "private_key_jwt"])
                + [("scopes_supported", .array(scopeNames.map { .string($0) }))])
        // SMART App Launch 2.x, for what is offered today: backend services (client_credentials
        // with an asymmetric or symmetric client) and v1/v2 scopes.
        let smart = JSONValue.object(
            common(["private_key_jwt", "client_secret_basic", "client_secret_post"]) + [
                ("scopes_supported", .array(scopeNames.filter { $0.contains("/") }.map { .string($0) })),
                ("capabilities", ["client-confidential-asymmetric", "client-confidential-symmetric", "permission-v1", "permission-v2"]),
                ("code_challenge_methods_supported", ["S256"]),
            ])
        return (authorizationServer, smart)
    }
}
