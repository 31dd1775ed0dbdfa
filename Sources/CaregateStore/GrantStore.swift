public import Crypto
import Foundation
import SQLKit

/// Developers, clinics, management tokens, apps and versions, installations and API keys.
public struct GrantStore: Sendable {
    public let database: Database
    public let secret: SymmetricKey
    public let keyPrefix: String
    /// Announces every grant-chain change this process commits (the credential cache listens).
    public let changes = GrantChainChanges()

    /// HMAC state with the key already absorbed: each hash copies it instead of redoing the key schedule.
    private let hmac: HMAC<SHA256>

    public init(database: Database, secret: SymmetricKey, keyPrefix: String = "cg") {
        self.database = database
        self.secret = secret
        self.keyPrefix = keyPrefix
        self.hmac = HMAC<SHA256>(key: secret)
    }

    /// The keyed hash of a presented key or token (as stored).
    public func hash(_ value: String) -> String {
        var mac = hmac
        var value = value
        value.withUTF8 { mac.update(data: $0) }
        return Secrets.hex(mac.finalize())
    }

    /// The same keyed hash as bytes, for the per-request comparison: no hex string is built.
    public func digest(_ value: Substring) -> HashedAuthenticationCode<SHA256> {
        var mac = hmac
        var value = value
        value.withUTF8 { mac.update(data: $0) }
        return mac.finalize()
    }

    var sql: any SQLDatabase { database.sql }

    /// The server secret behind every keyed hash: `CAREGATE_SECRET` when set (at least 32
    /// bytes), otherwise generated once and kept in the database so that every instance
    /// sharing it agrees.
    public static func serverSecret(database: Database, configured: String?) async throws -> SymmetricKey {
        if let configured {
            guard configured.utf8.count >= 32 else { throw StoreError.invalid("CAREGATE_SECRET must be at least 32 bytes") }
            return SymmetricKey(data: Data(configured.utf8))
        }
        let generated = Secrets.randomHex(bytes: 32)
        switch database.dialect {
        case .sqlite:
            try await database.sql.raw("INSERT OR IGNORE INTO caregate_meta (key, value) VALUES ('hmac_secret', \(bind: generated))").run()
        case .postgres:
            try await database.sql.raw("INSERT INTO caregate_meta (key, value) VALUES ('hmac_secret', \(bind: generated)) ON CONFLICT (key) DO NOTHING").run()
        }
        let stored = try await database.sql.raw("SELECT value FROM caregate_meta WHERE key = 'hmac_secret'").first(decodingColumn: "value", as: String.self)
        return SymmetricKey(data: Data((stored ?? generated).utf8))
    }

    // MARK: Change generation

    /// A number that grows with every grant-chain change (all instances poll it).
    public func generation() async throws -> Int64 {
        try await sql.raw("SELECT generation FROM caregate_changes WHERE id = 1").first(decodingColumn: "generation", as: Int64.self) ?? 0
    }

