import CaregateServer
import Foundation
import Testing

/// The least-privilege report (`GET /manage/apps/{appId}/usage`): what each key and OAuth client
/// holds, used (from the audit log) and could drop; narrowing makes the narrower key once.
@Suite struct LeastPrivilegeTests {
    static let held = ["read:patients", "read:appointments", "read:providers", "read:bills", "read:tasks"]

    @Test("a key holding five scopes that used two: two used, three droppable; narrow gives a key with exactly the two, once", arguments: Backend.allCases)
    func report(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: Self.held, patients: 2)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: Self.held)
            let idle = try await s.createKey(developer: dev.token, app: app.id, scopes: ["read:bills"])
            for path in ["/v3/patients", "/v3/appointments", "/v3/appointments?limit=1"] {
                #expect(try await s.status("GET", path, key: key.key, clinic: clinic) == 200)
            }
            #expect(try await s.status("GET", "/v3/claims", key: key.key, clinic: clinic) == 403)  // refused: uses nothing
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients", "read:tasks"])

            let reply = try await s.request("GET", "/manage/apps/\(app.id)/usage?days=7", token: dev.token)
            try expectStatus(reply, 200)
            #expect(reply.json?["days"] as? Int == 7)
            let entries = try #require(reply.json?["data"] as? [[String: Any]])
            let entry = try #require(entries.first { $0["id"] as? String == key.id })
            #expect(entry["credential"] as? String == "api_key" && entry["held"] as? [String] == Self.held)
            #expect(entry["used"] as? [String] == ["read:patients", "read:appointments"])
            #expect(entry["droppable"] as? [String] == ["read:providers", "read:bills", "read:tasks"])
            #expect((entry["lastUsedAt"] as? String)?.hasPrefix("20") == true)
            let unused = try #require(entries.first { $0["id"] as? String == idle.id })
            #expect(unused["used"] as? [String] == [] && unused["droppable"] as? [String] == ["read:bills"] && unused["lastUsedAt"] is NSNull)
            let clientEntry = try #require(entries.first { $0["id"] as? String == client.id })
            #expect(clientEntry["credential"] as? String == "oauth_client" && clientEntry["used"] as? [String] == [])

            // Narrow: a scope the key does not hold is refused; the used two make the new key, once.
            let wider = try await s.request("POST", "/manage/keys/\(key.id)/rotate", token: dev.token, json: ["scopes": ["read:claims"]])
            #expect(wider.status == 400)
            let narrowed = try await s.request("POST", "/manage/keys/\(key.id)/rotate", token: dev.token, json: ["scopes": ["read:patients", "read:appointments"]])
            try expectStatus(narrowed, 201)
            #expect(narrowed.json?.strings("scopes") == ["read:patients", "read:appointments"])
            let newKey = narrowed.json!.string("key")
            #expect(try await s.status("GET", "/v3/patients", key: newKey, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v3/providers", key: newKey, clinic: clinic) == 403)
            // The old key keeps working through the grace, then stops; it cannot be replaced twice.
            #expect(try await s.status("GET", "/v3/providers", key: key.key, clinic: clinic) == 200)
            let keys = try JSONSerialization.jsonObject(with: try await s.request("GET", "/manage/apps/\(app.id)/keys", token: dev.token).body) as? [[String: Any]] ?? []
            let old = try #require(keys.first { $0["id"] as? String == key.id })
            #expect(old["replacedBy"] as? String == narrowed.json!.string("id") && old["expiresAt"] is String)
            #expect(try await s.request("POST", "/manage/keys/\(key.id)/rotate", token: dev.token, json: ["scopes": ["read:patients"]]).status == 409)

            // The same from the console: the button narrows to what the report says was used.
            let other = try await s.createKey(developer: dev.token, app: app.id, scopes: Self.held)
            #expect(try await s.status("GET", "/v3/bills", key: other.key, clinic: clinic) == 200)
            let web = WebClient(base: s.base)
            _ = try await web.signIn(dev.token)
            let page = try await web.get("/console/apps/\(app.id)")
            #expect(page.html.contains("action=\"/console/keys/\(other.id)/narrow\""))
            let made = try await web.post("/console/keys/\(other.id)/narrow", [("csrf", page.csrf ?? ""), ("appId", app.id)])
            #expect(made.status == 201)
            let shown = try #require(made.html.firstMatch(of: /id="new-key" class="secret" readonly value="([^"]+)"/).map { String($0.1) })
            #expect(try await s.status("GET", "/v3/bills", key: shown, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: shown, clinic: clinic) == 403)
            // The same form again (a second click): the key was replaced already, shown as a page.
            let again = try await web.post("/console/keys/\(other.id)/narrow", [("csrf", page.csrf ?? ""), ("appId", app.id)])
            #expect(again.status == 409 && again.header("Content-Type")?.hasPrefix("text/html") == true)
            #expect(!(try await web.get("/console/apps/\(app.id)")).html.contains("action=\"/console/keys/\(other.id)/narrow\""), "no narrowing of a replaced key")
        }
    }
}
