@testable import CaregateServer
@testable import CaregateStore
import Foundation
import Testing

@Suite("Several instances on one PostgreSQL")
struct MultiInstanceTests {
    @Test("a revocation and a scope change made on one instance reach the other within a second")
    func propagation() async throws {
        let a = try await TestServer(.postgres)
        let b = try await TestServer(.postgres)
        defer { Task { await a.stop(); await b.stop() } }
        let (dev, clinic, app, installation) = try await a.installedApp(scopes: ["read:patients", "read:providers"], patients: 1)
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

        // The token-signing key is rotated on instance A: within a second B publishes the new
        // key and signs with it.
        let rotated = try await a.request("POST", "/manage/signing-keys/rotate", token: a.operatorToken)
        try expectStatus(rotated, 201)
        let newKid = rotated.json!.string("kid")
        #expect(try await Self.within(.seconds(1)) { try await b.request("GET", "/.well-known/jwks.json").text.contains(newKid) })
        let client = try await OAuthTests.client(a, dev: dev.token, app: app.id, scopes: ["read:patients"])
        let token = try await OAuthTests.form(b, "grant_type=client_credentials", basic: (client.id, client.secret)).json!.string("access_token")
        let header = try #require(String(token.split(separator: ".")[0]).base64URLDecodedJSON)
        #expect(header["kid"] as? String == newKid)
        #expect(try await a.status("GET", "/v3/patients", key: token, clinic: clinic) == 200)
        await a.stop()
        await b.stop()
    }

    @Test("signing keys another instance failed to read are read on its next poll, with no further change")
    func signingKeysReadAgain() async throws {
        // Two instances on a SQLite file of their own: a key that does not parse must not reach
        // the servers of other tests, which share the test run's PostgreSQL database.
        let file = try Backend.sqlite.location()
        let a = try await TestServer(.sqlite) { $0.database = file }
        let b = try await TestServer(.sqlite) { $0.database = file }
        defer { Task { await a.stop(); await b.stop() } }
        /// Waits until B has applied a change made now on A: the polls before it have ended.
        func appliedOnB(_ change: GrantChange) async throws -> Bool {
            try await a.server.grants.change([change]) { _ in }
            let generation = try await a.server.grants.generation()
            return try await Self.within(.seconds(2)) { b.server.appliedChangeGeneration >= generation }
        }
        // A rotation B cannot read: the new key is not a key.
        let kid = "es256-" + UUID().uuidString.lowercased()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try await a.server.grants.change([.signingKeys]) { db in
            try await db.raw("INSERT INTO signing_keys (kid, algorithm, private_pem, created_at) VALUES (\(bind: kid), 'ES256', 'not a key', \(bind: now))").run()
        }
        // B applied it (its reload failed), then a later change in a poll of its own.
        #expect(try await appliedOnB(.app("app_unrelated")))
        #expect(try await appliedOnB(.app("app_unrelated")))
        #expect(try await !b.request("GET", "/.well-known/jwks.json").text.contains(kid))
        // The key mended in place, with no change recorded: B reads the keys on a coming poll.
        let pem = try TokenService.generate(.es256).privatePEM
        try await a.server.database.sql.raw("UPDATE signing_keys SET private_pem = \(bind: pem) WHERE kid = \(bind: kid)").run()
        #expect(try await Self.within(.seconds(1)) { try await b.request("GET", "/.well-known/jwks.json").text.contains(kid) })
        await a.stop()
        await b.stop()
    }

    @Test("a change drops only the credentials it touched, on every instance; one the change log no longer holds drops them all")
    func granular() async throws {
        let a = try await TestServer(.postgres)
        let b = try await TestServer(.postgres)
        defer { Task { await a.stop(); await b.stop() } }
        let (dev, clinic, app, installation) = try await a.installedApp(scopes: ["read:patients"], patients: 1)
        let otherClinic = try await a.createClinic(patients: 1)
        _ = try await a.install(app: app.id, clinic: otherClinic)
        let other = try await a.createApp(developer: dev.token, scopes: ["read:patients"])
        _ = try await a.install(app: other.id, clinic: clinic)
        let x = try await a.createKey(developer: dev.token, app: app.id, scopes: nil)
        let doomed = try await a.createKey(developer: dev.token, app: app.id, scopes: nil)
        let y = try await a.createKey(developer: dev.token, app: other.id, scopes: nil)
        func cached(_ key: String, _ at: TestServer.Clinic) -> Bool { b.server.cachesCredential(key: key, organization: at.uuid) }
        // Instance B resolves and caches each credential, once it has applied the changes above, made on A.
        let setUp = try await a.server.grants.generation()
        #expect(try await Self.within(.seconds(2)) { b.server.appliedChangeGeneration >= setUp })
        #expect(try await Self.within(.seconds(2)) {
            for (key, at) in [(x.key, clinic), (x.key, otherClinic), (doomed.key, clinic), (y.key, clinic)] {
                guard try await b.status("GET", "/v3/patients", key: key, clinic: at) == 200 else { return false }
            }
            return cached(x.key, clinic) && cached(x.key, otherClinic) && cached(doomed.key, clinic) && cached(y.key, clinic)
        })

        // One key revoked on A: B refuses it within a second and keeps every other credential
        // (using them reads no key row again).
        try expectStatus(try await a.request("DELETE", "/manage/keys/\(doomed.id)", token: dev.token), 204)
        #expect(try await Self.within(.seconds(1)) { try await b.status("GET", "/v3/patients", key: doomed.key, clinic: clinic) == 401 })
        #expect(cached(x.key, clinic) && cached(x.key, otherClinic) && cached(y.key, clinic))
        let reads = b.server.keyDatabaseLookups
        #expect(try await b.status("GET", "/v3/patients", key: x.key, clinic: clinic) == 200)
        #expect(b.server.keyDatabaseLookups == reads)

        // The app's installation in one clinic re-approved on A: B drops that app's credentials in
        // that clinic only.
        try expectStatus(try await a.request("POST", "/manage/installations/\(installation)/approve", token: clinic.adminToken,
                                             json: ["scopes": ["read:patients"]]), 200)
        #expect(try await Self.within(.seconds(1)) { !cached(x.key, clinic) })
        #expect(cached(x.key, otherClinic) && cached(y.key, clinic))

        // A change the log no longer holds (pruned, as after an hour without polling): B drops everything.
        try await a.server.database.sql.raw("UPDATE caregate_changes SET generation = generation + 3 WHERE id = 1").run()
        #expect(try await Self.within(.seconds(1)) { b.server.cachedCredentials == 0 })
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

extension String {
    /// A base64url-encoded JSON object (a JWT segment), decoded.
    var base64URLDecodedJSON: [String: Any]? {
        var text = replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text).flatMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] }
    }
}