    /// Runs `body` in a transaction that moves the change counter, and tells this process's
    /// listeners (``changes``) once it has committed; other instances see the counter move.
    func change<R: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        let result = try await database.transaction { db in
            let result = try await body(db)
            try await db.raw("UPDATE caregate_changes SET generation = generation + 1 WHERE id = 1").run()
            return result
        }
        changes.announce()
        return result
    }

    // MARK: Management tokens

    func issueToken(
        kind: Principal.Kind, subject: String, expiresAt: Int64? = nil, db: any SQLDatabase
    ) async throws -> (token: String, record: ManagementTokenRecord) {
        let record = ManagementTokenRecord(
            id: Secrets.randomHex(bytes: 8), kind: kind, subjectID: subject, createdAt: Clock.millis(), expiresAt: expiresAt, revokedAt: nil)
        let short = switch kind { case .operator: "op"; case .developer: "dev"; case .clinicAdmin: "org" }
        let token = "\(keyPrefix)_\(short)_\(record.id)_\(Secrets.randomBase62(40))"
        try await db.raw("""
            INSERT INTO access_tokens (token_id, token_hash, kind, subject_id, created_at, expires_at)
            VALUES (\(bind: record.id), \(bind: hash(token)), \(bind: kind.rawValue), \(bind: subject), \(bind: record.createdAt), \(bind: expiresAt))
            """).run()
        return (token, record)
    }

    /// The id of a management token as issued (`cg_dev_<id>_<secret>`); `operator-configured`
    /// for anything else (the operator token from `CAREGATE_ADMIN_TOKEN`).
    public func tokenID(of token: String) -> String {
        let parts = token.split(separator: "_")
        return parts.count == 4 && parts[0] == Substring(keyPrefix) ? String(parts[2]) : "operator-configured"
    }

    /// A new token for the caller's principal, shown once; the presented one stops at once.
    /// The operator token from `CAREGATE_ADMIN_TOKEN` is rotated by changing that variable.
    /// `principal` is what ``authenticate(token:)`` answered for `presented`.
    public func rotateToken(
        _ presented: String, of principal: Principal, expiresAt: Int64?
    ) async throws -> (token: String, record: ManagementTokenRecord) {
        let oldID = tokenID(of: presented)
        if oldID == "operator-configured" { throw StoreError.invalid("the operator token from CAREGATE_ADMIN_TOKEN is rotated by changing that variable") }
        return try await database.transaction { db in
            let updated = try await db.raw("""
                UPDATE access_tokens SET revoked_at = \(bind: Clock.millis()) WHERE token_id = \(bind: oldID) AND revoked_at IS NULL RETURNING token_id
                """).all()
            guard !updated.isEmpty else { throw StoreError.conflict("this token was rotated or revoked already") }
            return try await issueToken(kind: principal.kind, subject: principal.subjectID, expiresAt: expiresAt, db: db)
        }
    }

    /// A new token for a developer or clinic (the operator's call), e.g. after revoking the old one.
    public func issueToken(kind: Principal.Kind, subject: String, expiresAt: Int64?) async throws -> (token: String, record: ManagementTokenRecord) {
        try await issueToken(kind: kind, subject: subject, expiresAt: expiresAt, db: sql)
    }

    /// Ends a management token at once (every instance authenticates management calls against the database).
    public func revokeManagementToken(id: String) async throws -> Bool {
        try await !sql.raw("""
            UPDATE access_tokens SET revoked_at = \(bind: Clock.millis()) WHERE token_id = \(bind: id) AND revoked_at IS NULL AND kind <> 'operator'
            RETURNING token_id
            """).all().isEmpty
    }

    private static let tokenColumns = "token_id, kind, subject_id, created_at, expires_at, revoked_at"

    private func managementToken(from row: any SQLRow) throws -> ManagementTokenRecord? {
        guard let kind = Principal.Kind(rawValue: try row.decode(column: "kind", as: String.self)) else { return nil }
        return ManagementTokenRecord(
            id: try row.decode(column: "token_id", as: String.self), kind: kind, subjectID: try row.decode(column: "subject_id", as: String.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self), expiresAt: try row.decode(column: "expires_at", as: Int64?.self),
            revokedAt: try row.decode(column: "revoked_at", as: Int64?.self))
    }

    /// The tokens of one developer or clinic (or all), newest first.
    public func managementTokens(subjectID: String?) async throws -> [ManagementTokenRecord] {
        var query: SQLQueryString = "SELECT \(unsafeRaw: Self.tokenColumns) FROM access_tokens WHERE kind <> 'operator'"
        if let subjectID { query += " AND subject_id = \(bind: subjectID)" }
        query += " ORDER BY created_at DESC, token_id"
        return try await sql.raw(query).all().compactMap(managementToken(from:))
    }

    /// Stores the operator token from `CAREGATE_ADMIN_TOKEN` (hashed), or creates one when
    /// there is none yet. Returns a newly generated token, to be printed once.
    public func ensureOperatorToken(configured: String?) async throws -> String? {
        if let configured {
            guard configured.utf8.count >= 16 else { throw StoreError.invalid("CAREGATE_ADMIN_TOKEN must be at least 16 characters") }
            // An upsert: several instances may start at once against one PostgreSQL.
            try await sql.raw("""
                INSERT INTO access_tokens (token_id, token_hash, kind, subject_id, created_at)
                VALUES ('operator-configured', \(bind: hash(configured)), 'operator', '', \(bind: Clock.millis()))
                ON CONFLICT (token_id) DO UPDATE SET token_hash = excluded.token_hash
                """).run()
            return nil
        }
        let existing = try await sql.raw("SELECT token_id FROM access_tokens WHERE kind = 'operator'").first()
        if existing != nil { return nil }
        return try await issueToken(kind: .operator, subject: "", db: sql).token
    }

    /// The principal a management token belongs to; `nil` for an unknown or wrong token.
    /// Checked against the database on every call, so that a rotation, revocation or expiry
    /// holds on every instance at once.
    public func authenticate(token: String) async throws -> Principal? {
        guard token.utf8.count <= 256 else { return nil }
        let tokenID = tokenID(of: token)
        guard let row = try await sql.raw("""
            SELECT token_hash, kind, subject_id, expires_at, revoked_at FROM access_tokens WHERE token_id = \(bind: tokenID)
            """).first() else {
            return nil
        }
        let stored = try row.decode(column: "token_hash", as: String.self)
        guard Secrets.constantTimeEquals(stored, hash(token)),
              let kind = Principal.Kind(rawValue: try row.decode(column: "kind", as: String.self)),
              try row.decode(column: "revoked_at", as: Int64?.self) == nil
        else { return nil }
        if let expiry = try row.decode(column: "expires_at", as: Int64?.self), expiry <= Clock.millis() { return nil }
        return Principal(kind: kind, subjectID: try row.decode(column: "subject_id", as: String.self))
    }

    // MARK: Developers and organizations

    public func createDeveloper(name: String, email: String) async throws -> (DeveloperRecord, token: String) {
        let developer = DeveloperRecord(id: Identifier.random("dev"), name: name, email: email)
        let token = try await database.transaction { db in
            try await db.raw("INSERT INTO developers (id, name, email, created_at) VALUES (\(bind: developer.id), \(bind: name), \(bind: email), \(bind: Clock.millis()))").run()
            return try await issueToken(kind: .developer, subject: developer.id, db: db).token
        }
        return (developer, token)
    }

    public func createOrganization(name: String, environment: String = "prd") async throws -> (OrganizationRecord, adminToken: String) {
        guard ["prd", "sbx"].contains(environment) else { throw StoreError.invalid("environment must be prd or sbx") }
        // A version-4 UUID underneath, so that the form clients send is a real UUID.
        let organization = OrganizationRecord(
            id: "org_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""), name: name, environment: environment)
        let token = try await database.transaction { db in
            try await db.raw("""
                INSERT INTO organizations (id, name, environment, created_at)
                VALUES (\(bind: organization.id), \(bind: name), \(bind: environment), \(bind: Clock.millis()))
                """).run()
            return try await issueToken(kind: .clinicAdmin, subject: organization.id, db: db).token
        }
        return (organization, token)
    }

    public func developer(_ id: String) async throws -> DeveloperRecord? {
        guard let row = try await sql.raw("SELECT id, name, email FROM developers WHERE id = \(bind: id)").first() else { return nil }
        return DeveloperRecord(
            id: try row.decode(column: "id", as: String.self), name: try row.decode(column: "name", as: String.self),
            email: try row.decode(column: "email", as: String.self))
    }

    public func organization(_ id: String) async throws -> OrganizationRecord? {
        guard let row = try await sql.raw("SELECT id, name, environment FROM organizations WHERE id = \(bind: id)").first() else { return nil }
        return OrganizationRecord(
            id: try row.decode(column: "id", as: String.self), name: try row.decode(column: "name", as: String.self),
            environment: try row.decode(column: "environment", as: String.self))
    }

    // MARK: Apps and versions

    public func createApp(developerID: String, slug: String, name: String, surface: String, scopes: [String]) async throws -> AppRecord {
        let app = AppRecord(
            id: Identifier.random("app"), developerID: developerID, slug: slug, name: name, surface: surface,
            liveVersionID: Identifier.random("apv"), scopes: scopes)
        try await database.transaction { db in
            if try await db.raw("SELECT id FROM apps WHERE slug = \(bind: slug)").first() != nil {
                throw StoreError.conflict("an app with slug \"\(slug)\" already exists")
            }
            let now = Clock.millis()
            try await db.raw("""
                INSERT INTO apps (id, developer_id, slug, name, surface, live_version_id, created_at)
                VALUES (\(bind: app.id), \(bind: developerID), \(bind: slug), \(bind: name), \(bind: surface), \(bind: app.liveVersionID), \(bind: now))
                """).run()
            try await db.raw("INSERT INTO app_versions (id, app_id, scopes, created_at) VALUES (\(bind: app.liveVersionID), \(bind: app.id), \(bind: scopes.stored), \(bind: now))").run()
        }
        return app
    }

    public func app(_ id: String) async throws -> AppRecord? {
        guard let row = try await sql.raw("""
            SELECT a.id, a.developer_id, a.slug, a.name, a.surface, a.live_version_id, v.scopes
            FROM apps a JOIN app_versions v ON v.id = a.live_version_id WHERE a.id = \(bind: id)
            """).first() else { return nil }
        return AppRecord(
            id: try row.decode(column: "id", as: String.self), developerID: try row.decode(column: "developer_id", as: String.self),
            slug: try row.decode(column: "slug", as: String.self), name: try row.decode(column: "name", as: String.self),
            surface: try row.decode(column: "surface", as: String.self),
            liveVersionID: try row.decode(column: "live_version_id", as: String.self),
            scopes: [String](stored: try row.decode(column: "scopes", as: String.self)))
    }

    /// Adds a version and makes it live. Installations keep their approved grants until re-approved.
    public func createVersion(appID: String, scopes: [String]) async throws -> AppVersionRecord {
        let version = AppVersionRecord(id: Identifier.random("apv"), appID: appID, scopes: scopes)
        try await change { db in
            try await db.raw("INSERT INTO app_versions (id, app_id, scopes, created_at) VALUES (\(bind: version.id), \(bind: appID), \(bind: scopes.stored), \(bind: Clock.millis()))").run()
            try await db.raw("UPDATE apps SET live_version_id = \(bind: version.id) WHERE id = \(bind: appID)").run()
        }
        return version
    }

    public func version(_ id: String) async throws -> AppVersionRecord? {
        guard let row = try await sql.raw("SELECT id, app_id, scopes FROM app_versions WHERE id = \(bind: id)").first() else { return nil }
        return AppVersionRecord(
            id: try row.decode(column: "id", as: String.self), appID: try row.decode(column: "app_id", as: String.self),
            scopes: [String](stored: try row.decode(column: "scopes", as: String.self)))
    }

    // MARK: Installations

    private static let installationColumns = "id, app_id, organization_id, approved_version_id, approved_scopes, status"

    private func installation(from row: any SQLRow) throws -> InstallationRecord {
        InstallationRecord(
            id: try row.decode(column: "id", as: String.self), appID: try row.decode(column: "app_id", as: String.self),
            organizationID: try row.decode(column: "organization_id", as: String.self),
            approvedVersionID: try row.decode(column: "approved_version_id", as: String.self),
            approvedScopes: [String](stored: try row.decode(column: "approved_scopes", as: String.self)),
            status: try row.decode(column: "status", as: String.self))
    }

    public func install(appID: String, organizationID: String, versionID: String, scopes: [String]) async throws -> InstallationRecord {
        let record = InstallationRecord(
            id: Identifier.random("ins"), appID: appID, organizationID: organizationID, approvedVersionID: versionID,
            approvedScopes: scopes, status: "active")
        try await change { db in
            if try await db.raw("SELECT id FROM installations WHERE app_id = \(bind: appID) AND organization_id = \(bind: organizationID)").first() != nil {
                throw StoreError.conflict("this app is already installed in this organization")
            }
            let now = Clock.millis()
            try await db.raw("""
                INSERT INTO installations (id, app_id, organization_id, approved_version_id, approved_scopes, status, created_at, updated_at)
                VALUES (\(bind: record.id), \(bind: appID), \(bind: organizationID), \(bind: versionID), \(bind: scopes.stored), 'active', \(bind: now), \(bind: now))
                """).run()
        }
        return record
    }

    public func installation(_ id: String) async throws -> InstallationRecord? {
        try await sql.raw("SELECT \(unsafeRaw: Self.installationColumns) FROM installations WHERE id = \(bind: id)").first().map(installation(from:))
    }

    public func installation(appID: String, organizationID: String) async throws -> InstallationRecord? {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.installationColumns) FROM installations
            WHERE app_id = \(bind: appID) AND organization_id = \(bind: organizationID) AND status = 'active'
            """).first().map(installation(from:))
    }

    public func approve(installationID: String, versionID: String, scopes: [String]) async throws -> InstallationRecord? {
        try await change { db in
            try await db.raw("""
                UPDATE installations SET approved_version_id = \(bind: versionID), approved_scopes = \(bind: scopes.stored),
                updated_at = \(bind: Clock.millis()) WHERE id = \(bind: installationID)
                """).run()
        }
        return try await installation(installationID)
    }

    public func uninstall(installationID: String) async throws {
        try await change { db in
            try await db.raw("DELETE FROM installations WHERE id = \(bind: installationID)").run()
        }
    }

    // MARK: API keys

    private static let keyColumns = "id, app_id, lookup_id, key_hash, environment, name, display, scopes, expires_at, revoked_at, replaced_by, created_at"

    private func key(from row: any SQLRow) throws -> APIKeyRecord {
        APIKeyRecord(
            id: try row.decode(column: "id", as: String.self), appID: try row.decode(column: "app_id", as: String.self),
            lookupID: try row.decode(column: "lookup_id", as: String.self), keyHash: try row.decode(column: "key_hash", as: String.self),
            environment: try row.decode(column: "environment", as: String.self), name: try row.decode(column: "name", as: String.self),
            display: try row.decode(column: "display", as: String.self),
            scopes: try row.decode(column: "scopes", as: String?.self).map { [String](stored: $0) },
            expiresAt: try row.decode(column: "expires_at", as: Int64?.self), revokedAt: try row.decode(column: "revoked_at", as: Int64?.self),
            replacedBy: try row.decode(column: "replaced_by", as: String?.self), createdAt: try row.decode(column: "created_at", as: Int64.self))
    }

    /// Key text: `<prefix>_<env>_ak_<12-character lookup id><40-character secret>`, all base62 from
    /// the system CSPRNG (the secret alone is 238 bits). Only the keyed hash is stored.
    func newKey(environment: String) -> (key: String, lookupID: String, display: String) {
        let lookupID = Secrets.randomBase62(12)
        let secretPart = Secrets.randomBase62(40)
        let body = lookupID + secretPart
        let key = "\(keyPrefix)_\(environment)_ak_\(body)"
        let display = "\(keyPrefix)_\(environment)_ak_\(body.prefix(3))...\(body.suffix(3))"
        return (key, lookupID, display)
    }

    /// The lookup id of a presented key, or `nil` when it is not shaped like one of ours
    /// (`<prefix>_<prd|sbx>_ak_<52 base62>`). Byte-level: it runs on every request.
    public func lookupID(ofPresentedKey key: Substring) -> String? {
        let prefixLength = keyPrefix.utf8.count
        var key = key
        return key.withUTF8 { b -> String? in
            let bodyStart = prefixLength + 8
            guard b.count == bodyStart + 52 else { return nil }
            var prefix = keyPrefix
            let prefixMatches = prefix.withUTF8 { p in (0..<prefixLength).allSatisfy { b[$0] == p[$0] } }
            guard prefixMatches, b[prefixLength] == UInt8(ascii: "_"), b[prefixLength + 4] == UInt8(ascii: "_"),
                  b[prefixLength + 5] == UInt8(ascii: "a"), b[prefixLength + 6] == UInt8(ascii: "k"), b[prefixLength + 7] == UInt8(ascii: "_")
            else { return nil }
            let env = (b[prefixLength + 1], b[prefixLength + 2], b[prefixLength + 3])
            guard env == (UInt8(ascii: "p"), UInt8(ascii: "r"), UInt8(ascii: "d")) || env == (UInt8(ascii: "s"), UInt8(ascii: "b"), UInt8(ascii: "x")) else { return nil }
            for i in bodyStart..<b.count {
                switch b[i] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"): continue
                default: return nil
                }
            }
            return String(decoding: UnsafeBufferPointer(rebasing: b[bodyStart..<(bodyStart + 12)]), as: UTF8.self)
        }
    }

    public func createKey(appID: String, name: String, environment: String, scopes: [String]?, expiresAt: Int64?) async throws -> IssuedKey {
        let (text, lookupID, display) = newKey(environment: environment)
        let record = APIKeyRecord(
            id: Identifier.random("key"), appID: appID, lookupID: lookupID, keyHash: hash(text),
            environment: environment, name: name, display: display, scopes: scopes, expiresAt: expiresAt, revokedAt: nil,
            replacedBy: nil, createdAt: Clock.millis())
        try await insert(record, db: sql)
        return IssuedKey(record: record, key: text)
    }

    private func insert(_ r: APIKeyRecord, db: any SQLDatabase) async throws {
        try await db.raw("""
            INSERT INTO api_keys (id, app_id, lookup_id, key_hash, prefix, environment, name, display, scopes, expires_at, created_at)
            VALUES (\(bind: r.id), \(bind: r.appID), \(bind: r.lookupID), \(bind: r.keyHash), \(bind: keyPrefix), \(bind: r.environment),
                    \(bind: r.name), \(bind: r.display), \(bind: r.scopes?.stored), \(bind: r.expiresAt), \(bind: r.createdAt))
            """).run()
    }

    public func key(id: String) async throws -> APIKeyRecord? {
        try await sql.raw("SELECT \(unsafeRaw: Self.keyColumns) FROM api_keys WHERE id = \(bind: id)").first().map(key(from:))
    }

    public func key(lookupID: String) async throws -> APIKeyRecord? {
        try await sql.raw("SELECT \(unsafeRaw: Self.keyColumns) FROM api_keys WHERE lookup_id = \(bind: lookupID)").first().map(key(from:))
    }

    public func keys(appID: String) async throws -> [APIKeyRecord] {
        try await sql.raw("SELECT \(unsafeRaw: Self.keyColumns) FROM api_keys WHERE app_id = \(bind: appID) ORDER BY created_at, id").all().map(key(from:))
    }

    /// A new key with the old one's name, environment and scopes; the old key keeps working
    /// until `now + grace` (never beyond its own expiry), then stops.
    /// A key that was rotated already, revoked or has expired is not rotated again (409).
    public func rotate(keyID: String, graceSeconds: Int) async throws -> IssuedKey? {
        guard let old = try await key(id: keyID) else { return nil }
        if old.revokedAt != nil { throw StoreError.conflict("key \(keyID) is revoked") }
        if let replacement = old.replacedBy { throw StoreError.conflict("key \(keyID) was rotated already (replaced by \(replacement))") }
        if let expiry = old.expiresAt, expiry <= Clock.millis() { throw StoreError.conflict("key \(keyID) has expired") }
        let (text, lookupID, display) = newKey(environment: old.environment)
        let record = APIKeyRecord(
            id: Identifier.random("key"), appID: old.appID, lookupID: lookupID, keyHash: hash(text),
            environment: old.environment, name: old.name, display: display, scopes: old.scopes, expiresAt: old.expiresAt,
            revokedAt: nil, replacedBy: nil, createdAt: Clock.millis())
        let graceEnd = Clock.millis() + Int64(graceSeconds) * 1000
        let oldExpiry = min(old.expiresAt ?? .max, graceEnd)
        try await change { db in
            try await insert(record, db: db)
            try await db.raw("UPDATE api_keys SET expires_at = \(bind: oldExpiry), replaced_by = \(bind: record.id) WHERE id = \(bind: keyID)").run()
        }
        return IssuedKey(record: record, key: text)
    }

    public func revoke(keyID: String) async throws {
        try await change { db in
            try await db.raw("UPDATE api_keys SET revoked_at = \(bind: Clock.millis()) WHERE id = \(bind: keyID) AND revoked_at IS NULL").run()
        }
    }
}

/// Store-level refusals the HTTP layer maps to 4xx answers.
public enum StoreError: Error, CustomStringConvertible {
    case conflict(String)
    case invalid(String)
    case notFound(String)

    public var description: String {
        switch self {
        case .conflict(let m), .invalid(let m), .notFound(let m): m
        }
    }
}
