import Crypto
import Foundation
import SQLKit

/// A registered OAuth 2.0 client of an app.
public struct OAuthClientRecord: Sendable, Equatable {
    public var clientID: String
    public var appID: String
    public var secretHash: String?
    /// `oauth2` or `service_key` (the catalog's credential types).
    public var credentialType: String
    public var grantTypes: [String]
    /// The most the client may ask for.
    public var scopes: [String]
    /// When set, the client's tokens act for this clinic only.
    public var organizationID: String?
    public var revokedAt: Int64?
    /// The client's public keys (JWKS JSON) for `private_key_jwt` authentication.
    public var jwks: String?
    /// Where the client publishes its JWKS instead (fetched and cached by the server).
    public var jwksURI: String?
    /// Where the authorization endpoint may send the browser back (exact matches only).
    public var redirectURIs: [String] = []
    /// The app's SMART launch URL (an EHR launch opens it with `iss` and `launch`).
    public var launchURL: String?
    /// A public client has no secret and no keys: PKCE is its proof.
    public var isPublic = false
}

/// A token-signing key (the private key as PEM; only the public part is ever published).
public struct SigningKeyRecord: Sendable, Equatable {
    public init(kid: String, algorithm: String, privatePEM: String, createdAt: Int64, retiredAt: Int64?) {
        self.kid = kid
        self.algorithm = algorithm
        self.privatePEM = privatePEM
        self.createdAt = createdAt
        self.retiredAt = retiredAt
    }

    public var kid: String
    public var algorithm: String
    public var privatePEM: String
    public var createdAt: Int64
    public var retiredAt: Int64?
}

/// OAuth clients, signing keys and revoked token ids.
public struct OAuthStore: Sendable {
    public let grants: GrantStore
    /// Seals and opens the token-signing keys at rest (see ``KeySealing``).
    private let sealingKey: SymmetricKey
    public init(grants: GrantStore) {
        self.grants = grants
        sealingKey = KeySealing.key(from: grants.secret)
    }
    var sql: any SQLDatabase { grants.database.sql }
    /// For the reads a request waits for (``Database/reads``).
    var reads: any SQLDatabase { grants.database.reads }

    /// Registers a client; the secret (when the client gets one) is returned once and stored hashed.
    public func createClient(
        appID: String, credentialType: String, grantTypes: [String], scopes: [String], organizationID: String?, withSecret: Bool,
        jwks: String? = nil, jwksURI: String? = nil, redirectURIs: [String] = [], launchURL: String? = nil, isPublic: Bool = false
    ) async throws -> (OAuthClientRecord, secret: String?) {
        let clientID = "cli_" + Secrets.randomHex(bytes: 16)
        let secret = withSecret ? "cs_" + Secrets.randomBase62(43) : nil
        let record = OAuthClientRecord(
            clientID: clientID, appID: appID, secretHash: secret.map(grants.hash), credentialType: credentialType,
            grantTypes: grantTypes, scopes: scopes, organizationID: organizationID, revokedAt: nil, jwks: jwks, jwksURI: jwksURI,
            redirectURIs: redirectURIs, launchURL: launchURL, isPublic: isPublic)
        try await sql.raw("""
            INSERT INTO oauth_clients (client_id, app_id, secret_hash, credential_type, grant_types, scopes, organization_id, created_at, jwks, jwks_uri,
                                       redirect_uris, launch_url, is_public)
            VALUES (\(bind: clientID), \(bind: appID), \(bind: record.secretHash), \(bind: credentialType), \(bind: grantTypes.stored),
                    \(bind: scopes.stored), \(bind: organizationID), \(bind: Clock.millis()), \(bind: jwks), \(bind: jwksURI),
                    \(bind: redirectURIs.stored), \(bind: launchURL), \(bind: isPublic ? 1 : 0))
            """).run()
        return (record, secret)
    }

    private static let clientColumns =
        "client_id, app_id, secret_hash, credential_type, grant_types, scopes, organization_id, revoked_at, jwks, jwks_uri, redirect_uris, launch_url, is_public"

    public func client(_ clientID: String) async throws -> OAuthClientRecord? {
        guard clientID.utf8.count <= 64,
              let row = try await reads.raw("SELECT \(unsafeRaw: Self.clientColumns) FROM oauth_clients WHERE client_id = \(bind: clientID)").first()
        else { return nil }
        return try clientRecord(row)
    }

    /// An app's OAuth clients (revoked ones included), oldest first.
    public func clients(appID: String) async throws -> [OAuthClientRecord] {
        try await sql.raw("SELECT \(unsafeRaw: Self.clientColumns) FROM oauth_clients WHERE app_id = \(bind: appID) ORDER BY created_at, client_id")
            .all().map(clientRecord)
    }

