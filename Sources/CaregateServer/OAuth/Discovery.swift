import CaregateStore
import Foundation
import Scopes

/// The discovery documents, built from one list of what the server offers: RFC 8414
/// authorization server metadata, the SMART App Launch configuration (at the issuer and at
/// the FHIR base), OpenID Connect discovery, and the FHIR CapabilityStatement that SMART
/// clients such as fhirclient read for the OAuth endpoints.
enum Discovery {
    struct Documents: Sendable {
        var authorizationServer: JSONValue
        var smart: JSONValue
        var openID: JSONValue
        var capabilityStatement: JSONValue
    }

    /// The FHIR base, relative to the issuer (a SMART launch's `aud` and `iss`), and the two
    /// discovery documents Caregate answers there itself, in front of any upstream too.
    static let fhirBasePath = "/fhir/R4"
    static let metadataPath = fhirBasePath + "/metadata"
    static let fhirSMARTConfigurationPath = fhirBasePath + "/.well-known/smart-configuration"

    /// SMART capabilities, each one exercised by a test: nothing is listed that does not work.
    static let capabilities = [
        "launch-ehr", "launch-standalone", "authorize-post", "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
        "sso-openid-connect", "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient", "context-banner", "context-style",
        "permission-offline", "permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2",
    ]

    static func documents(issuer: String, scopeNames: [String], version: String) -> Documents {
        let fhirBase = issuer + fhirBasePath
        let identityScopes = SMARTContextScopes.meaning.keys.sorted()
        func strings(_ values: [String]) -> JSONValue { .array(values.map { .string($0) }) }
        let endpoints: [(String, JSONValue)] = [
            ("issuer", .string(issuer)), ("authorization_endpoint", .string(issuer + "/oauth2/authorize")),
            ("token_endpoint", .string(issuer + "/oauth2/token")), ("jwks_uri", .string(issuer + "/.well-known/jwks.json")),
            ("introspection_endpoint", .string(issuer + "/oauth2/introspect")), ("revocation_endpoint", .string(issuer + "/oauth2/revoke")),
            ("grant_types_supported", ["authorization_code", "client_credentials", "refresh_token"]),
            ("response_types_supported", ["code"]),
            ("code_challenge_methods_supported", ["S256"]),
            ("token_endpoint_auth_methods_supported", ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
            ("token_endpoint_auth_signing_alg_values_supported", ["RS384", "ES384"]),
        ]
        let authorizationServer = JSONValue.object(endpoints + [("scopes_supported", strings(Array(Set(scopeNames + identityScopes)).sorted()))])
        let smart = JSONValue.object(endpoints + [
            ("scopes_supported", strings(Array(Set(scopeNames.filter { $0.contains("/") } + identityScopes)).sorted())),
            ("capabilities", strings(capabilities)),
        ])
        let openID = JSONValue.object([
            ("issuer", .string(issuer)), ("authorization_endpoint", .string(issuer + "/oauth2/authorize")),
            ("token_endpoint", .string(issuer + "/oauth2/token")), ("jwks_uri", .string(issuer + "/.well-known/jwks.json")),
            ("response_types_supported", ["code"]), ("subject_types_supported", ["public"]),
            ("id_token_signing_alg_values_supported", ["RS256"]), ("scopes_supported", strings(identityScopes)),
            ("claims_supported", ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"]),
            ("grant_types_supported", ["authorization_code", "refresh_token"]), ("code_challenge_methods_supported", ["S256"]),
            ("token_endpoint_auth_methods_supported", ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
        ])
        let oauthURIs: JSONValue = [
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                ["url": "authorize", "valueUri": .string(issuer + "/oauth2/authorize")],
                ["url": "token", "valueUri": .string(issuer + "/oauth2/token")],
                ["url": "introspect", "valueUri": .string(issuer + "/oauth2/introspect")],
                ["url": "revoke", "valueUri": .string(issuer + "/oauth2/revoke")],
            ],
        ]
        let capabilityStatement: JSONValue = [
            "resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-01", "kind": "instance",
            "software": ["name": "Caregate", "version": .string(version)],
            "implementation": ["description": "Caregate FHIR R4 endpoint", "url": .string(fhirBase)],
            "fhirVersion": "4.0.1", "format": ["json"],
            "rest": [[
                "mode": "server",
                "security": [
                    "extension": [oauthURIs],
                    "service": [["coding": [["system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"]]]],
                    "description": "OAuth 2.0 with SMART App Launch 2.2: see .well-known/smart-configuration",
                ],
            ]],
        ]
        return Documents(authorizationServer: authorizationServer, smart: smart, openID: openID, capabilityStatement: capabilityStatement)
    }
}

/// The style a SMART app launched from Caregate may follow (`smart_style_url`). The path
/// carries a version: it changes whenever the style does, as the guide requires.
enum SMARTStyle {
    static let path = "/smart-style-v1.json"
    static let document: JSONValue = [
        "color_background": "#f7f7f5", "color_error": "#a4262c", "color_highlight": "#1f5f8b", "color_modal_backdrop": "",
        "color_success": "#2e7d32", "color_text": "#1b1b1b", "dim_border_radius": "4px", "dim_font_size": "16px", "dim_spacing_size": "16px",
        "font_family_body": "system-ui, sans-serif", "font_family_heading": "system-ui, sans-serif",
    ]
}
