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

    /// `id` is left empty on the request path; ``AuditStore/insert(_:)`` assigns time-ordered ids.
    public init(
        at: Int64, organizationID: String?, appID: String?, keyID: String?, method: String, route: String?, path: String,
        requiredScope: String?, decision: String, status: Int, traceID: String
    ) {
        self.id = ""
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

    /// Inserts a batch as one JSON document per 1,000 events, unpacked by the database:
    /// one bound value per statement instead of twelve per row (binding dominated the cost).
    public func insert(_ events: [AuditEvent]) async throws {
        for start in stride(from: 0, to: events.count, by: 1_000) {
            let chunk = events[start..<min(start + 1_000, events.count)]
            var bytes: [UInt8] = [UInt8(ascii: "[")]
            bytes.reserveCapacity(chunk.count * 300)
            for (i, e) in chunk.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                JSONValue.array([.string(e.id.isEmpty ? Identifier.timeOrdered("aud", millis: e.at) : e.id), .int(e.at), .optional(e.organizationID), .optional(e.appID), .optional(e.keyID), .string(e.method),
                                 .optional(e.route), .string(e.path), .optional(e.requiredScope), .string(e.decision), .int(Int64(e.status)),
                                 .string(e.traceID)]).write(into: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
            let document = String(decoding: bytes, as: UTF8.self)
            let columns = "id, at, organization_id, app_id, key_id, method, route, path, required_scope, decision, status, trace_id"
            switch database.dialect {
            case .sqlite:
                let fields = (0..<12).map { "json_extract(value, '$[\($0)]')" }.joined(separator: ", ")
                try await database.sql.raw("INSERT INTO audit_events (\(unsafeRaw: columns)) SELECT \(unsafeRaw: fields) FROM json_each(\(bind: document))").run()
            case .postgres:
                let fields = (0..<12).map { i in i == 1 ? "(r->>1)::bigint" : i == 10 ? "(r->>10)::integer" : "r->>\(i)" }.joined(separator: ", ")
                try await database.sql.raw("INSERT INTO audit_events (\(unsafeRaw: columns)) SELECT \(unsafeRaw: fields) FROM jsonb_array_elements(\(bind: document)::jsonb) AS r").run()
            }
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