    private func clientRecord(_ row: any SQLRow) throws -> OAuthClientRecord {
        OAuthClientRecord(
            clientID: try row.decode(column: "client_id", as: String.self), appID: try row.decode(column: "app_id", as: String.self),
            secretHash: try row.decode(column: "secret_hash", as: String?.self),
            credentialType: try row.decode(column: "credential_type", as: String.self),
            grantTypes: [String](stored: try row.decode(column: "grant_types", as: String.self)),
            scopes: [String](stored: try row.decode(column: "scopes", as: String.self)),
            organizationID: try row.decode(column: "organization_id", as: String?.self),
            revokedAt: try row.decode(column: "revoked_at", as: Int64?.self), jwks: try row.decode(column: "jwks", as: String?.self),
            jwksURI: try row.decode(column: "jwks_uri", as: String?.self),
            redirectURIs: [String](stored: try row.decode(column: "redirect_uris", as: String.self)),
            launchURL: try row.decode(column: "launch_url", as: String?.self), isPublic: try row.decode(column: "is_public", as: Int64.self) != 0)
    }

    /// Records an assertion id; `false` when the client already used it (a replay).
    public func useAssertion(jti: String, clientID: String, expiresAt: Int64) async throws -> Bool {
        try await grants.database.transaction { db in
            if try await db.raw("SELECT jti FROM used_assertions WHERE client_id = \(bind: clientID) AND jti = \(bind: jti)").first() != nil {
                return false
            }
            try await db.raw("DELETE FROM used_assertions WHERE expires_at < \(bind: Clock.millis() - 60_000)").run()
            try await db.raw("INSERT INTO used_assertions (jti, client_id, expires_at) VALUES (\(bind: jti), \(bind: clientID), \(bind: expiresAt))").run()
            return true
        }
    }

    /// Every signing key, newest first, opened.
    public func allSigningKeys() async throws -> [SigningKeyRecord] {
        try await sql.raw("SELECT kid, algorithm, private_pem, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid").all().map { row in
            let kid = try row.decode(column: "kid", as: String.self)
            let stored = try row.decode(column: "private_pem", as: String.self)
            return SigningKeyRecord(
                kid: kid, algorithm: try row.decode(column: "algorithm", as: String.self),
                privatePEM: KeySealing.isSealed(stored) ? try KeySealing.open(stored, kid: kid, key: sealingKey) : stored,
                createdAt: try row.decode(column: "created_at", as: Int64.self), retiredAt: try row.decode(column: "retired_at", as: Int64?.self))
        }
    }

    /// Seals the signing keys a version before sealing stored in plain PEM (in place, once).
    /// - Returns: how many were sealed.
    @discardableResult
    public func sealPlainSigningKeys() async throws -> Int {
        let rows = try await sql.raw("SELECT kid, private_pem FROM signing_keys").all()
        var sealed = 0
        for row in rows {
            let kid = try row.decode(column: "kid", as: String.self)
            let stored = try row.decode(column: "private_pem", as: String.self)
            guard !KeySealing.isSealed(stored) else { continue }
            let value = try KeySealing.seal(stored, kid: kid, key: sealingKey)
            try await sql.raw("UPDATE signing_keys SET private_pem = \(bind: value) WHERE kid = \(bind: kid) AND private_pem = \(bind: stored)").run()
            sealed += 1
        }
        return sealed
    }

    /// The signing keys, newest first, with a current key of each of `algorithms` (`generate`
    /// makes the missing ones). Several instances starting at once agree: the first insert
    /// wins, all read it back.
    public func signingKeys(algorithms: [String], generate: @Sendable (String) throws -> SigningKeyRecord) async throws -> [SigningKeyRecord] {
        func missing(_ keys: [SigningKeyRecord]) -> [String] {
            algorithms.filter { algorithm in !keys.contains { $0.algorithm == algorithm && $0.retiredAt == nil } }
        }
        let existing = try await allSigningKeys()
        let needed = missing(existing)
        if needed.isEmpty { return existing }
        let keys = try needed.map(generate)
        try await grants.database.transaction { db in
            for key in keys {
                let current = try await db.raw("""
                    SELECT kid FROM signing_keys WHERE algorithm = \(bind: key.algorithm) AND retired_at IS NULL
                    """).first()
                if current == nil { try await insert(key, db) }
            }
        }
        return try await allSigningKeys()
    }

    /// Retires every current signing key and adds `keys`; other instances reload on the change.
    public func rotateSigningKeys(to keys: [SigningKeyRecord]) async throws {
        try await grants.change([.signingKeys]) { db in
            try await db.raw("UPDATE signing_keys SET retired_at = \(bind: Clock.millis()) WHERE retired_at IS NULL").run()
            for key in keys { try await insert(key, db) }
        }
    }

    private func insert(_ key: SigningKeyRecord, _ db: any SQLDatabase) async throws {
        try await db.raw("""
            INSERT INTO signing_keys (kid, algorithm, private_pem, created_at) VALUES (\(bind: key.kid), \(bind: key.algorithm), \(bind: try KeySealing.seal(key.privatePEM, kid: key.kid, key: sealingKey)), \(bind: key.createdAt))
            """).run()
    }

    public func revoke(jti: String, expiresAt: Int64) async throws {
        try await sql.raw("""
            INSERT INTO revoked_tokens (jti, expires_at) VALUES (\(bind: jti), \(bind: expiresAt)) ON CONFLICT (jti) DO NOTHING
            """).run()
        try await grants.change([.token(id: jti)]) { _ in }
    }

    public func isRevoked(jti: String) async throws -> Bool {
        try await reads.raw("SELECT jti FROM revoked_tokens WHERE jti = \(bind: jti)").first() != nil
    }
}
