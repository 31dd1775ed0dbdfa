import SQLKit

/// One decision of the enforcement middleware, as stored (never a secret: the key's id only).
public struct AuditEvent: Sendable, Equatable {
    public var id: String
    public var at: Int64
    public var organizationID: String?
    public var appID: String?
    public var keyID: String?
    public var method: String
    public var route: String?
    public var path: String
    public var requiredScope: String?
    public var decision: String
    public var status: Int
    public var traceID: String

    public init(
        at: Int64, organizationID: String?, appID: String?, keyID: String?, method: String, route: String?, path: String,
        requiredScope: String?, decision: String, status: Int, traceID: String
    ) {
        self.id = Identifier.timeOrdered("aud", millis: at)
        self.at = at
        self.organizationID = organizationID
        self.appID = appID
        self.keyID = keyID
        self.method = method
        self.route = route
        self.path = path
        self.requiredScope = requiredScope
        self.decision = decision
        self.status = status
        self.traceID = traceID
    }
}

public struct AuditStore: Sendable {
    public let database: Database
    public init(database: Database) { self.database = database }

    /// Inserts a batch in one multi-row statement per 200 events.
    public func insert(_ events: [AuditEvent]) async throws {
        for chunk in stride(from: 0, to: events.count, by: 200).map({ Array(events[$0..<min($0 + 200, events.count)]) }) {
            var query: SQLQueryString = """
                INSERT INTO audit_events (id, at, organization_id, app_id, key_id, method, route, path, required_scope, decision, status, trace_id) VALUES
                """
            for (i, e) in chunk.enumerated() {
                query += "\(unsafeRaw: i == 0 ? "" : ",") (\(bind: e.id), \(bind: e.at), \(bind: e.organizationID), \(bind: e.appID), \(bind: e.keyID), \(bind: e.method), \(bind: e.route), \(bind: e.path), \(bind: e.requiredScope), \(bind: e.decision), \(bind: e.status), \(bind: e.traceID))"
            }
            try await database.sql.raw(query).run()
        }
    }

    /// Newest first; `cursor` is the last id of the previous page.
    public func page(organizationID: String?, appID: String?, decision: String?, limit: Int, cursor: String?) async throws -> (events: [AuditEvent], next: String?) {
        var query: SQLQueryString = "SELECT id, at, organization_id, app_id, key_id, method, route, path, required_scope, decision, status, trace_id FROM audit_events WHERE 1 = 1"
        if let organizationID { query += " AND organization_id = \(bind: organizationID)" }
        if let appID { query += " AND app_id = \(bind: appID)" }
        if let decision { query += " AND decision = \(bind: decision)" }
        if let cursor { query += " AND id < \(bind: cursor)" }
        query += " ORDER BY id DESC LIMIT \(literal: limit + 1)"
        let rows = try await database.sql.raw(query).all()
        var events: [AuditEvent] = []
        for row in rows.prefix(limit) {
            var event = AuditEvent(
                at: try row.decode(column: "at", as: Int64.self), organizationID: try row.decode(column: "organization_id", as: String?.self),
                appID: try row.decode(column: "app_id", as: String?.self), keyID: try row.decode(column: "key_id", as: String?.self),
                method: try row.decode(column: "method", as: String.self), route: try row.decode(column: "route", as: String?.self),
                path: try row.decode(column: "path", as: String.self), requiredScope: try row.decode(column: "required_scope", as: String?.self),
                decision: try row.decode(column: "decision", as: String.self), status: try row.decode(column: "status", as: Int.self),
                traceID: try row.decode(column: "trace_id", as: String.self))
            event.id = try row.decode(column: "id", as: String.self)
            events.append(event)
        }
        return (events, rows.count > limit ? events.last?.id : nil)
    }
}
