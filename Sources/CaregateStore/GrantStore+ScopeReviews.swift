import Foundation
import SQLKit

/// An operator's review of one scope an app declared: pending, approved or refused (with why).
public struct ScopeReviewRecord: Sendable, Equatable {
    public var id: String
    public var appID: String
    public var scope: String
    public var status: String
    public var reason: String?
    public var requestedAt: Int64
    public var decidedAt: Int64?
}

/// The review queue: a scope that is not self-service becomes effective for an app only once
/// an operator approves it. The caller (which knows the catalogs) says which scopes need it.
extension GrantStore {
    private static let reviewColumns = "id, app_id, scope, status, reason, requested_at, decided_at"

    /// Files a pending review for each of `scopes` the app has no review of yet, and files a
    /// refused one again (a new version asking again is a new request), in the transaction that
    /// declares them. An approved or pending review stays as it is.
    func requestReviews(appID: String, scopes: [String], db: any SQLDatabase) async throws {
        let now = Clock.millis()
        for scope in Set(scopes) {
            try await db.raw("""
                INSERT INTO scope_reviews (id, app_id, scope, status, requested_at)
                VALUES (\(bind: Identifier.random("rev")), \(bind: appID), \(bind: scope), 'pending', \(bind: now))
                ON CONFLICT (app_id, scope) DO NOTHING
                """).run()
            try await db.raw("""
                UPDATE scope_reviews SET status = 'pending', reason = NULL, requested_at = \(bind: now), decided_at = NULL
                WHERE app_id = \(bind: appID) AND scope = \(bind: scope) AND status = 'refused'
                """).run()
        }
    }

    private func review(from row: any SQLRow) throws -> ScopeReviewRecord {
        ScopeReviewRecord(
            id: try row.decode(column: "id", as: String.self), appID: try row.decode(column: "app_id", as: String.self),
            scope: try row.decode(column: "scope", as: String.self), status: try row.decode(column: "status", as: String.self),
            reason: try row.decode(column: "reason", as: String?.self), requestedAt: try row.decode(column: "requested_at", as: Int64.self),
            decidedAt: try row.decode(column: "decided_at", as: Int64?.self))
    }

    /// Reviews with this status, oldest request first (at most `limit`).
    public func reviews(status: String, limit: Int = 200) async throws -> [ScopeReviewRecord] {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.reviewColumns) FROM scope_reviews WHERE status = \(bind: status) ORDER BY requested_at, id LIMIT \(literal: limit)
            """).all().map(review(from:))
    }

    /// An app's reviews, oldest request first.
    public func reviews(appID: String) async throws -> [ScopeReviewRecord] {
        try await sql.raw("SELECT \(unsafeRaw: Self.reviewColumns) FROM scope_reviews WHERE app_id = \(bind: appID) ORDER BY requested_at, id")
            .all().map(review(from:))
    }

    public func review(_ id: String) async throws -> ScopeReviewRecord? {
        try await sql.raw("SELECT \(unsafeRaw: Self.reviewColumns) FROM scope_reviews WHERE id = \(bind: id)").first().map(review(from:))
    }

    /// Approves or refuses a pending review; a grant-chain change (every instance re-reads the
    /// app's credentials). Nil when there is no such review; a conflict when it was decided
    /// already (of two decisions at the same moment, one wins).
    public func decideReview(id: String, approve: Bool, reason: String?) async throws -> ScopeReviewRecord? {
        guard let current = try await review(id) else { return nil }
        try await change([.app(current.appID)]) { db in
            let decided = try await db.raw("""
                UPDATE scope_reviews SET status = \(bind: approve ? "approved" : "refused"), reason = \(bind: reason), decided_at = \(bind: Clock.millis())
                WHERE id = \(bind: id) AND status = 'pending' RETURNING id
                """).all()
            guard !decided.isEmpty else { throw StoreError.conflict("this review was \(current.status) already") }
        }
        return try await review(id)
    }

    /// How many reviews have this status.
    public func reviewCount(status: String) async throws -> Int {
        try await sql.raw("SELECT COUNT(*) AS n FROM scope_reviews WHERE status = \(bind: status)").first(decodingColumn: "n", as: Int.self) ?? 0
    }

    /// The scopes an operator approved for an app.
    public func approvedReviewScopes(appID: String) async throws -> Set<String> {
        Set(try await sql.raw("SELECT scope FROM scope_reviews WHERE app_id = \(bind: appID) AND status = 'approved'").all()
            .map { try $0.decode(column: "scope", as: String.self) })
    }
}
