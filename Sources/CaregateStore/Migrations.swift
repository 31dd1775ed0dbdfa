import Foundation
import SQLKit

/// Versioned schema migrations, run at start-up: idempotent, every pending one in one
/// transaction, and refusing to run against a schema newer than this build knows.
/// Several instances sharing one PostgreSQL serialise on an advisory lock when there is
/// something to migrate; an up-to-date schema is read without it.
enum Migrations {
    struct Migration: Sendable {
        var version: Int
        var name: String
        var statements: @Sendable (Database) -> [String]
        /// Data to move after the statements, in the same transaction.
        var backfill: (@Sendable (any SQLDatabase) async throws -> Void)? = nil
    }

    static let all: [Migration] = [
        Migration(version: 1, name: "grant chain, audit and clinic data", statements: schemaV1),
        Migration(version: 2, name: "OAuth clients, signing keys, revoked tokens", statements: schemaV2),
        Migration(version: 3, name: "client JWKS and used assertion ids (RFC 7523)", statements: { _ in [
            "ALTER TABLE oauth_clients ADD COLUMN jwks TEXT",
            "CREATE TABLE used_assertions (jti TEXT NOT NULL, client_id TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (client_id, jti))",
        ] }),
        Migration(version: 4, name: "client JWKS by URL", statements: { _ in ["ALTER TABLE oauth_clients ADD COLUMN jwks_uri TEXT"] }),
        Migration(version: 5, name: "audit log in segments (one row per credential per write)", statements: auditSegments),
        Migration(version: 6, name: "clinic environments; management tokens that expire and can be revoked", statements: { _ in [
            "ALTER TABLE organizations ADD COLUMN environment TEXT NOT NULL DEFAULT 'prd'",
            "ALTER TABLE access_tokens ADD COLUMN expires_at BIGINT",
            "ALTER TABLE access_tokens ADD COLUMN revoked_at BIGINT",
        ] }),
        Migration(version: 7, name: "web console sessions", statements: { _ in [
            """
            CREATE TABLE web_sessions (id_hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, token_hash TEXT NOT NULL, csrf TEXT NOT NULL,
              created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, ended_at BIGINT)
            """,
            "CREATE INDEX web_sessions_token ON web_sessions (token_id)",
        ] }),
        Migration(
            version: 8, name: "operator review of the scopes an app declares (scopes declared before count as approved)",
            statements: { _ in [
                """
                CREATE TABLE scope_reviews (id TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps(id), scope TEXT NOT NULL, status TEXT NOT NULL,
                  reason TEXT, requested_at BIGINT NOT NULL, decided_at BIGINT, UNIQUE (app_id, scope))
                """,
                "CREATE INDEX scope_reviews_status ON scope_reviews (status, requested_at)",
            ] },
            backfill: { db in
                let now = Clock.millis()
                let rows = try await db.raw("SELECT a.id, v.scopes FROM apps a JOIN app_versions v ON v.id = a.live_version_id").all()
                for row in rows {
                    let appID = try row.decode(column: "id", as: String.self)
                    for scope in Set([String](stored: try row.decode(column: "scopes", as: String.self))) {
                        try await db.raw("""
                            INSERT INTO scope_reviews (id, app_id, scope, status, reason, requested_at, decided_at)
                            VALUES (\(bind: Identifier.random("rev")), \(bind: appID), \(bind: scope), 'approved', 'declared before the review queue',
                              \(bind: now), \(bind: now))
                            """).run()
                    }
                }
            }),
        Migration(version: 9, name: "clinic users (the people who sign in: clinicians and patients)", statements: { _ in [
            """
            CREATE TABLE clinic_users (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL REFERENCES organizations(id), username TEXT NOT NULL,
              password_hash TEXT NOT NULL, role TEXT NOT NULL, provider_id TEXT, patient_id TEXT, created_at BIGINT NOT NULL,
              UNIQUE (organization_id, username))
            """,
        ] }),
        Migration(version: 10, name: "SMART App Launch: clients that redirect, launches, authorization codes, refresh-token families, sign-in throttling", statements: { _ in [
            // The sign-in page asks for a username alone, so a username names one person across clinics.
            "CREATE UNIQUE INDEX clinic_users_username ON clinic_users (username)",
            "ALTER TABLE oauth_clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE oauth_clients ADD COLUMN launch_url TEXT",
            "ALTER TABLE oauth_clients ADD COLUMN is_public BIGINT NOT NULL DEFAULT 0",
            """
            CREATE TABLE smart_launches (id_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT NOT NULL, organization_id TEXT NOT NULL,
              patient_id TEXT, encounter_id TEXT, need_patient_banner BIGINT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT)
            """,
            """
            CREATE TABLE authorization_requests (id_hash TEXT PRIMARY KEY, browser_hash TEXT NOT NULL, csrf TEXT NOT NULL, request TEXT NOT NULL,
              user_id TEXT, patient_id TEXT, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)
            """,
            """
            CREATE TABLE authorization_codes (code_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL, code_challenge TEXT NOT NULL,
              user_id TEXT NOT NULL, organization_id TEXT NOT NULL, scope TEXT NOT NULL, context TEXT NOT NULL, expires_at BIGINT NOT NULL,
              used_at BIGINT, family_id TEXT)
            """,
            """
            CREATE TABLE token_families (id TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT NOT NULL, organization_id TEXT NOT NULL,
              scope TEXT NOT NULL, context TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT)
            """,
            "CREATE INDEX token_families_user ON token_families (user_id)",
            """
            CREATE TABLE refresh_tokens (token_hash TEXT PRIMARY KEY, family_id TEXT NOT NULL, scope TEXT NOT NULL, created_at BIGINT NOT NULL,
              expires_at BIGINT NOT NULL, used_at BIGINT)
            """,
            "CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id)",
            "CREATE TABLE sign_in_failures (username_hash TEXT PRIMARY KEY, failures BIGINT NOT NULL, first_at BIGINT NOT NULL, locked_until BIGINT)",
        ] }),
        Migration(version: 11, name: "clinical resources served as FHIR R4 (Observation, Condition, AllergyIntolerance)", statements: { _ in [
            // The resource as FHIR JSON, with the fields its search parameters read beside it.
            """
            CREATE TABLE clinical_resources (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, resource_type TEXT NOT NULL, patient_id TEXT NOT NULL,
              category TEXT NOT NULL, code TEXT NOT NULL, code_system TEXT NOT NULL, status TEXT NOT NULL, recorded_at TEXT NOT NULL,
              version BIGINT NOT NULL, updated_at BIGINT NOT NULL, content TEXT NOT NULL)
            """,
            "CREATE INDEX clinical_resources_patient ON clinical_resources (organization_id, resource_type, patient_id)",
            "CREATE INDEX clinical_resources_type ON clinical_resources (organization_id, resource_type, id)",
        ] }),
        Migration(version: 12, name: "FHIR Bulk Data export jobs and their NDJSON files", statements: { _ in [
            """
            CREATE TABLE export_jobs (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, client_id TEXT NOT NULL, request TEXT NOT NULL,
              types TEXT NOT NULL, access TEXT NOT NULL, status TEXT NOT NULL, progress TEXT NOT NULL, transaction_time TEXT NOT NULL, created_at BIGINT NOT NULL,
              completed_at BIGINT, expires_at BIGINT NOT NULL, error TEXT)
            """,
            """
            CREATE TABLE export_files (job_id TEXT NOT NULL, resource_type TEXT NOT NULL, part BIGINT NOT NULL, count BIGINT NOT NULL,
              content TEXT NOT NULL, PRIMARY KEY (job_id, part))
            """,
        ] }),
        Migration(version: 13, name: "what each grant-chain change touched, so that caches drop only that", statements: { _ in [
            """
            CREATE TABLE grant_change_log (generation BIGINT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,
              created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX grant_change_log_generation ON grant_change_log (generation)",
        ] }),
        Migration(version: 14, name: "bulk export jobs' last sign of life, so that a job whose instance went away is reported failed", statements: { _ in [
            "ALTER TABLE export_jobs ADD COLUMN heartbeat_at BIGINT NOT NULL DEFAULT 0",
            // A job in progress at the upgrade is as alive as it was at its kick-off.
            "UPDATE export_jobs SET heartbeat_at = created_at",
        ] }),
        Migration(
            version: 15, name: "FHIR date index: an Observation's effectivePeriod.start, and instants past the year 9999 in text order",
            statements: { _ in [] }, backfill: reindexClinicalDates),
    ]

    /// Rows the `date` index had no date for or wrote out of text order, indexed as writes are now:
    /// an Observation with only an `effectivePeriod` (its start was not indexed), and instants past
    /// 9999-12-31T23:59:59Z (written as year 10000, which sorts before 2026; ``FHIRDate/sortable(seconds:)``).
    /// Read leniently: a value that is not a FHIR date leaves the row as it was.
    @Sendable static func reindexClinicalDates(_ db: any SQLDatabase) async throws {
        let rows = try await db.raw("""
            SELECT id, recorded_at, content FROM clinical_resources
            WHERE (resource_type = 'Observation' AND recorded_at = '') OR recorded_at LIKE '10000-%'
            """).all()
        for row in rows {
            let id = try row.decode(column: "id", as: String.self), old = try row.decode(column: "recorded_at", as: String.self)
            let date: String?
            if old.isEmpty {
                let content = try? JSONValue.parse(Array(try row.decode(column: "content", as: String.self).utf8))
                date = content?["effectivePeriod"]?["start"]?.stringValue.flatMap(FHIRDate.interval)?.0
            } else {
                // 10000-01-01Thh:mm:ssZ: no FHIR date reaches further.
                let time = old.dropFirst("10000-01-01T".count).prefix(8).split(separator: ":").compactMap { Int64($0) }
                date = old.hasPrefix("10000-01-01T") && time.count == 3
                    ? FHIRDate.sortable(seconds: FHIRDate.days(year: 10_000, month: 1, day: 1) * 86_400 + time[0] * 3600 + time[1] * 60 + time[2])
                    : nil
            }
            guard let date else { continue }
            try await db.raw("UPDATE clinical_resources SET recorded_at = \(bind: date) WHERE id = \(bind: id)").run()
        }
    }

    /// The audit log moves from a row per event to a row per credential and write (see
    /// ``AuditStore``); each old event becomes a segment of one, its id + `0000`.
    static func auditSegments(_ database: Database) -> [String] {
        let event = "method, route, path, required_scope, decision, status, trace_id"
        let events = database.dialect == .sqlite
            ? "json_array(json_array(at, \(event)))"
            : "json_build_array(json_build_array(at, \(event)))::text"
        return [
            """
            CREATE TABLE audit_segments (id TEXT PRIMARY KEY, first_at BIGINT NOT NULL, last_at BIGINT NOT NULL, organization_id TEXT,
              app_id TEXT, key_id TEXT, allowed INTEGER NOT NULL, denied INTEGER NOT NULL, events TEXT NOT NULL)
            """,
            "CREATE INDEX audit_segments_org ON audit_segments (organization_id, id)",
            "CREATE INDEX audit_segments_app ON audit_segments (app_id, id)",
            """
            INSERT INTO audit_segments (id, first_at, last_at, organization_id, app_id, key_id, allowed, denied, events)
            SELECT id, at, at, organization_id, app_id, key_id, CASE WHEN decision = 'allowed' THEN 1 ELSE 0 END,
              CASE WHEN decision = 'allowed' THEN 0 ELSE 1 END, \(events) FROM audit_events
            """,
            "DROP TABLE audit_events",
        ]
    }

    static var latest: Int { all.map(\.version).max() ?? 0 }

    static func run(on database: Database) async throws {
        // An up-to-date schema (every start but the first after an upgrade) takes no lock: many
        // instances starting at once would otherwise queue on it, one migration at a time each.
        if try await schemaTableExists(database), try await schemaVersion(database.sql) == latest { return }
        // Every pending migration in one transaction, under the lock: instances starting together
        // on one file take SQLite's write lock once each rather than once per migration (eight at
        // once on an empty file, 15 transactions each, let one wait past the busy timeout), and
        // PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against itself (two at once can
        // fail on pg_type's unique index). A migration that fails leaves the schema as it was.
        try await database.transaction { db in
            try await lock(db, database)
            try await db.raw("CREATE TABLE IF NOT EXISTS caregate_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)").run()
            let current = try await schemaVersion(db)
            if current > latest { throw DatabaseError.schemaTooNew(database: current, supported: latest) }
            for migration in all where migration.version > current {
                for statement in migration.statements(database) {
                    try await db.raw("\(unsafeRaw: statement)").run()
                }
                try await migration.backfill?(db)
                try await db.raw("INSERT INTO caregate_schema (version, name, applied_at) VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Clock.millis()))").run()
                database.logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
        // A schema newer than this build is refused even when every known migration ran.
        let current = try await schemaVersion(database.sql)
        if current > latest { throw DatabaseError.schemaTooNew(database: current, supported: latest) }
    }

    /// Serialises migrating instances on PostgreSQL until the transaction ends (SQLite's
    /// `BEGIN IMMEDIATE` already does).
    private static func lock(_ db: any SQLDatabase, _ database: Database) async throws {
        if database.dialect == .postgres {
            try await db.raw("SELECT pg_advisory_xact_lock(4242001)").run()
        }
    }

    private static func schemaTableExists(_ database: Database) async throws -> Bool {
        let query: SQLQueryString = database.dialect == .postgres
            ? "SELECT CASE WHEN to_regclass('caregate_schema') IS NULL THEN 0 ELSE 1 END AS e"
            : "SELECT COUNT(*) AS e FROM sqlite_master WHERE type = 'table' AND name = 'caregate_schema'"
        return try await database.sql.raw(query).first(decodingColumn: "e", as: Int.self) == 1
    }

    /// The highest migration applied; 0 on an empty schema.
    private static func schemaVersion(_ db: any SQLDatabase) async throws -> Int {
        let found = try await db.raw("SELECT MAX(version) AS v FROM caregate_schema").first(decodingColumn: "v", as: Int?.self)
        return (found ?? nil) ?? 0
    }

    static func schemaV2(_ database: Database) -> [String] {
        [
            """
            CREATE TABLE oauth_clients (client_id TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps(id), secret_hash TEXT,
              credential_type TEXT NOT NULL, grant_types TEXT NOT NULL, scopes TEXT NOT NULL, organization_id TEXT,
              created_at BIGINT NOT NULL, revoked_at BIGINT)
            """,
            "CREATE INDEX oauth_clients_app ON oauth_clients (app_id)",
            """
            CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, algorithm TEXT NOT NULL, private_pem TEXT NOT NULL,
              created_at BIGINT NOT NULL, retired_at BIGINT)
            """,
            "CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
        ]
    }

    static func schemaV1(_ database: Database) -> [String] {
        [
            // Settings shared by every instance (server secret, change generation).
            "CREATE TABLE caregate_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            // Bumped by every grant-chain change; every instance polls it to drop cached credentials.
            "CREATE TABLE caregate_changes (id BIGINT PRIMARY KEY, generation BIGINT NOT NULL)",
            "INSERT INTO caregate_changes (id, generation) VALUES (1, 0)",
            // Grant chain.
            "CREATE TABLE developers (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE organizations (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL)",
            """
            CREATE TABLE access_tokens (token_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL, kind TEXT NOT NULL,
              subject_id TEXT NOT NULL, created_at BIGINT NOT NULL)
            """,
            """
            CREATE TABLE apps (id TEXT PRIMARY KEY, developer_id TEXT NOT NULL REFERENCES developers(id), slug TEXT NOT NULL UNIQUE,
              name TEXT NOT NULL, surface TEXT NOT NULL, live_version_id TEXT, created_at BIGINT NOT NULL)
            """,
            "CREATE TABLE app_versions (id TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps(id), scopes TEXT NOT NULL, created_at BIGINT NOT NULL)",
            """
            CREATE TABLE installations (id TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps(id),
              organization_id TEXT NOT NULL REFERENCES organizations(id), approved_version_id TEXT NOT NULL,
              approved_scopes TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE UNIQUE INDEX installations_app_org ON installations (app_id, organization_id)",
            """
            CREATE TABLE api_keys (id TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps(id), lookup_id TEXT NOT NULL UNIQUE,
              key_hash TEXT NOT NULL, prefix TEXT NOT NULL, environment TEXT NOT NULL, name TEXT NOT NULL, display TEXT NOT NULL,
              scopes TEXT, expires_at BIGINT, revoked_at BIGINT, replaced_by TEXT, last_used_at BIGINT, created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX api_keys_app ON api_keys (app_id)",
            // Audit.
            """
            CREATE TABLE audit_events (id TEXT PRIMARY KEY, at BIGINT NOT NULL, organization_id TEXT, app_id TEXT, key_id TEXT,
              method TEXT NOT NULL, route TEXT, path TEXT NOT NULL, required_scope TEXT, decision TEXT NOT NULL, status INTEGER NOT NULL,
              trace_id TEXT NOT NULL)
            """,
            "CREATE INDEX audit_events_org ON audit_events (organization_id, id)",
            "CREATE INDEX audit_events_app ON audit_events (app_id, id)",
            // Clinic data: every table carries the clinic, every query filters on it.
            """
            CREATE TABLE patients (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
              date_of_birth TEXT NOT NULL, email TEXT, phone TEXT, gender TEXT, created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX patients_org ON patients (organization_id, id)",
            """
            CREATE TABLE providers (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
              specialty TEXT NOT NULL, npi TEXT NOT NULL, email TEXT NOT NULL)
            """,
            "CREATE INDEX providers_org ON providers (organization_id, id)",
            """
            CREATE TABLE facilities (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL, address TEXT NOT NULL,
              city TEXT NOT NULL, state TEXT NOT NULL, phone TEXT NOT NULL)
            """,
            "CREATE INDEX facilities_org ON facilities (organization_id, id)",
            """
            CREATE TABLE appointments (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, patient_id TEXT NOT NULL, provider_id TEXT NOT NULL,
              facility_id TEXT NOT NULL, start_at TEXT NOT NULL, end_at TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL)
            """,
            "CREATE INDEX appointments_org ON appointments (organization_id, id)",
            """
            CREATE TABLE bills (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, patient_id TEXT NOT NULL, provider_id TEXT NOT NULL,
              appointment_id TEXT, service_date TEXT NOT NULL, status TEXT NOT NULL, total_cents BIGINT NOT NULL)
            """,
            "CREATE INDEX bills_org ON bills (organization_id, id)",
            """
            CREATE TABLE bill_line_items (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, bill_id TEXT NOT NULL, code TEXT NOT NULL,
              description TEXT NOT NULL, units BIGINT NOT NULL, amount_cents BIGINT NOT NULL, position BIGINT NOT NULL)
            """,
            "CREATE INDEX bill_line_items_bill ON bill_line_items (organization_id, bill_id)",
            """
            CREATE TABLE bill_coding_groups (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, bill_id TEXT NOT NULL,
              code_system TEXT NOT NULL, codes TEXT NOT NULL, position BIGINT NOT NULL)
            """,
            "CREATE INDEX bill_coding_groups_bill ON bill_coding_groups (organization_id, bill_id)",
            """
            CREATE TABLE claims (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, patient_id TEXT NOT NULL, bill_id TEXT NOT NULL,
              status TEXT NOT NULL, submitted_on TEXT NOT NULL, total_cents BIGINT NOT NULL, payer_name TEXT NOT NULL,
              plan_name TEXT NOT NULL, member_id TEXT NOT NULL, group_number TEXT NOT NULL)
            """,
            "CREATE INDEX claims_org ON claims (organization_id, id)",
            """
            CREATE TABLE notes (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, patient_id TEXT NOT NULL, provider_id TEXT NOT NULL,
              visit_date TEXT NOT NULL, title TEXT NOT NULL, subjective TEXT NOT NULL, objective TEXT NOT NULL,
              assessment TEXT NOT NULL, plan TEXT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE INDEX notes_org ON notes (organization_id, id)",
            """
            CREATE TABLE note_impressions (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, note_id TEXT NOT NULL, code TEXT NOT NULL,
              description TEXT NOT NULL, position BIGINT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE INDEX note_impressions_note ON note_impressions (organization_id, note_id)",
            """
            CREATE TABLE note_images (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, note_id TEXT NOT NULL, provider_id TEXT NOT NULL,
              content_type TEXT NOT NULL, size BIGINT NOT NULL, data \(database.binaryType) NOT NULL, created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX note_images_note ON note_images (organization_id, note_id)",
            """
            CREATE TABLE tasks (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
              status TEXT NOT NULL, note_id TEXT, provider_id TEXT, patient_id TEXT, due_date TEXT, created_at BIGINT NOT NULL,
              updated_at BIGINT NOT NULL)
            """,
            "CREATE INDEX tasks_org ON tasks (organization_id, id)",
            """
            CREATE TABLE emails (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, patient_id TEXT, direction TEXT NOT NULL,
              from_address TEXT NOT NULL, to_address TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
              created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX emails_org ON emails (organization_id, id)",
            """
            CREATE TABLE email_outbox (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, email_id TEXT NOT NULL, status TEXT NOT NULL,
              attempts BIGINT NOT NULL, created_at BIGINT NOT NULL, sent_at BIGINT)
            """,
            """
            CREATE TABLE phone_numbers (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, number TEXT NOT NULL, label TEXT NOT NULL,
              kind TEXT NOT NULL)
            """,
            "CREATE INDEX phone_numbers_org ON phone_numbers (organization_id, id)",
            """
            CREATE TABLE products (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL, sku TEXT NOT NULL,
              unit TEXT NOT NULL, price_cents BIGINT NOT NULL, active BOOLEAN NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE UNIQUE INDEX products_sku ON products (organization_id, sku)",
            """
            CREATE TABLE stock_levels (organization_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity BIGINT NOT NULL,
              updated_at BIGINT NOT NULL, PRIMARY KEY (organization_id, product_id))
            """,
            """
            CREATE TABLE inventory_changes (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, reason TEXT NOT NULL, note TEXT NOT NULL,
              created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX inventory_changes_org ON inventory_changes (organization_id, id)",
            """
            CREATE TABLE inventory_change_lines (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, change_id TEXT NOT NULL,
              product_id TEXT NOT NULL, quantity_delta BIGINT NOT NULL, position BIGINT NOT NULL)
            """,
            "CREATE INDEX inventory_change_lines_change ON inventory_change_lines (organization_id, change_id)",
        ]
    }
}
