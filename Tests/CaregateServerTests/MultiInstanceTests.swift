import Foundation
import Testing

@Suite("Several instances on one PostgreSQL")
struct MultiInstanceTests {
    @Test("a revocation and a scope change made on one instance reach the other within a second")
    func propagation() async throws {
        let a = try await TestServer(.postgres)
        let b = try await TestServer(.postgres)
        defer { Task { await a.stop(); await b.stop() } }
        let dev = try await a.createDeveloper()
        let clinic = try await a.createClinic(patients: 1)
        let app = try await a.createApp(developer: dev.token, scopes: ["read:patients", "read:providers"])
        let installation = try await a.install(app: app.id, clinic: clinic)
        let key = try await a.createKey(developer: dev.token, app: app.id, scopes: nil)
        // Instance B serves the key (and caches it).
        #expect(try await b.status("GET", "/v3/providers", key: key.key, clinic: clinic) == 200)

        // A clinic narrows its approval on instance A: B stops serving providers within a second.
        try expectStatus(try await a.request("POST", "/manage/installations/\(installation)/approve", token: clinic.adminToken,
                                             json: ["scopes": ["read:patients"]]), 200)
        #expect(try await Self.within(.seconds(1)) { try await b.status("GET", "/v3/providers", key: key.key, clinic: clinic) == 403 })

        // The key is revoked on instance A: B refuses it within a second.
        try expectStatus(try await a.request("DELETE", "/manage/keys/\(key.id)", token: dev.token), 204)
        #expect(try await Self.within(.seconds(1)) { try await b.status("GET", "/v3/patients", key: key.key, clinic: clinic) == 401 })
        await a.stop()
        await b.stop()
    }

    /// Polls `condition` until it holds or `limit` has passed; returns whether it held.
    static func within(_ limit: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }
}
