@testable import CaregateServer
import CaregateStore
import Foundation
import Logging
import SQLKit
import Testing

/// The audit log's storage: segments per app and clinic, read back as single events.
@Suite("Audit store")
struct AuditStoreTests {
    static func event(_ organization: String, app: String?, key: String?, at: Int64, denied: Bool, trace: String) -> AuditEvent {
        AuditEvent(
            at: at, organizationID: organization, appID: app, keyID: key, method: "GET", route: denied ? "GET /v3/bills" : "GET /v3/patients",
            path: denied ? "/v3/bills" : "/v3/patients/pat_\(trace.prefix(8))", requiredScope: denied ? "read:bills" : "read:patients",
            decision: denied ? "denied" : "allowed", status: denied ? 403 : 200, traceID: trace)
    }

    /// Every event of a clinic's app, page by page.
    static func all(_ store: AuditStore, organization: String, app: String, limit: Int) async throws -> [AuditEvent] {
        var read: [AuditEvent] = []
        var cursor: String?
        repeat {
            let page = try await store.page(organizationID: organization, appID: app, decision: nil, limit: limit, cursor: cursor)
            read += page.events
            cursor = page.next
        } while cursor != nil
        return read
    }

    @Test("every event comes back once, newest first, across credentials and segment boundaries; filters and cursors hold", arguments: Backend.allCases)
    func pagesEveryEvent(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let store = AuditStore(database: s.server.database)
            // Ids unique to this test: the PostgreSQL database is shared with other tests.
            let clinic = Identifier.random("org"), otherClinic = Identifier.random("org")
            let appA = Identifier.random("app"), appB = Identifier.random("app")
            var written: [AuditEvent] = []
            let start = Clock.millis()
            // Credential A's events (more than two segments) interleaved with B's, in one write,
            // plus an unauthenticated refusal (no app, no key).
            for i in 0..<2_600 {
                let useB = i % 4 == 3
                written.append(Self.event(
                    useB ? otherClinic : clinic, app: useB ? appB : appA, key: useB ? "key_b" : "key_a", at: start + Int64(i / 10), denied: i % 3 == 0,
                    trace: UUID().uuidString.lowercased()))
            }
            written.append(Self.event(clinic, app: nil, key: nil, at: start + 260, denied: true, trace: UUID().uuidString.lowercased()))
            try await store.insert(Array(written[..<2_000]))
            try await store.insert(Array(written[2_000...]))

            func all(organization: String?, app: String?, decision: String?, limit: Int) async throws -> [AuditEvent] {
                var events: [AuditEvent] = []
                var cursor: String?
                repeat {
                    let page = try await store.page(organizationID: organization, appID: app, decision: decision, limit: limit, cursor: cursor)
                    #expect(page.events.count <= limit)
                    events += page.events
                    cursor = page.next
                } while cursor != nil
                return events
            }
            for (limit, decision) in [(200, nil), (1_000, nil), (37, "denied"), (500, "allowed")] as [(Int, String?)] {
                let read = try await all(organization: clinic, app: nil, decision: decision, limit: limit)
                let expected = written.filter { $0.organizationID == clinic && (decision == nil || $0.decision == decision) }
                #expect(read.count == expected.count, "limit \(limit), decision \(decision ?? "any")")
                #expect(Set(read.map(\.traceID)) == Set(expected.map(\.traceID)))
                #expect(Set(read.map(\.id)).count == read.count)
                #expect(zip(read, read.dropFirst()).allSatisfy { $0.id > $1.id }, "newest first, by id")
                #expect(read.allSatisfy { AuditStore.isEventID($0.id) })
            }
            // Each event keeps its own fields; the credential's come from its segment.
            let one = try #require(try await all(organization: clinic, app: nil, decision: nil, limit: 1_000).first { $0.traceID == written[5].traceID })
            #expect(one.at == written[5].at && one.path == written[5].path && one.status == written[5].status && one.keyID == "key_a")
            #expect(one.requiredScope == written[5].requiredScope && one.route == written[5].route && one.appID == appA)
            let byApp = try await all(organization: nil, app: appB, decision: nil, limit: 200)
            #expect(byApp.count == written.count { $0.appID == appB })
            #expect(byApp.allSatisfy { $0.organizationID == otherClinic && $0.keyID == "key_b" })
            let unauthenticated = try await all(organization: clinic, app: nil, decision: "denied", limit: 5).filter { $0.appID == nil }
            #expect(unauthenticated.map(\.traceID) == [written.last!.traceID])
            // A cursor that is not one of this list's ids is refused.
            await #expect(throws: StoreError.self) {
                _ = try await store.page(organizationID: clinic, appID: nil, decision: nil, limit: 5, cursor: "aud_xyz")
            }
        }
    }

    @Test("many keys of one app in one clinic share segments (one row per 1,000 events, not per key); each event keeps its key", arguments: Backend.allCases)
    func manyKeysShareSegments(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let store = AuditStore(database: s.server.database)
            let clinic = Identifier.random("org"), app = Identifier.random("app")
            let start = Clock.millis()
            // 2,500 requests of 500 different keys, and then 10 of one key alone.
            let mixed = (0..<2_500).map { i in
                Self.event(clinic, app: app, key: "key_\(i % 500)", at: start + Int64(i / 100), denied: i % 7 == 0, trace: UUID().uuidString.lowercased())
            }
            let single = (0..<10).map { i in Self.event(clinic, app: app, key: "key_alone", at: start + 30, denied: false, trace: UUID().uuidString.lowercased()) }
            try await store.insert(mixed)
            try await store.insert(single)
            let rows = try await s.server.database.sql.raw("SELECT key_id FROM audit_segments WHERE app_id = \(bind: app)").all()
            #expect(rows.count == 4, "3 segments of the 2,500 events, 1 of the 10")
            #expect(try rows.compactMap { try $0.decode(column: "key_id", as: String?.self) } == ["key_alone"], "only a one-key segment names its key")
            let read = try await Self.all(store, organization: clinic, app: app, limit: 400)
            let keys = Dictionary(uniqueKeysWithValues: (mixed + single).map { ($0.traceID, $0.keyID) })
            #expect(read.count == 2_510 && read.allSatisfy { keys[$0.traceID] == $0.keyID })
            // What the console shows per key: when each was used last, and what it called.
            let usage = try await store.usage(appID: app, since: start - 1)
            #expect(usage.count == 501 && usage["key_alone"] != nil && usage["key_499"] != nil)
        }
    }

    @Test("events that name their clinic, app and key by bits read back as those named by strings, in shared segments; other ids stay strings", arguments: Backend.allCases)
    func eventsNamedByIDs(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let store = AuditStore(database: s.server.database)
            let clinic = Identifier.random("org"), app = Identifier.random("app")
            let keys = (0..<3).map { _ in Identifier.random("key") }
            let start = Clock.millis()
            #expect(AuditEvent.IDs(organizationID: clinic, appID: app, keyID: "cli_chosen-by-a-clinic") == nil)
            #expect(AuditEvent.IDs(organizationID: clinic.uppercased(), appID: app, keyID: keys[0]) == nil, "upper-case hex is not what Identifier makes")
            #expect(CompactID(keys[1])?.text == keys[1] && CompactID("key_" + String(repeating: "g", count: 32)) == nil)
            var traces: [String: String?] = [:]
            // 30 events by bits over three keys, then 5 named by a subject (a client id of a
            // clinic's choosing) under the same clinic and app, then 4 of one key alone.
            var mixed: [AuditEvent] = []
            for i in 0..<35 {
                let trace = UUID().uuidString.lowercased()
                var event = Self.event(clinic, app: app, key: nil, at: start + Int64(i), denied: i % 4 == 0, trace: trace)
                if i < 30 {
                    event.note(try #require(AuditEvent.IDs(organizationID: clinic, appID: app, keyID: keys[i % 3])))
                    #expect(event.keyID == keys[i % 3] && event.organizationID == clinic && event.appID == app && event.subject?.auditedKeyID == keys[i % 3])
                    traces[trace] = keys[i % 3]
                } else {
                    event.subject = AuditEvent.Subject(organizationID: clinic, appID: app, keyID: "cli_chosen-by-a-clinic")
                    traces[trace] = "cli_chosen-by-a-clinic"
                }
                mixed.append(event)
            }
            let alone = try (0..<4).map { i in
                var event = Self.event(clinic, app: app, key: nil, at: start + 40 + Int64(i), denied: false, trace: UUID().uuidString.lowercased())
                event.note(try #require(AuditEvent.IDs(organizationID: clinic, appID: app, keyID: keys[0])))
                traces[event.traceID] = keys[0]
                return event
            }
            try await store.insert(mixed)
            try await store.insert(alone)
            let read = try await Self.all(store, organization: clinic, app: app, limit: 7)
            #expect(read.count == 39)
            #expect(read.allSatisfy { traces[$0.traceID] == .some($0.keyID) && $0.organizationID == clinic && $0.appID == app })
            #expect(Set(read.map(\.traceID)) == Set(traces.keys))
            // By bits and by strings, the same clinic and app: two segments for the first write, and
            // only the segment of one key names it.
            let rows = try await s.server.database.sql.raw("SELECT key_id FROM audit_segments WHERE app_id = \(bind: app) ORDER BY first_at").all()
            #expect(try rows.map { try $0.decode(column: "key_id", as: String?.self) } == [nil, "cli_chosen-by-a-clinic", keys[0]])
        }
    }

    @Test("the audit writer stores every recorded event once, in order, across flushes that reuse its buffers")
    func writerKeepsEveryEventAcrossFlushes() async throws {
        try await withServer(.sqlite) { s in
            let store = AuditStore(database: s.server.database)
            let logger = quietLogger
            let writer = AuditWriter(store: store, logger: logger)
            let clinic = Identifier.random("org"), app = Identifier.random("app")
            let start = Clock.millis()
            var traces: [String] = []
            // Four flushes, the third with nothing to write: each swaps in the array the one before wrote.
            for round in 0..<4 {
                for i in 0..<(round == 2 ? 0 : 700) {
                    let trace = UUID().uuidString.lowercased()
                    traces.append(trace)
                    writer.record(Self.event(clinic, app: app, key: "key_w", at: start + Int64(traces.count), denied: i % 5 == 0, trace: trace))
                }
                await writer.flush()
            }
            let read = try await Self.all(store, organization: clinic, app: app, limit: 500)
            #expect(read.count == 2_100)
            #expect(read.sorted { $0.at < $1.at }.map(\.traceID) == traces)
        }
    }

    @Test("trace ids of any text and paths read from their route come back exactly as recorded")
    func traceIDsAndPathsRoundTrip() async throws {
        try await withServer(.sqlite) { s in
            let store = AuditStore(database: s.server.database)
            let clinic = Identifier.random("org"), app = Identifier.random("app")
            // 36 bytes (held inline): with characters JSON must escape, of multi-byte text, a
            // lowercase UUID, with a control character; and shorter and longer ones (held as strings).
            let traces = [
                #"0123456789"abcdef\ghij\u0001klmnopqr"#, String(repeating: "é", count: 18), UUID().uuidString.lowercased(), "short",
                String(repeating: "x", count: 37), "line\nbreak" + String(repeating: "-", count: 26),
            ]
            #expect([0, 1, 2, 5].allSatisfy { traces[$0].utf8.count == 36 })
            // Named as catalogs name routes: the method, then the path template.
            let route = AuditEvent.Route(template: "GET /v3/patients", requiredScope: "read:patients")
            var written: [AuditEvent] = []
            // Times and statuses of one digit and of many, as written digit by digit.
            let times: [Int64] = [1, 9, 10, 1_700_000_000_000, Clock.millis(), 99_999_999_999_999]
            let statuses = [0, 7, 200, 404, 599, 10]
            for (i, trace) in traces.enumerated() {
                var event = AuditEvent(
                    at: times[i], subject: .init(organizationID: clinic, appID: app, keyID: "key_t"), method: "GET", decided: route,
                    path: i % 2 == 0 ? "/v3/patients" : "/v3/patients?limit=\(i)", decision: "allowed", status: statuses[i], traceID: trace)
                event.sharePathWithRoute()
                #expect(event.traceID == trace)
                written.append(event)
            }
            #expect(written[0].path == "/v3/patients" && written[1].path == "/v3/patients?limit=1")
            // A path that is the route's own keeps no string of its own; any other path is kept.
            #expect(written[0].sharesPathWithRoute && !written[1].sharesPathWithRoute)
            #expect(route.naming("write:patients").templatePath == "/v3/patients")
            try await store.insert(written)
            let read = try await store.page(organizationID: clinic, appID: app, decision: nil, limit: 100, cursor: nil).events
            #expect(read.map(\.traceID).sorted() == traces.sorted())
            #expect(Set(read.map(\.path)) == Set(written.map(\.path)))
            #expect(Set(read.map { "\($0.traceID) \($0.at) \($0.status)" }) == Set(written.map { "\($0.traceID) \($0.at) \($0.status)" }))
        }
    }

    @Test("a segment names what its events share once (second format), and segments of the first format read the same", arguments: Backend.allCases)
    func bothFormats(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let store = AuditStore(database: s.server.database)
            let clinic = Identifier.random("org"), app = Identifier.random("app")
            let me = AuditEvent.Route(template: "GET /v3/marketplace/me", requiredScope: nil)
            let patient = AuditEvent.Route(template: "GET /v3/patients/{id}", requiredScope: "read:patients")
            let start = Clock.millis()
            var written: [AuditEvent] = []
            // Routes shared by identity and one refused for scope (a route object of its own),
            // paths of their route and not, times out of order, and a key per event.
            for i in 0..<40 {
                let route = i % 3 == 0 ? patient : (i % 7 == 0 ? patient.naming("read:bills") : me)
                var event = AuditEvent(
                    at: start + Int64(i % 5 == 0 ? -i : i), subject: .init(organizationID: clinic, appID: app, keyID: "key_\(i % 2)"),
                    method: "GET", decided: route, path: route === me ? "/v3/marketplace/me" : "/v3/patients/pat_\(i)",
                    decision: route.requiredScope == "read:bills" ? "denied" : "allowed", status: route.requiredScope == "read:bills" ? 403 : 200,
                    traceID: UUID().uuidString.lowercased())
                event.sharePathWithRoute()
                written.append(event)
            }
            try await store.insert(written)
            let rows = try await s.server.database.sql.raw(
                "SELECT id, events, allowed, denied FROM audit_segments WHERE app_id = \(bind: app)").all()
            #expect(rows.count == 1)
            let text = try #require(rows.first).decode(column: "events", as: String.self)
            #expect(text.hasPrefix(#"{"v":2,"at":"#), "\(text.prefix(80))")
            // `/me` is named once, and its events carry no path of their own.
            #expect(text.components(separatedBy: "GET /v3/marketplace/me").count == 2)
            #expect(text.contains(",null,200,"))
            #expect(try rows.first!.decode(column: "allowed", as: Int.self) == written.count { $0.decision == "allowed" })

            func fields(_ e: AuditEvent) -> String {
                "\(e.at) \(e.method) \(e.route ?? "-") \(e.path) \(e.requiredScope ?? "-") \(e.decision) \(e.status) \(e.traceID) \(e.keyID ?? "-")"
            }
            let read = try await Self.all(store, organization: clinic, app: app, limit: 100)
            #expect(read.map(fields) == written.reversed().map(fields))

            // The same events as the first format wrote them read the same.
            func json(_ value: String?) -> Any { value ?? NSNull() }
            let first: [[Any]] = written.map { e in
                [e.at, e.method, json(e.route), e.path, json(e.requiredScope), e.decision, e.status, e.traceID, NSNull(), e.count, json(e.keyID)]
            }
            let old = String(decoding: try JSONSerialization.data(withJSONObject: first), as: UTF8.self)
            let otherApp = Identifier.random("app")
            try await s.server.database.sql.raw("""
                INSERT INTO audit_segments (id, first_at, last_at, organization_id, app_id, key_id, allowed, denied, events)
                VALUES (\(bind: Identifier.timeOrdered("aud", millis: start)), \(bind: start), \(bind: start), \(bind: clinic), \(bind: otherApp),
                NULL, 0, 0, \(bind: old))
                """).run()
            let readOld = try await Self.all(store, organization: clinic, app: otherApp, limit: 100)
            #expect(readOld.map(fields) == written.reversed().map(fields))
            #expect(old.utf8.count > text.utf8.count * 3 / 2, "first format \(old.utf8.count) bytes, second \(text.utf8.count)")
        }
    }

    @Test("an audit log written a row per event (schema 4) is moved into segments, ids kept")
    func migratesRowsPerEvent() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("old.sqlite").path
        let logger = quietLogger
        // A schema-4 database: the current schema with migrations 5 and later undone and two old rows.
        let current = try await Database.open(.sqlite(path: path), logger: logger)
        let old = "aud_0019a2b3c4d5e0123456700000001"
        // One transaction, so one connection: schema changes made on one pooled SQLite
        // connection and read on another fail now and then (SQLITE_SCHEMA).
        do {
            try await current.transaction { db in
                for statement in undoSMARTLaunchSchema { try await db.raw("\(unsafeRaw: statement)").run() }
                try await db.raw("DROP TABLE audit_segments").run()
                try await db.raw("DROP TABLE web_sessions").run()
                try await db.raw("DROP TABLE scope_reviews").run()
                try await db.raw("DROP TABLE clinic_users").run()
                for column in ["organizations DROP COLUMN environment", "access_tokens DROP COLUMN expires_at", "access_tokens DROP COLUMN revoked_at"] {
                    try await db.raw("ALTER TABLE \(unsafeRaw: column)").run()
                }
                try await db.raw("DELETE FROM caregate_schema WHERE version >= 5").run()
                try await db.raw("""
                    CREATE TABLE audit_events (id TEXT PRIMARY KEY, at BIGINT NOT NULL, organization_id TEXT, app_id TEXT, key_id TEXT,
                      method TEXT NOT NULL, route TEXT, path TEXT NOT NULL, required_scope TEXT, decision TEXT NOT NULL, status INTEGER NOT NULL,
                      trace_id TEXT NOT NULL)
                    """).run()
                try await db.raw("""
                    INSERT INTO audit_events VALUES
                      (\(bind: old), 1700000000000, 'org_1', 'app_1', 'key_1', 'GET', 'GET /v3/bills', '/v3/bills', 'read:bills', 'denied', 403, 't-1'),
                      ('aud_0019a2b3c4d5f0123456700000002', 1700000000001, NULL, NULL, NULL, 'GET', NULL, '/v3/x', NULL, 'denied', 401, 't-2')
                    """).run()
            }
        } catch {
            await current.shutdown()
            throw error
        }
        await current.shutdown()

        let migrated = try await Database.open(.sqlite(path: path), logger: logger)
        let page = try await AuditStore(database: migrated).page(organizationID: "org_1", appID: nil, decision: "denied", limit: 10, cursor: nil)
        let all = try await AuditStore(database: migrated).count()
        await migrated.shutdown()
        #expect(all == 2)
        let event = try #require(page.events.first)
        #expect(page.events.count == 1)
        #expect(event.id == old + "0000")
        #expect(event.at == 1_700_000_000_000 && event.appID == "app_1" && event.keyID == "key_1" && event.route == "GET /v3/bills")
        #expect(event.requiredScope == "read:bills" && event.status == 403 && event.traceID == "t-1" && event.decision == "denied")
    }
}
