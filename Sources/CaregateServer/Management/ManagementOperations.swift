import HTTPTypes
import Scopes

/// The management API of SPEC §5, declared once: the router, the caller checks and the
/// OpenAPI document are all built from this table.
enum ManagementAPI {
    static let operations: [ManagementOperation] = [
        // Operator
        .init(
            method: .post, path: "/manage/developers", callers: [.operator], summary: "Create a developer (operator); the token is shown once",
            body: .init(name: "NewDeveloper", schema: .object(
                [("name", .requiredText(max: 200)), ("email", ValueRule.email.schema)],
                required: ["name", "email"], closed: true)),
            success: .created, response: "Developer", handler: { try await $0.createDeveloper(&$1) }),
        .init(
            method: .post, path: "/manage/organizations", callers: [.operator],
            summary: "Create an organization (operator); a key works only in clinics of its own environment; the admin token is shown once",
            body: .init(name: "NewOrganization", schema: .object(
                [("name", .requiredText(max: 200)), ("environment", .oneOf(["prd", "sbx"]))], required: ["name"], closed: true)),
            success: .created, response: "Organization", handler: { try await $0.createOrganization(&$1) }),
        .init(
            method: .post, path: "/manage/organizations/{orgId}/sample-data", callers: [.operator], summary: "Generate synthetic clinic data (operator)",
            body: .init(name: "SampleDataRequest", schema: .object([("patients", .integer(minimum: 1, maximum: 10_000))], closed: true), optional: true),
            success: .created, response: "SampleData", handler: { try await $0.sampleData(&$1) }),
        .init(
            method: .get, path: "/manage/signing-keys", callers: [.operator], summary: "Token-signing keys still published, and which one signs (operator)",
            success: .ok, response: "SigningKeyList", handler: { try await $0.signingKeys(&$1) }),
        .init(
            method: .post, path: "/manage/signing-keys/rotate", callers: [.operator],
            summary: "Rotate the token-signing key; the old public key stays published until its tokens expire (operator)",
            success: .created, response: "SigningKeyRotation", handler: { try await $0.rotateSigningKey(&$1) }),
        .init(
            method: .post, path: "/manage/tokens/rotate", callers: [.operator, .developer, .clinicAdmin],
            summary: "Replace the caller's management token: the new one is shown once, the presented one stops at once",
            body: .init(name: "TokenRotation", schema: .object([("expiresAt", .requestDateTime)], closed: true), optional: true),
            success: .created, response: "ManagementToken", conflicts: true, handler: { try await $0.rotateToken(&$1) }),
        .init(
            method: .post, path: "/manage/tokens", callers: [.operator],
            summary: "Issue a management token for a developer (dev_…) or a clinic (org_…) (operator); shown once",
            body: .init(name: "NewManagementToken", schema: .object(
                [("subjectId", .requiredText(max: 100)), ("expiresAt", .requestDateTime)], required: ["subjectId"], closed: true)),
            success: .created, response: "ManagementToken", handler: { try await $0.issueToken(&$1) }),
        .init(
            method: .get, path: "/manage/tokens", callers: [.operator], summary: "Developer and clinic-admin tokens, without the secrets (operator)",
            query: [.init(name: "subjectId", rule: .text(max: 100), description: "Only the tokens of this developer (dev_…) or organization (either form)")],
            success: .ok, response: "ManagementTokenList", handler: { try await $0.listTokens(&$1) }),
        .init(
            method: .delete, path: "/manage/tokens/{tokenId}", callers: [.operator], summary: "Revoke a developer's or clinic admin's token at once (operator)",
            success: .noContent, handler: { try await $0.revokeToken(&$1) }),
        // Developer
        .init(
            method: .post, path: "/manage/apps", callers: [.developer], summary: "Create an app declaring scopes on a surface (developer)",
            body: .init(name: "NewApp", schema: .object(
                [("slug", .text), ("name", .text), ("surface", .text), ("scopes", .ref("ScopeList"))],
                required: ["slug", "name", "scopes"], closed: true)),
            success: .created, response: "App", conflicts: true, handler: { try await $0.createApp(&$1) }),
        .init(
            method: .get, path: "/manage/apps", callers: [.developer], summary: "The caller's apps, oldest first (developer)",
            success: .ok, response: "AppList", handler: { try await $0.listApps(&$1) }),
        .init(
            method: .get, path: "/manage/apps/{appId}", callers: [.developer], summary: "Get an app (developer)",
            success: .ok, response: "App", handler: { try await $0.getApp(&$1) }),
        .init(
            method: .post, path: "/manage/apps/{appId}/versions", callers: [.developer], summary: "Add an app version; it becomes live (developer)",
            body: .init(name: "NewAppVersion", schema: .object([("scopes", .ref("ScopeList"))], required: ["scopes"], closed: true)),
            success: .created, response: "AppVersion", handler: { try await $0.createVersion(&$1) }),
        .init(
            method: .post, path: "/manage/apps/{appId}/keys", callers: [.developer],
            summary: "Create an API key; without scopes it inherits the clinic's approved scopes; the key is shown once (developer)",
            body: .init(name: "NewAPIKey", schema: .object(
                [("name", .requiredText(max: 100)), ("environment", .oneOf(["prd", "sbx"])), ("scopes", .ref("APIKeyScopeList")), ("expiresAt", .requestDateTime)],
                required: ["name", "environment"], closed: true)),
            success: .created, response: "APIKey", handler: { try await $0.createKey(&$1) }),
        .init(
            method: .get, path: "/manage/apps/{appId}/keys", callers: [.developer], summary: "List an app's keys, masked (developer)",
            success: .ok, response: "APIKeyList", handler: { try await $0.listKeys(&$1) }),
        .init(
            method: .get, path: "/manage/apps/{appId}/usage", callers: [.developer],
            summary: "Least-privilege report: per key and OAuth client, the scopes it holds, those it used in the window (from the audit log) and those it could drop (developer)",
            query: [.init(name: "days", rule: .days, description: "The window, in days back from now (default 30)")],
            success: .ok, response: "UsageReport", handler: { try await $0.usage(&$1) }),
        .init(
            method: .post, path: "/manage/apps/{appId}/oauth-clients", callers: [.developer],
            summary: "Register an OAuth 2.0 client: a backend service (client_credentials) or a SMART app (authorization_code, refresh_token; redirectUris, launchUrl, public); with jwks or jwksUri it authenticates with private_key_jwt, a public client with PKCE alone, otherwise with a secret shown once (developer)",
            body: .init(name: "NewOAuthClient", schema: .oneOfSchemas([
                .object(
                    [("scopes", .ref("ScopeList")), ("grantTypes", .array(.oneOf(["client_credentials"]), minItems: 1, maxItems: 1)),
                     ("credentialType", .oneOf(["oauth2", "service_key"])), ("organizationId", ValueRule.organization.schema),
                     ("jwks", .ref("JWKS")), ("jwksUri", .string(maxLength: 2048, format: "uri"))],
                    required: ["scopes", "grantTypes"], closed: true),
                .object(
                    [("scopes", .ref("ScopeList")), ("grantTypes", .array(.oneOf(["authorization_code", "refresh_token"]), minItems: 1, maxItems: 2, unique: true)),
                     ("credentialType", .oneOf(["smart_on_fhir"])), ("organizationId", ValueRule.organization.schema),
                     ("jwks", .ref("JWKS")), ("jwksUri", .string(maxLength: 2048, format: "uri")),
                     ("redirectUris", .array(.string(maxLength: 2048, format: "uri"), minItems: 1, maxItems: 10, unique: true)),
                     ("launchUrl", .string(maxLength: 2048, format: "uri")), ("public", .boolean)],
                    required: ["scopes", "grantTypes", "redirectUris"], closed: true),
            ])),
            success: .created, response: "OAuthClient", handler: { try await $0.createOAuthClient(&$1) }),
        .init(
            method: .get, path: "/manage/apps/{appId}/oauth-clients", callers: [.developer],
            summary: "The app's active OAuth clients, without their secrets (developer)",
            success: .ok, response: "OAuthClientList", handler: { try await $0.listOAuthClients(&$1) }),
        .init(
            method: .post, path: "/manage/keys/{keyId}/rotate", callers: [.developer],
            summary: "Rotate a key: a new key is shown once, the old one stops after the grace; with scopes, the new key holds only those of the old one's (narrowing) (developer)",
            body: .init(
                name: "KeyRotation",
                schema: .object([("graceSeconds", .integer(minimum: 0, maximum: 604_800)), ("scopes", .ref("APIKeyScopeNarrowing"))], closed: true),
                optional: true),
            success: .created, response: "APIKey", conflicts: true, handler: { try await $0.rotateKey(&$1) }),
        .init(
            method: .delete, path: "/manage/keys/{keyId}", callers: [.developer], summary: "Revoke a key at once (developer)",
            success: .noContent, handler: { try await $0.revokeKey(&$1) }),
        .init(
            method: .get, path: "/manage/apps/{appId}/scope-reviews", callers: [.developer],
            summary: "The operator's reviews of the app's scopes that are not self-service: pending, approved or refused with the reason (developer)",
            success: .ok, response: "ScopeReviewList", handler: { try await $0.appReviews(&$1) }),
        // Operator: the review queue
        .init(
            method: .get, path: "/manage/scope-reviews", callers: [.operator],
            summary: "The review queue: scopes apps declared that take effect only once approved, oldest first (operator)",
            query: [.init(name: "status", rule: .oneOf(["pending", "approved", "refused"]), description: "Which reviews (default pending)")],
            success: .ok, response: "ScopeReviewList", handler: { try await $0.reviewQueue(&$1) }),
        .init(
            method: .post, path: "/manage/scope-reviews/{id}/approve", callers: [.operator],
            summary: "Approve an app's scope: it takes effect for the app's keys and clients at once (operator; audited)",
            success: .ok, response: "ScopeReview", conflicts: true, handler: { try await $0.approveReview(&$1) }),
        .init(
            method: .post, path: "/manage/scope-reviews/{id}/refuse", callers: [.operator],
            summary: "Refuse an app's scope, saying why (operator; audited)",
            body: .init(name: "ScopeRefusal", schema: .object([("reason", .requiredText(max: 500))], required: ["reason"], closed: true)),
            success: .ok, response: "ScopeReview", conflicts: true, handler: { try await $0.refuseReview(&$1) }),
        // Clinic admin
        .init(
            method: .post, path: "/manage/installations", callers: [.clinicAdmin],
            summary: "Install an app, approving all or some of its live version's scopes (clinic admin)",
            body: .init(name: "NewInstallation", schema: .object([("appId", .requiredText(max: 40)), ("scopes", .ref("ScopeList"))], required: ["appId"], closed: true)),
            success: .created, response: "Installation", conflicts: true, handler: { try await $0.install(&$1) }),
        .init(
            method: .post, path: "/manage/organizations/{orgId}/users", callers: [.clinicAdmin],
            summary: "Create a clinic user who signs in to SMART apps: a clinician (providerId) or a patient (patientId); the password is stored only as a scrypt hash (clinic admin)",
            body: .init(name: "NewClinicUser", schema: .oneOfSchemas([
                clinicUser(role: "clinician", idField: "providerId", prefix: "prv"),
                clinicUser(role: "patient", idField: "patientId", prefix: "pat"),
            ])),
            success: .created, response: "ClinicUser", conflicts: true, handler: { try await $0.createClinicUser(&$1) }),
        .init(
            method: .post, path: "/manage/launches", callers: [.clinicAdmin],
            summary: "Start an EHR launch of a SMART app for one of the clinic's clinicians: a single-use launch value (5 minutes) and the app's launch URL with iss and launch (clinic admin)",
            body: .init(name: "NewLaunch", schema: .object(
                [("clientId", .requiredText(max: 64)), ("userId", ValueRule.id(prefix: "usr").schema), ("patientId", ValueRule.id(prefix: "pat").schema),
                 ("encounterId", ValueRule.id(prefix: "apt").schema), ("needPatientBanner", .boolean)],
                required: ["clientId", "userId"], closed: true)),
            success: .created, response: "Launch", handler: { try await $0.createLaunch(&$1) }),
        .init(
            method: .get, path: "/manage/organizations/{orgId}/users", callers: [.clinicAdmin], summary: "The clinic's users (clinic admin)",
            success: .ok, response: "ClinicUserList", handler: { try await $0.listClinicUsers(&$1) }),
        .init(
            method: .delete, path: "/manage/organizations/{orgId}/users/{userId}", callers: [.clinicAdmin],
            summary: "Remove a clinic user: whatever it signed in to ends (clinic admin)",
            success: .noContent, handler: { try await $0.deleteClinicUser(&$1) }),
        .init(
            method: .get, path: "/manage/installations", callers: [.clinicAdmin],
            summary: "The clinic's installations, each with its app's name and live version (clinic admin)",
            success: .ok, response: "InstallationList", handler: { try await $0.listInstallations(&$1) }),
        .init(
            method: .get, path: "/manage/installations/{id}", callers: [.clinicAdmin],
            summary: "Get an installation with the live version's scopes (clinic admin)",
            success: .ok, response: "Installation", handler: { try await $0.getInstallation(&$1) }),
        .init(
            method: .post, path: "/manage/installations/{id}/approve", callers: [.clinicAdmin],
            summary: "Re-approve against the live version (clinic admin)",
            body: .init(name: "Approval", schema: .object([("scopes", .ref("ScopeList"))], required: ["scopes"], closed: true)),
            success: .ok, response: "Installation", handler: { try await $0.approve(&$1) }),
        .init(
            method: .delete, path: "/manage/installations/{id}", callers: [.clinicAdmin],
            summary: "Uninstall: every credential loses this clinic at once (clinic admin)",
            success: .noContent, handler: { try await $0.uninstall(&$1) }),
        // Audit
        .init(
            method: .get, path: "/manage/audit", callers: [.operator, .clinicAdmin],
            summary: "The audit log, newest first (operator; a clinic admin sees its own clinic's)",
            query: [
                .init(name: "organizationId", rule: .organization, description: "Only this clinic's requests"),
                .init(name: "appId", rule: .id(prefix: "app"), description: "Only this app's requests"),
                .init(name: "decision", rule: .oneOf(["allowed", "denied"]), description: "Only allowed or only denied requests"),
                .init(name: "traceId", rule: .traceID, description: "Only the request with this X-Trace-Id"),
                .init(name: "since", rule: .date, description: "Only events from this day on (UTC)"),
                .init(name: "until", rule: .date, description: "Only events up to and including this day (UTC)"),
                .init(name: "limit", rule: .limit, description: "Page size (default 50)"),
                .init(name: "cursor", rule: .auditCursor, description: "nextCursor of the previous page"),
            ],
            success: .ok, response: "AuditPage", handler: { try await $0.auditPage(&$1) }),
        .init(
            method: .get, path: "/manage/audit/export", callers: [.operator, .clinicAdmin],
            summary: "The whole audit log as NDJSON, one AuditEvent per line, oldest first, streamed (operator; a clinic admin gets its own clinic's)",
            query: [
                .init(name: "organizationId", rule: .organization, description: "Only this clinic's requests"),
                .init(name: "appId", rule: .id(prefix: "app"), description: "Only this app's requests"),
                .init(name: "since", rule: .date, description: "Only events from this day on (UTC)"),
            ],
            success: .ok, response: "AuditEvent", mediaType: "application/x-ndjson", handler: { try await $0.auditExport(&$1) }),
    ]
}

