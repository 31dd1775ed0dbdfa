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

    /// HMAC-SHA-256 (RFC 2104) with the key already absorbed: the inner and outer SHA-256
    /// states after `key ⊕ ipad` and `key ⊕ opad`, which every hash copies. It is composed here
    /// from swift-crypto's SHA-256, as its `HMAC` does, because `HMAC<SHA256>` called from
    /// outside swift-crypto runs unspecialised: a generic metadata lookup and a `DataProtocol`
    /// walk on every call, 0.75 µs of each authenticated request. `SecretsAtRestTests` checks
    /// it against `HMAC<SHA256>`.
    private let inner: SHA256
    private let outer: SHA256

    public init(database: Database, secret: SymmetricKey, keyPrefix: String = "cg") {
        self.database = database
        self.secret = secret
        self.keyPrefix = keyPrefix
        (inner, outer) = Self.keyedStates(secret)
    }

    private static func keyedStates(_ key: SymmetricKey) -> (inner: SHA256, outer: SHA256) {
        // A key longer than the block is replaced by its hash; a shorter one is padded with zeros.
        var block = key.withUnsafeBytes { bytes in bytes.count > SHA256.blockByteCount ? Array(SHA256.hash(data: bytes)) : Array(bytes) }
        block += [UInt8](repeating: 0, count: SHA256.blockByteCount - block.count)
        var inner = SHA256(), outer = SHA256()
        inner.update(data: block.map { $0 ^ 0x36 })
        outer.update(data: block.map { $0 ^ 0x5C })
        return (inner, outer)
    }

    /// The keyed hash of a presented key or token (as stored).
    public func hash(_ value: String) -> String {
        Secrets.hex(digest(value[...]))
    }

    /// The same keyed hash as bytes, for the per-request comparison: no hex string is built.
    public func digest(_ value: Substring) -> SHA256Digest {
        var value = value
        return value.withUTF8 { digest(UnsafeRawBufferPointer($0)) }
    }

    /// The same keyed hash of a value as bytes.
    public func digest(_ value: UnsafeRawBufferPointer) -> SHA256Digest {
        var inner = self.inner
        inner.update(bufferPointer: value)
        var outer = self.outer
        inner.finalize().withUnsafeBytes { outer.update(bufferPointer: $0) }
        return outer.finalize()
    }

    var sql: any SQLDatabase { database.sql }
    /// For the reads a request waits for (``Database/reads``).
    var reads: any SQLDatabase { database.reads }

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

    /// What the changes after generation `last` touched, and the generation they reach; nil
    /// changes when the log no longer holds one of them (pruned: see ``pruneChangeLog(before:)``),
    /// so that the caller drops everything.
    public func changes(since last: Int64) async throws -> (generation: Int64, touched: [GrantChange]?) {
        let current = try await generation()
        guard current > last else { return (current, []) }
        let rows = try await sql.raw("""
            SELECT generation, kind, subject, detail FROM grant_change_log WHERE generation > \(bind: last) ORDER BY generation
            """).all()
        var seen = Set<Int64>()
        var touched: [GrantChange] = []
        var reached = current
        for row in rows {
            let generation = try row.decode(column: "generation", as: Int64.self)
            seen.insert(generation)
            reached = max(reached, generation)
            touched.append(GrantChange(
                kind: try row.decode(column: "kind", as: String.self), subject: try row.decode(column: "subject", as: String.self),
                detail: try row.decode(column: "detail", as: String.self)))
        }
        // Generations commit in order (each change moves the one counter row), so every one up
        // to the counter has its rows, unless they were pruned.
        guard (last + 1...reached).allSatisfy(seen.contains) else { return (reached, nil) }
        return (reached, touched)
    }

    /// Deletes change-log rows written before `before` (milliseconds): an instance that has not
    /// polled since then drops every cached credential instead.
    public func pruneChangeLog(before: Int64) async throws {
        try await sql.raw("DELETE FROM grant_change_log WHERE created_at < \(bind: before)").run()
    }

    /// Runs `body` in a transaction that moves the change counter and records what it touched,
    /// and tells this process's listeners (``changes``) once it has committed; other instances
    /// read the log. Nothing named: ``GrantChange/everything``.
    func change<R: Sendable>(_ touched: [GrantChange], _ body: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        let touched = touched.isEmpty ? [GrantChange.everything] : touched
        let result = try await database.transaction { db in
            let result = try await body(db)
            try await db.raw("UPDATE caregate_changes SET generation = generation + 1 WHERE id = 1").run()
            let generation = try await db.raw("SELECT generation FROM caregate_changes WHERE id = 1").first(decodingColumn: "generation", as: Int64.self) ?? 0
            let now = Clock.millis()
            for change in Set(touched) {
                let (kind, subject, detail) = change.stored
                try await db.raw("""
                    INSERT INTO grant_change_log (generation, kind, subject, detail, created_at)
                    VALUES (\(bind: generation), \(bind: kind), \(bind: subject), \(bind: detail), \(bind: now))
                    """).run()
            }
            return result
        }
        changes.announce(touched)
        return result
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

    /// A new app with its first version; `reviewed` are the declared scopes an operator must
    /// approve before they take effect (filed as pending reviews in the same transaction).
    public func createApp(developerID: String, slug: String, name: String, surface: String, scopes: [String], reviewed: [String] = []) async throws -> AppRecord {
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
            try await requestReviews(appID: app.id, scopes: reviewed, db: db)
        }
        return app
    }

    public func app(_ id: String) async throws -> AppRecord? {
        guard let row = try await sql.raw("""
            SELECT a.id, a.developer_id, a.slug, a.name, a.surface, a.live_version_id, v.scopes
            FROM apps a JOIN app_versions v ON v.id = a.live_version_id WHERE a.id = \(bind: id)
            """).first() else { return nil }
        return try appRecord(row)
    }

    /// A developer's apps, oldest first.
    public func apps(developerID: String) async throws -> [AppRecord] {
        try await sql.raw("""
            SELECT a.id, a.developer_id, a.slug, a.name, a.surface, a.live_version_id, v.scopes
            FROM apps a JOIN app_versions v ON v.id = a.live_version_id WHERE a.developer_id = \(bind: developerID) ORDER BY a.created_at, a.id
            """).all().map(appRecord)
    }

    private func appRecord(_ row: any SQLRow) throws -> AppRecord {
        AppRecord(
            id: try row.decode(column: "id", as: String.self), developerID: try row.decode(column: "developer_id", as: String.self),
            slug: try row.decode(column: "slug", as: String.self), name: try row.decode(column: "name", as: String.self),
            surface: try row.decode(column: "surface", as: String.self),
            liveVersionID: try row.decode(column: "live_version_id", as: String.self),
            scopes: [String](stored: try row.decode(column: "scopes", as: String.self)))
    }

    /// Adds a version and makes it live. Installations keep their approved grants until re-approved.
    public func createVersion(appID: String, scopes: [String], reviewed: [String] = []) async throws -> AppVersionRecord {
        let version = AppVersionRecord(id: Identifier.random("apv"), appID: appID, scopes: scopes)
        try await change([.app(appID)]) { db in
            try await db.raw("INSERT INTO app_versions (id, app_id, scopes, created_at) VALUES (\(bind: version.id), \(bind: appID), \(bind: scopes.stored), \(bind: Clock.millis()))").run()
            try await requestReviews(appID: appID, scopes: reviewed, db: db)
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
        try await change([.installation(appID: appID, organizationID: organizationID)]) { db in
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

    /// A clinic's active installations, oldest first.
    public func installations(organizationID: String) async throws -> [InstallationRecord] {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.installationColumns) FROM installations
            WHERE organization_id = \(bind: organizationID) AND status = 'active' ORDER BY created_at, id
            """).all().map(installation(from:))
    }

    public func installation(appID: String, organizationID: String) async throws -> InstallationRecord? {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.installationColumns) FROM installations
            WHERE app_id = \(bind: appID) AND organization_id = \(bind: organizationID) AND status = 'active'
            """).first().map(installation(from:))
    }

    /// Nil for an installation that is not there (removed meanwhile): nothing is changed.
    public func approve(installationID: String, versionID: String, scopes: [String]) async throws -> InstallationRecord? {
        guard let touched = try await touched(installationID: installationID) else { return nil }
        try await change(touched) { db in
            try await db.raw("""
                UPDATE installations SET approved_version_id = \(bind: versionID), approved_scopes = \(bind: scopes.stored),
                updated_at = \(bind: Clock.millis()) WHERE id = \(bind: installationID)
                """).run()
        }
        return try await installation(installationID)
    }

    public func uninstall(installationID: String) async throws {
        guard let touched = try await touched(installationID: installationID) else { return }
        try await change(touched) { db in
            try await db.raw("DELETE FROM installations WHERE id = \(bind: installationID)").run()
        }
    }

    /// What a change of an installation touches: the app in that clinic; nil when the installation
    /// is not there (a second removal, say), so that nothing is changed and no cache is dropped.
    private func touched(installationID: String) async throws -> [GrantChange]? {
        guard let current = try await installation(installationID) else { return nil }
        return [.installation(appID: current.appID, organizationID: current.organizationID)]
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
