import CaregateServer
import CaregateStore
import Crypto
import Foundation
import Logging
import Testing

/// Partner self-service and the approval workflow (seed 003): on the platform a developer's
/// self-service scopes take effect at once; any other scope only once an operator approves
/// the app's request for it in the review queue (approvals and refusals are audited).
@Suite struct ScopeReviewTests {
    @Test("cms.pipeline.read (self-service) works at once; identity.merge is refused until the operator approves it, then works; a refusal keeps it refused with its reason", arguments: Backend.allCases)
    func queue(_ backend: Backend) async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(backend, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)] }) { s in
            let dev = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 0)
            let app = try await s.createApp(developer: dev.token, scopes: ["cms.pipeline.read", "identity.merge"], surface: "platform", approveReviews: false)
            _ = try await s.install(app: app.id, clinic: clinic)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: ["cms.pipeline.read"])
            #expect(try await s.status("GET", "/cms/partners/pipeline", key: key.key, clinic: clinic) == 200, "self-service: at once")

            let client = try await OAuthTests.client(
                s, dev: dev.token, app: app.id, scopes: ["identity.merge"], extra: ["credentialType": "service_key", "organizationId": clinic.id])
            let issued = try await OAuthTests.form(s, "grant_type=client_credentials&scope=identity.merge", basic: client)
            try expectStatus(issued, 200)
            let token = issued.json!.string("access_token")
            let refused = try await s.request("POST", "/api/identity/merge", token: token, json: ["a": 1])
            #expect(refused.status == 403 && refused.json?.string("message").contains("identity.merge") == true, "\(refused.text)")

            // The queue holds identity.merge (not the self-service scope); the developer sees it pending.
            let queue = try JSONSerialization.jsonObject(with: try await s.request("GET", "/manage/scope-reviews", token: s.operatorToken).body) as? [[String: Any]] ?? []
            let pending = queue.filter { $0["appId"] as? String == app.id }
            #expect(pending.map { $0["scope"] as? String } == ["identity.merge"] && pending.first?["status"] as? String == "pending")
            let reviewID = try #require(pending.first?["id"] as? String)
            let mine = try JSONSerialization.jsonObject(with: try await s.request("GET", "/manage/apps/\(app.id)/scope-reviews", token: dev.token).body) as? [[String: Any]]
            #expect(mine?.first?["status"] as? String == "pending")
            #expect(try await s.request("POST", "/manage/scope-reviews/\(reviewID)/approve", token: dev.token).status == 403, "only the operator decides")

            let approved = try await s.request("POST", "/manage/scope-reviews/\(reviewID)/approve", token: s.operatorToken)
            try expectStatus(approved, 200)
            #expect(approved.json?.string("status") == "approved")
            let merged = try await s.request("POST", "/api/identity/merge", token: token, json: ["a": 1])
            #expect(merged.status == 200, "approved: the next request works (\(merged.status))")
            #expect(try await s.request("POST", "/manage/scope-reviews/\(reviewID)/approve", token: s.operatorToken).status == 409)

            // A refusal: the scope stays out of effect, with the reason for the developer to read.
            let other = try await s.createApp(developer: dev.token, scopes: ["identity.merge"], surface: "platform", approveReviews: false)
            let otherReview = try #require((try JSONSerialization.jsonObject(with: try await s.request("GET", "/manage/apps/\(other.id)/scope-reviews", token: dev.token).body)
                as? [[String: Any]])?.first?["id"] as? String)
            #expect(try await s.request("POST", "/manage/scope-reviews/\(otherReview)/refuse", token: s.operatorToken, json: [:] as [String: Any]).status == 400,
                    "a refusal needs a reason")
            let refusal = try await s.request("POST", "/manage/scope-reviews/\(otherReview)/refuse", token: s.operatorToken, json: ["reason": "merges need a BAA on file"])
            #expect(refusal.status == 200 && refusal.json?.string("status") == "refused" && refusal.json?.string("reason") == "merges need a BAA on file")
            _ = try await s.install(app: other.id, clinic: clinic)
            let otherClient = try await OAuthTests.client(
                s, dev: dev.token, app: other.id, scopes: ["identity.merge"], extra: ["credentialType": "service_key", "organizationId": clinic.id])
            let otherToken = try await OAuthTests.form(s, "grant_type=client_credentials&scope=identity.merge", basic: otherClient).json!.string("access_token")
            #expect(try await s.request("POST", "/api/identity/merge", token: otherToken, json: ["a": 1]).status == 403)
            // Declared again in a new version, a refused scope is filed again.
            try expectStatus(try await s.request("POST", "/manage/apps/\(other.id)/versions", token: dev.token, json: ["scopes": ["identity.merge"]]), 201)
            let refiled = try JSONSerialization.jsonObject(with: try await s.request("GET", "/manage/apps/\(other.id)/scope-reviews", token: dev.token).body) as? [[String: Any]]
            #expect(refiled?.first?["status"] as? String == "pending" && refiled?.first?["reason"] is NSNull)

            // Both decisions are in the audit log, under their apps, with the scope.
            let audit = try await s.request("GET", "/manage/audit?appId=\(app.id)", token: s.operatorToken)
            #expect(audit.json?.array("data").contains { $0.string("route") == "POST /manage/scope-reviews/{id}/approve" && $0.string("requiredScope") == "identity.merge" } == true)
            let otherAudit = try await s.request("GET", "/manage/audit?appId=\(other.id)&decision=denied", token: s.operatorToken)
            #expect(otherAudit.json?.array("data").contains { $0.string("route") == "POST /manage/scope-reviews/{id}/refuse" } == true)

            // A new version asking for another non-self-service scope: pending again, the approved one stays approved.
            let version = try await s.request("POST", "/manage/apps/\(app.id)/versions", token: dev.token, json: ["scopes": ["cms.pipeline.read", "identity.merge", "prime.ingest.read"]])
            try expectStatus(version, 201)
            let reviews = try JSONSerialization.jsonObject(with: try await s.request("GET", "/manage/apps/\(app.id)/scope-reviews", token: dev.token).body) as? [[String: Any]] ?? []
            #expect(Dictionary(uniqueKeysWithValues: reviews.compactMap { r in (r["scope"] as? String).map { ($0, r["status"] as? String ?? "") } })
                    == ["identity.merge": "approved", "prime.ingest.read": "pending"])
        }
    }

    @Test("the review queue on the console: the operator approves one request and refuses another with a reason; the developer's app page shows both")
    func console() async throws {
        try await withServer(.sqlite) { s in
            let dev = try await s.createDeveloper()
            let app = try await s.createApp(developer: dev.token, scopes: ["identity.merge", "prime.ingest.read", "cms.pipeline.read"], surface: "platform", approveReviews: false)
            let web = WebClient(base: s.base)
            _ = try await web.signIn(s.operatorToken)
            let home = try await web.get("/console")
            #expect(home.html.contains("Review queue</a> (2 pending)"))
            let queue = try await web.get("/console/reviews")
            let ids = queue.html.matches(of: /action="\/console\/reviews\/(rev_[0-9a-f]+)\/approve"/).map { String($0.1) }
            #expect(ids.count == 2 && !queue.html.contains("<code>cms.pipeline.read</code> for"), "self-service scopes are not queued")
            let csrf = try #require(queue.csrf)
            #expect(try await web.post("/console/reviews/\(ids[0])/approve", [("csrf", csrf)]).status == 303)
            #expect(try await web.post("/console/reviews/\(ids[1])/refuse", [("reason", "no")]).status == 403, "no CSRF token")
            #expect(try await web.post("/console/reviews/\(ids[1])/refuse", [("csrf", csrf), ("reason", "<b>not yet</b>")]).status == 303)
            let reviews = try JSONSerialization.jsonObject(with: try await s.request("GET", "/manage/apps/\(app.id)/scope-reviews", token: dev.token).body) as? [[String: Any]] ?? []
            #expect(Set(reviews.compactMap { $0["status"] as? String }) == ["approved", "refused"])
            let developer = WebClient(base: s.base)
            _ = try await developer.signIn(dev.token)
            let page = try await developer.get("/console/apps/\(app.id)")
            #expect(page.html.contains("approved") && page.html.contains("refused — &lt;b&gt;not yet&lt;/b&gt;"))
        }
    }

    @Test("scopes apps declared before the review queue existed count as approved (the migration)")
    func migration() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-reviews-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var appID = ""
        try await withServer(.sqlite, configure: { $0.database = .sqlite(path: path) }) { s in
            let dev = try await s.createDeveloper()
            appID = try await s.createApp(developer: dev.token, scopes: ["identity.merge", "cms.pipeline.read"], surface: "platform", approveReviews: false).id
        }
        // Back to schema 7: no review table.
        let logger = quietLogger
        let database = try await Database.open(.sqlite(path: path), logger: logger)
        try await database.transaction { db in
            for statement in undoSMARTLaunchSchema { try await db.raw("\(unsafeRaw: statement)").run() }
            try await db.raw("DROP TABLE clinic_users").run()
            try await db.raw("DROP TABLE scope_reviews").run()
            try await db.raw("DELETE FROM caregate_schema WHERE version >= 8").run()
        }
        await database.shutdown()
        let reopened = try await Database.open(.sqlite(path: path), logger: logger)
        let grants = GrantStore(database: reopened, secret: SymmetricKey(data: Array(repeating: UInt8(7), count: 32)))
        let reviews = try await grants.reviews(appID: appID)
        await reopened.shutdown()
        #expect(Set(reviews.map(\.scope)) == ["identity.merge", "cms.pipeline.read"] && reviews.allSatisfy { $0.status == "approved" })
    }
}