extension ManagementAPI {
    /// The bodies the operations answer with, by name (the handlers build exactly these).
    static let responseSchemas: [(String, Schema)] = [
        ("Developer", .object(
            [("id", .id), ("name", .text), ("email", .text), ("token", .text)], required: ["id", "name", "email", "token"])),
        ("Organization", .object(
            [("id", .id), ("uuid", .string(format: "uuid")), ("name", .text), ("environment", .oneOf(["prd", "sbx"])), ("adminToken", .text)],
            required: ["id", "uuid", "name", "environment", "adminToken"])),
        ("SampleData", .object([("organizationId", .id), ("created", .map(.integer(minimum: 0)))], required: ["organizationId", "created"])),
        ("SigningKeyList", .object(
            [("code", .oneOf(["success"])), ("data", .array(.object(
                [("kid", .text), ("algorithm", .text), ("signing", .boolean), ("signs", .array(.oneOf(["access_token", "id_token"])))],
                required: ["kid", "algorithm", "signing", "signs"])))],
            required: ["code", "data"])),
        ("SigningKeyRotation", .object([("kid", .text), ("algorithm", .text), ("retired", .text), ("idTokenKid", .text)],
                                       required: ["kid", "algorithm", "retired", "idTokenKid"])),
        ("ManagementToken", .object(
            [("id", .text), ("kind", .oneOf(["operator", "developer", "clinic_admin"])), ("subjectId", .text), ("createdAt", .dateTime),
             ("expiresAt", .nullable(.dateTime)), ("revokedAt", .nullable(.dateTime)), ("token", .text)],
            required: ["id", "kind", "subjectId", "createdAt", "expiresAt", "revokedAt"])),
        ("ManagementTokenList", .object([("code", .oneOf(["success"])), ("data", .array(.ref("ManagementToken")))], required: ["code", "data"])),
        ("App", .object(
            [("id", .id), ("slug", .text), ("name", .text), ("surface", .text), ("liveVersionId", .id), ("scopes", .array(.text))],
            required: ["id", "slug", "name", "surface", "liveVersionId", "scopes"])),
        ("AppList", .array(.ref("App"))),
        ("ClinicUser", .object(
            [("id", .id), ("username", .text), ("role", .oneOf(["clinician", "patient"])), ("fhirUser", .text), ("providerId", .nullable(.id)),
             ("patientId", .nullable(.id)), ("createdAt", .dateTime)],
            required: ["id", "username", "role", "fhirUser", "providerId", "patientId", "createdAt"])),
        ("ClinicUserList", .array(.ref("ClinicUser"))),
        ("OAuthClientList", .array(.ref("OAuthClient"))),
        ("ScopeReview", .object(
            [("id", .id), ("appId", .id), ("appName", .nullable(.text)), ("scope", .text), ("status", .oneOf(["pending", "approved", "refused"])),
             ("reason", .nullable(.text)), ("requestedAt", .dateTime), ("decidedAt", .nullable(.dateTime))],
            required: ["id", "appId", "appName", "scope", "status", "reason", "requestedAt", "decidedAt"])),
        ("ScopeReviewList", .array(.ref("ScopeReview"))),
        ("UsageReport", .object(
            [("code", .oneOf(["success"])), ("days", .integer(minimum: 1, maximum: 365)),
             ("data", .array(.object(
                [("credential", .oneOf(["api_key", "oauth_client"])), ("id", .text), ("name", .nullable(.text)), ("held", .array(.text)),
                 ("used", .array(.text)), ("droppable", .array(.text)), ("lastUsedAt", .nullable(.dateTime))],
                required: ["credential", "id", "name", "held", "used", "droppable", "lastUsedAt"])))],
            required: ["code", "days", "data"])),
        ("InstallationList", .array(.ref("Installation"))),
        ("AppVersion", .object([("id", .id), ("appId", .id), ("scopes", .array(.text))], required: ["id", "appId", "scopes"])),
        ("APIKey", .object(
            [("id", .id), ("appId", .id), ("name", .text), ("environment", .oneOf(["prd", "sbx"])), ("display", .text),
             ("scopes", .nullable(.array(.text))), ("inheritsApprovedScopes", .boolean), ("expiresAt", .nullable(.dateTime)), ("revoked", .boolean),
             ("replacedBy", .nullable(.id)), ("key", .text)],
            required: ["id", "appId", "name", "environment", "display", "scopes", "inheritsApprovedScopes", "expiresAt", "revoked", "replacedBy"])),
        ("APIKeyList", .array(.ref("APIKey"))),
        ("Launch", .object([("launch", .text), ("launchUrl", .nullable(.text)), ("iss", .text), ("expiresAt", .dateTime)],
                           required: ["launch", "launchUrl", "iss", "expiresAt"])),
        ("OAuthClient", .object(
            [("clientId", .text), ("clientSecret", .nullable(.text)), ("appId", .id), ("credentialType", .oneOf(["oauth2", "service_key", "smart_on_fhir"])),
             ("grantTypes", .array(.text)), ("scopes", .array(.text)), ("organizationId", .nullable(.id)), ("jwksUri", .nullable(.text)),
             ("tokenEndpointAuthMethod", .oneOf(["client_secret_basic", "private_key_jwt", "none"])), ("redirectUris", .array(.text)),
             ("launchUrl", .nullable(.text)), ("public", .boolean)],
            required: ["clientId", "clientSecret", "appId", "credentialType", "grantTypes", "scopes", "organizationId", "jwksUri", "tokenEndpointAuthMethod",
                       "redirectUris", "launchUrl", "public"])),
        ("Installation", .object(
            [("id", .id), ("appId", .id), ("organizationId", .id), ("approvedVersionId", .id), ("approvedScopes", .array(.text)), ("status", .text),
             ("liveVersionId", .id), ("liveVersionScopes", .array(.text)), ("approvedVersionScopes", .array(.text)), ("appName", .text),
             ("appSurface", .text)],
            required: ["id", "appId", "organizationId", "approvedVersionId", "approvedScopes", "status"])),
        ("AuditEvent", .object(
            [("id", .text), ("at", .dateTime), ("organizationId", .nullable(.id)), ("appId", .nullable(.id)), ("keyId", .nullable(.text)),
             ("method", .text), ("route", .nullable(.text)), ("path", .text), ("requiredScope", .nullable(.text)),
             ("decision", .oneOf(["allowed", "denied"])), ("status", .integer(minimum: 0, maximum: 599)), ("traceId", .text),
             ("peer", .text), ("count", .integer(minimum: 1))],
            required: ["id", "at", "organizationId", "appId", "keyId", "method", "route", "path", "requiredScope", "decision", "status", "traceId"])),
        ("AuditPage", .object(
            [("code", .oneOf(["success"])), ("data", .array(.ref("AuditEvent"))), ("nextCursor", .nullable(.text))], required: ["code", "data", "nextCursor"])),
        ("JWKS", .object([("keys", .array(.map(.any), minItems: 1, maxItems: 20))], required: ["keys"])),
    ]

