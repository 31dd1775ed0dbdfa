import SQLKit

/// A FHIR Bulk Data export (`$export`): who asked, what, and how far it got.
public struct ExportJobRecord: Sendable {
    public enum Status: String, Sendable { case inProgress = "in-progress", completed, failed }
    public var id: String
    public var organizationID: String
    /// The key or OAuth client that asked: the only one that may see the job and its files.
    public var clientID: String
    /// The kick-off request's URL, as the manifest repeats it.
    public var request: String
    public var types: [String]
    /// Per type, the reach the export was made with (a signature the server compares): status
    /// and files are given only to a credential that still reaches as far.
    public var access: [String: String]
    public var status: Status
    public var progress: String
    public var transactionTime: String
    public var expiresAt: Int64
    public var error: String?
}

extension FHIRStore {
    /// How long a job and its files are kept after the kick-off.
    public static let exportLifetime: Int64 = 3_600_000

    /// How long a job in progress may go without a sign of life (a progress step or a part
    /// written; each takes well under a second) before it is taken as stopped: the instance
    /// running it went away (a crash, a kill, a lost database connection) without finishing it.
    public static let exportStaleAfter: Int64 = 120_000
    static let stoppedExport = "The export stopped before it finished: the server instance running it went away. Kick off a new one."

    /// A new job in progress, unless the client already has `limit` jobs running (on any
    /// instance: in progress and alive): then nil. The count and the insert are one
    /// transaction, serialised per client, so that two kick-offs at once cannot both pass.
    public func createExportJob(
        organization: String, clientID: String, request: String, types: [String], access: [String: String], limit: Int
    ) async throws -> ExportJobRecord? {
        let now = Clock.millis()
        let job = ExportJobRecord(
            id: Identifier.random("exp"), organizationID: organization, clientID: clientID, request: request, types: types, access: access,
            status: .inProgress, progress: "queued", transactionTime: FHIRDate.instant(millis: now), expiresAt: now + Self.exportLifetime)
        let accessJSON = String(decoding: (JSONValue.object(types.map { ($0, .string(access[$0] ?? "")) })).serialized(), as: UTF8.self)
        let postgres = database.dialect == .postgres
        return try await database.transaction { db in
            // SQLite's transactions already run one at a time (BEGIN IMMEDIATE); PostgreSQL's
            // read committed would let two count the same jobs.
            if postgres { try await db.raw("SELECT pg_advisory_xact_lock(hashtext(\(bind: "export " + organization + " " + clientID)))").run() }
            let running = try await db.raw("""
                SELECT COUNT(*) AS n FROM export_jobs WHERE organization_id = \(bind: organization) AND client_id = \(bind: clientID)
                  AND status = 'in-progress' AND heartbeat_at > \(bind: now - Self.exportStaleAfter) AND expires_at > \(bind: now)
                """).first(decodingColumn: "n", as: Int64.self) ?? 0
            guard running < limit else { return nil }
            try await db.raw("""
                INSERT INTO export_jobs (id, organization_id, client_id, request, types, access, status, progress, transaction_time, created_at,
                  expires_at, heartbeat_at)
                VALUES (\(bind: job.id), \(bind: organization), \(bind: clientID), \(bind: request), \(bind: types.joined(separator: ",")),
                  \(bind: accessJSON), \(bind: job.status.rawValue), \(bind: job.progress), \(bind: job.transactionTime), \(bind: now),
                  \(bind: job.expiresAt), \(bind: now))
                """).run()
            return job
        }
    }

    /// The job, if it exists, has not expired, and belongs to this client in this clinic.
    /// A job in progress that has shown no sign of life for ``exportStaleAfter`` is failed here
    /// (once, whichever instance reads it first): its client learns it stopped instead of
    /// polling until it expires.
    public func exportJob(_ id: String, organization: String, clientID: String) async throws -> ExportJobRecord? {
        let now = Clock.millis()
        guard let row = try await sql.raw("""
            SELECT \(unsafeRaw: Self.exportJobColumns), heartbeat_at FROM export_jobs
            WHERE id = \(bind: id) AND organization_id = \(bind: organization) AND client_id = \(bind: clientID) AND expires_at > \(bind: now)
            """).first()
        else { return nil }
        let job = try Self.exportJob(row)
        if job.status == .inProgress, try row.decode(column: "heartbeat_at", as: Int64.self) <= now - Self.exportStaleAfter {
            try await sql.raw("""
                UPDATE export_jobs SET status = 'failed', error = \(bind: Self.stoppedExport), completed_at = \(bind: now)
                WHERE id = \(bind: id) AND status = 'in-progress' AND heartbeat_at <= \(bind: now - Self.exportStaleAfter)
                """).run()
            // Read again: the job may have shown a sign of life, or ended, in between.
            return try await sql.raw("SELECT \(unsafeRaw: Self.exportJobColumns) FROM export_jobs WHERE id = \(bind: id)").first().map(Self.exportJob)
        }
        return job
    }

    /// The columns ``exportJob(_:)`` reads a record from.
    private static let exportJobColumns = "id, organization_id, client_id, request, types, access, status, progress, transaction_time, expires_at, error"

