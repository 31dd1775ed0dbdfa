import CaregateServer
import CaregateStore
import Foundation
import Testing

/// The audit log is kept for `auditRetentionDays` and pruned in the background; operators who
/// must keep more stream it out with `GET /manage/audit/export`.
@Suite struct AuditRetentionTests {
    /// An app id of its own per test: on PostgreSQL the tests share one database.
    static func appID() -> String { "app_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased() }

    static func events(_ count: Int, at: Int64, organization: String, app: String) -> [AuditEvent] {
        (0..<count).map { (i: Int) -> AuditEvent in
            let denied = i % 3 == 0
            return AuditEvent(
                at: at + Int64(i), organizationID: organization, appID: app, keyID: "key_1", method: "GET", route: "/v3/patients",
                path: "/v3/patients", requiredScope: "read:patients", decision: denied ? "denied" : "allowed", status: denied ? 403 : 200,
                traceID: "trace-\(at)-\(i)")
        }
    }

    static let day: Int64 = 86_400_000
    static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1_000) }

    @Test("events older than the retention are deleted by the background pruning, newer ones stay", arguments: Backend.allCases)
    func retention(_ backend: Backend) async throws {
        try await withServer(backend, configure: { $0.auditRetentionDays = 30; $0.auditPruneInterval = .milliseconds(100) }) { s in
            let store = AuditStore(database: s.server.database)
            let clinic = try await s.createClinic(patients: 0)
            let app = Self.appID()
            // 2,500 events 31 days old (three segments), 40 from yesterday.
            try await store.insert(Self.events(2_500, at: Self.now - 31 * Self.day, organization: clinic.id, app: app))
            try await store.insert(Self.events(40, at: Self.now - Self.day, organization: clinic.id, app: app))
            func kept() async throws -> [AuditEvent] {
                var events: [AuditEvent] = []
                try await store.export(organizationID: clinic.id, appID: app, since: nil) { events += $0 }
                return events
            }
            let deadline = ContinuousClock.now + .seconds(20)
            var events = try await kept()
            while events.count > 40, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                events = try await kept()
            }
            #expect(events.count == 40)
            #expect(events.allSatisfy { $0.at > Self.now - 2 * Self.day })
        }
    }

    static func export(_ s: TestServer, token: String, query: String = "") async throws -> (status: Int, contentType: String?, lines: [[String: Any]]) {
        let reply = try await s.request("GET", "/manage/audit/export" + query, token: token)
        let lines = reply.text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == reply.text.split(separator: "\n").count, "every line is one JSON object")
        return (reply.status, reply.header("Content-Type"), lines)
    }

    @Test("the export streams every event as NDJSON, oldest first; a clinic admin gets only its clinic's; since filters by day", arguments: Backend.allCases)
    func export(_ backend: Backend) async throws {
        try await withServer(backend, configure: { $0.auditRetentionDays = 0 }) { s in
            let a = try await s.createClinic(patients: 0)
            let b = try await s.createClinic(patients: 0)
            let store = AuditStore(database: s.server.database)
            let app = Self.appID()
            try await store.insert(Self.events(2_300, at: Self.now - 10 * Self.day, organization: a.id, app: app))
            try await store.insert(Self.events(700, at: Self.now - 5 * Self.day, organization: b.id, app: app))
            try await store.insert(Self.events(5, at: Self.now - 1_000, organization: a.id, app: app))

            let all = try await Self.export(s, token: s.operatorToken, query: "?appId=\(app)")
            #expect(all.status == 200 && all.contentType == "application/x-ndjson")
            #expect(all.lines.count == 3_005)
            let times = all.lines.map { $0["at"] as? String ?? "" }
            #expect(times == times.sorted(), "oldest first")
            #expect(Set(all.lines.compactMap { $0["traceId"] as? String }).count == 3_005)
            #expect(all.lines.allSatisfy { $0["decision"] as? String != nil && $0["status"] as? Int != nil && ($0["id"] as? String)?.hasPrefix("aud_") == true })

            let own = try await Self.export(s, token: a.adminToken)
            #expect(own.status == 200 && own.lines.count == 2_305)
            #expect(own.lines.allSatisfy { $0["organizationId"] as? String == a.id })
            let other = try await s.request("GET", "/manage/audit/export?organizationId=\(b.id)", token: a.adminToken)
            #expect(other.status == 403)

            let since = ISO8601DateFormatter.string(
                from: Date(timeIntervalSince1970: Double(Self.now - 6 * Self.day) / 1_000), timeZone: TimeZone(identifier: "UTC")!,
                formatOptions: [.withFullDate])
            let recent = try await Self.export(s, token: s.operatorToken, query: "?since=\(since)&appId=\(app)")
            #expect(recent.lines.count == 705)
            let developer = try await s.createDeveloper()
            #expect(try await s.request("GET", "/manage/audit/export", token: developer.token).status == 403)
        }
    }
}