    /// Every schema the management API names: request bodies and answers, with the scope and
    /// surface names of the served catalogs (an app's scopes must exist on its surface).
    static func schemas(registry: SurfaceRegistry) -> [(String, Schema)] {
        let bodies = operations.compactMap { $0.body.map { ($0.name, $0.schema) } }.map { name, schema in
            name == "NewApp" ? (name, newApp(registry)) : (name, schema)
        }
        func names(_ catalogs: [CompiledCatalog], _ type: CredentialType? = nil) -> [String] {
            Set(catalogs.flatMap { catalog in catalog.scopes.filter { type == nil || $0.credentialTypes.contains(type!) }.map(\.name) }).sorted()
        }
        return bodies + responseSchemas + [
            ("ScopeList", .array(.oneOf(names(registry.catalogs)), maxItems: 256)),
            ("APIKeyScopeList", .array(.oneOf(names(registry.catalogs, .apiKey)), maxItems: 256)),
            // A rotation's narrowing names at least one scope (an empty one would be a key for nothing).
            ("APIKeyScopeNarrowing", .array(.oneOf(names(registry.catalogs, .apiKey)), minItems: 1, maxItems: 256)),
        ]
    }

    /// `NewClinicUser` for one role: a clinician names the clinic's provider, a patient the clinic's patient, never both.
    static func clinicUser(role: String, idField: String, prefix: String) -> Schema {
        .object(
            [("username", .string(minLength: 3, maxLength: 64, pattern: Schema.whole("[a-z0-9][a-z0-9._@-]{2,63}"))),
             ("password", .requiredText(min: 12, max: 256)), ("role", .oneOf([role])), (idField, ValueRule.id(prefix: prefix).schema)],
            required: ["username", "password", "role", idField], closed: true)
    }

    /// `NewApp` by app group: the surface (absent: the clinic data API's) decides which scopes exist.
    static func newApp(_ registry: SurfaceRegistry) -> Schema {
        var groups: [String: [Surface]] = [:]
        for surface in registry.surfaces { groups[surface.group, default: []].append(surface) }
        let common: [(String, Schema)] = [
            ("slug", .string(minLength: 3, maxLength: 40, pattern: Schema.whole("[a-z][a-z0-9-]{1,38}[a-z0-9]"))), ("name", .requiredText(max: 200)),
        ]
        return .oneOfSchemas(groups.keys.sorted().map { group in
            let surfaces = groups[group]!
            let scopes = Set(surfaces.flatMap { $0.catalog.scopes.map(\.name) }).sorted()
            let isDefault = surfaces.contains { $0.name == SurfaceRegistry.defaultAppSurface }
            return .object(
                common + [("surface", .oneOf(surfaces.map(\.name))), ("scopes", .array(.oneOf(scopes), maxItems: 256))],
                required: ["slug", "name", "scopes"] + (isDefault ? [] : ["surface"]), closed: true)
        })
    }
}
