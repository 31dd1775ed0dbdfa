import Crypto
import Foundation
import SQLKit

/// Management tokens: the operator's, developers' and clinic admins'.
extension GrantStore {
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

    static let tokenColumns = "token_id, kind, subject_id, created_at, expires_at, revoked_at"

    func managementToken(from row: any SQLRow) throws -> ManagementTokenRecord? {
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
}
