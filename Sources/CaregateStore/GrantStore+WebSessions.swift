import Foundation
import SQLKit

/// A signed-in person of the web console: who (the principal of the management token they
/// signed in with) and the form token their session's forms must carry.
public struct WebSession: Sendable, Equatable {
    public var principal: Principal
    /// Every form of this session carries it; a post without it (or with another's) is refused.
    public var csrf: String
    public var expiresAt: Int64
}

extension GrantStore {
    /// How long a console session lasts (it is not extended by use).
    public static let webSessionLifetime: Int64 = 8 * 3_600_000

    /// Opens a session for whoever holds `token` (a management token): the cookie value, shown
    /// to the browser once and stored only as a keyed hash; nil when the token is not valid.
    public func startWebSession(token: String) async throws -> (cookie: String, session: WebSession)? {
        guard let principal = try await authenticate(token: token) else { return nil }
        let cookie = "cgs_" + Secrets.randomBase62(43)
        let now = Clock.millis()
        let session = WebSession(principal: principal, csrf: Secrets.randomHex(bytes: 24), expiresAt: now + Self.webSessionLifetime)
        try await sql.raw("""
            INSERT INTO web_sessions (id_hash, token_id, token_hash, csrf, created_at, expires_at)
            VALUES (\(bind: hash(cookie)), \(bind: tokenID(of: token)), \(bind: hash(token)), \(bind: session.csrf), \(bind: now), \(bind: session.expiresAt))
            """).run()
        return (cookie, session)
    }

    /// The live session of a cookie: not ended, not expired, and its management token neither
    /// revoked, expired nor replaced (revoking or rotating the token, or changing
    /// `CAREGATE_ADMIN_TOKEN`, ends its sessions on every instance at once).
    public func webSession(cookie: String) async throws -> WebSession? {
        guard cookie.hasPrefix("cgs_"), cookie.utf8.count <= 64 else { return nil }
        let now = Clock.millis()
        guard let row = try await sql.raw("""
            SELECT s.csrf, s.expires_at, t.kind, t.subject_id, t.expires_at AS token_expires_at, t.revoked_at
            FROM web_sessions s JOIN access_tokens t ON t.token_id = s.token_id AND t.token_hash = s.token_hash
            WHERE s.id_hash = \(bind: hash(cookie)) AND s.ended_at IS NULL AND s.expires_at > \(bind: now)
            """).first() else { return nil }
        guard try row.decode(column: "revoked_at", as: Int64?.self) == nil,
              (try row.decode(column: "token_expires_at", as: Int64?.self)).map({ $0 > now }) ?? true,
              let kind = Principal.Kind(rawValue: try row.decode(column: "kind", as: String.self))
        else { return nil }
        return WebSession(
            principal: Principal(kind: kind, subjectID: try row.decode(column: "subject_id", as: String.self)),
            csrf: try row.decode(column: "csrf", as: String.self), expiresAt: try row.decode(column: "expires_at", as: Int64.self))
    }

    /// Signs out: the session ends everywhere (every instance reads sessions from the database).
    public func endWebSession(cookie: String) async throws {
        try await sql.raw("UPDATE web_sessions SET ended_at = \(bind: Clock.millis()) WHERE id_hash = \(bind: hash(cookie)) AND ended_at IS NULL").run()
    }

    /// Deletes sessions that ended or expired more than a day ago (run with the audit retention).
    public func pruneWebSessions() async throws {
        let cutoff = Clock.millis() - 86_400_000
        try await sql.raw("DELETE FROM web_sessions WHERE expires_at < \(bind: cutoff) OR ended_at < \(bind: cutoff)").run()
    }
}