    private static func exportJob(_ row: any SQLRow) throws -> ExportJobRecord {
        ExportJobRecord(
            id: try row.decode(column: "id", as: String.self), organizationID: try row.decode(column: "organization_id", as: String.self),
            clientID: try row.decode(column: "client_id", as: String.self), request: try row.decode(column: "request", as: String.self),
            types: try row.decode(column: "types", as: String.self).split(separator: ",").map(String.init),
            access: Self.accessSignatures(try row.decode(column: "access", as: String.self)),
            status: ExportJobRecord.Status(rawValue: try row.decode(column: "status", as: String.self)) ?? .failed,
            progress: try row.decode(column: "progress", as: String.self), transactionTime: try row.decode(column: "transaction_time", as: String.self),
            expiresAt: try row.decode(column: "expires_at", as: Int64.self), error: try row.decode(column: "error", as: String?.self))
    }

    static func accessSignatures(_ text: String) -> [String: String] {
        guard case .object(let pairs)? = try? JSONValue.parse(text) else { return [:] }
        return Dictionary(pairs.compactMap { pair in pair.1.stringValue.map { (pair.0, $0) } }, uniquingKeysWith: { a, _ in a })
    }

    public func setExportProgress(_ id: String, _ progress: String) async throws {
        try await sql.raw("""
            UPDATE export_jobs SET progress = \(bind: progress), heartbeat_at = \(bind: Clock.millis()) WHERE id = \(bind: id) AND status = 'in-progress'
            """).run()
    }

    /// One part of a type's NDJSON file, written only while the job is in progress (not after
    /// it was deleted); whether it was written.
    @discardableResult
    public func addExportPart(_ id: String, type: String, part: Int, count: Int, content: String) async throws -> Bool {
        try await database.transaction { db in
            // The update first: on PostgreSQL it waits for, then sees, a poll failing the job meanwhile.
            try await db.raw("UPDATE export_jobs SET heartbeat_at = \(bind: Clock.millis()) WHERE id = \(bind: id) AND status = 'in-progress'").run()
            guard try await db.raw("SELECT id FROM export_jobs WHERE id = \(bind: id) AND status = 'in-progress'").first() != nil else { return false }
            try await db.raw("""
                INSERT INTO export_files (job_id, resource_type, part, count, content)
                VALUES (\(bind: id), \(bind: type), \(bind: Int64(part)), \(bind: Int64(count)), \(bind: content))
                """).run()
            return true
        }
    }

    /// Ends a job still in progress (one already finished or deleted stays as it is); whether it was.
    @discardableResult
    public func finishExportJob(_ id: String, error: String?) async throws -> Bool {
        try await sql.raw("""
            UPDATE export_jobs SET status = \(bind: error == nil ? "completed" : "failed"), error = \(bind: error), completed_at = \(bind: Clock.millis())
            WHERE id = \(bind: id) AND status = 'in-progress' RETURNING id
            """).first() != nil
    }

    /// Each exported type with its resource count, in the job's order.
    public func exportOutputs(_ id: String) async throws -> [(type: String, count: Int)] {
        try await sql.raw("""
            SELECT resource_type, CAST(SUM(count) AS BIGINT) AS n, MIN(part) AS first FROM export_files WHERE job_id = \(bind: id)
            GROUP BY resource_type ORDER BY MIN(part)
            """).all().map { (try $0.decode(column: "resource_type", as: String.self), try $0.decode(column: "n", as: Int.self)) }
    }

    /// Calls `body` with each part of a type's file, in order (one part in memory at a time).
    public func exportParts(_ id: String, type: String, _ body: (String) async throws -> Void) async throws {
        var next: Int64 = 0
        while true {
            guard let row = try await sql.raw("""
                SELECT part, content FROM export_files WHERE job_id = \(bind: id) AND resource_type = \(bind: type) AND part >= \(bind: next)
                ORDER BY part LIMIT 1
                """).first()
            else { return }
            try await body(try row.decode(column: "content", as: String.self))
            next = try row.decode(column: "part", as: Int64.self) + 1
        }
    }

    /// Deletes a job and its files; whether there was one.
    public func deleteExportJob(_ id: String, organization: String, clientID: String) async throws -> Bool {
        try await database.transaction { db in
            guard try await db.raw("""
                SELECT id FROM export_jobs WHERE id = \(bind: id) AND organization_id = \(bind: organization) AND client_id = \(bind: clientID)
                """).first() != nil
            else { return false }
            try await db.raw("DELETE FROM export_files WHERE job_id = \(bind: id)").run()
            try await db.raw("DELETE FROM export_jobs WHERE id = \(bind: id)").run()
            return true
        }
    }

    /// Deletes expired jobs with their files; how many jobs went.
    @discardableResult
    public func pruneExports(now: Int64 = Clock.millis()) async throws -> Int {
        try await database.transaction { db in
            let expired = try await db.raw("SELECT id FROM export_jobs WHERE expires_at <= \(bind: now)").all().map { try $0.decode(column: "id", as: String.self) }
            for id in expired {
                try await db.raw("DELETE FROM export_files WHERE job_id = \(bind: id)").run()
                try await db.raw("DELETE FROM export_jobs WHERE id = \(bind: id)").run()
            }
            // Parts of a job deleted while they were being written.
            try await db.raw("DELETE FROM export_files WHERE job_id NOT IN (SELECT id FROM export_jobs)").run()
            return expired.count
        }
    }
}
