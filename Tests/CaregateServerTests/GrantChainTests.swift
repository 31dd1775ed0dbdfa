import Foundation
import Testing

/// SPEC §2 over HTTP: intersection, inheritance, re-approval, uninstall, revocation, rotation.
@Suite("Grant chain")
struct GrantChainTests {
    @Test("effective = key ∩ installation grants; /me answers in the seed's shape", arguments: Backend.allCases)
    func intersection(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients", "read:bills", "read:encounters", "read:claims", "read:marketplace"], approving: ["read:patients", "read:claims", "read:marketplace"])
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: ["read:patients", "read:bills"])
            let me = try await s.request("GET", "/v3/marketplace/me", token: key.key, organization: clinic.uuid)
            try expectStatus(me, 200)
            #expect(me.json?.string("code") == "success")
            let data = try #require(me.json?.object("data"))
            #expect(data.object("app")?.string("id") == app.id)
            #expect(data.object("app")?.string("liveVersionId") == app.liveVersionId)
            #expect(data.object("organization")?.string("id") == clinic.id)
            #expect(data.strings("scopes") == ["read:patients"])
            #expect(me.text.hasPrefix(#"{"code":"success","data":{"app":{"id":""#))
            #expect(try await s.status("GET", "/v3/bills", key: key.key, clinic: clinic) == 403)
            #expect(try await s.status("GET", "/v3/claims", key: key.key, clinic: clinic) == 403)
            // Both org id forms are accepted.
            #expect(try await s.request("GET", "/v3/patients", token: key.key, organization: clinic.id).status == 200)
            // /v1/me needs read:marketplace, which this key does not carry.
            #expect(try await s.status("GET", "/v1/marketplace/me", key: key.key, clinic: clinic) == 403)
        }
    }

    @Test("a key without a selection inherits the clinic's approvals, now and later; /v1 and /v3 share the restriction", arguments: Backend.allCases)
    func inheritance(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, installation) = try await s.installedApp(scopes: ["read:patients", "read:bills", "read:marketplace"], approving: ["read:patients", "read:marketplace"])
            let inheriting = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            let restricted = try await s.createKey(developer: dev.token, app: app.id, scopes: ["read:patients"])
            #expect(try await s.status("GET", "/v1/patients", key: inheriting.key, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v1/bills", key: inheriting.key, clinic: clinic) == 403)
            #expect(try await s.status("GET", "/v1/marketplace/me", key: inheriting.key, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v1/marketplace/me", key: restricted.key, clinic: clinic) == 403)
            // The clinic approves more: the inheriting key follows, the restricted one does not.
            try expectStatus(try await s.request("POST", "/manage/installations/\(installation)/approve", token: clinic.adminToken,
                                                 json: ["scopes": ["read:patients", "read:bills", "read:marketplace"]]), 200)
            #expect(try await s.status("GET", "/v3/bills", key: inheriting.key, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v1/bills", key: inheriting.key, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v3/bills", key: restricted.key, clinic: clinic) == 403)
            #expect(try await s.status("GET", "/v1/bills", key: restricted.key, clinic: clinic) == 403)
        }
    }

    @Test("a new app version's extra scopes are not effective before the clinic re-approves", arguments: Backend.allCases)
    func reapproval(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, installation) = try await s.installedApp(scopes: ["read:patients"])
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            let version = try await s.request("POST", "/manage/apps/\(app.id)/versions", token: dev.token, json: ["scopes": ["read:patients", "read:claims"]])
            try expectStatus(version, 201)
            #expect(try await s.status("GET", "/v3/claims", key: key.key, clinic: clinic) == 403)
            let pending = try await s.request("GET", "/manage/installations/\(installation)", token: clinic.adminToken)
            #expect(pending.json?.strings("approvedScopes") == ["read:patients"])
            #expect(pending.json?.strings("liveVersionScopes") == ["read:patients", "read:claims"])
            let approved = try await s.request("POST", "/manage/installations/\(installation)/approve", token: clinic.adminToken,
                                               json: ["scopes": ["read:patients", "read:claims"]])
            try expectStatus(approved, 200)
            #expect(approved.json?.string("approvedVersionId") == version.json?.string("id"))
            #expect(try await s.status("GET", "/v3/claims", key: key.key, clinic: clinic) == 200)
            // Approvals beyond the live version are refused.
            let beyond = try await s.request("POST", "/manage/installations/\(installation)/approve", token: clinic.adminToken, json: ["scopes": ["read:bills"]])
            #expect(beyond.status == 400)
            #expect(beyond.json?.string("message").contains("read:bills") == true)
            // A version that drops a scope takes it away at once.
            try expectStatus(try await s.request("POST", "/manage/apps/\(app.id)/versions", token: dev.token, json: ["scopes": ["read:patients"]]), 201)
            #expect(try await s.status("GET", "/v3/claims", key: key.key, clinic: clinic) == 403)
        }
    }

    @Test("uninstall: every credential loses that clinic at once", arguments: Backend.allCases)
    func uninstall(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, installation) = try await s.installedApp(scopes: ["read:patients"])
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            #expect(try await s.status("GET", "/v3/patients", key: key.key, clinic: clinic) == 200)
            try expectStatus(try await s.request("DELETE", "/manage/installations/\(installation)", token: clinic.adminToken), 204)
            let after = try await s.request("GET", "/v3/patients", token: key.key, organization: clinic.uuid)
            #expect(after.status == 401)
            #expect(after.json?.string("code") == "unauthorized")
        }
    }

    @Test("a second removal, an approval of a removed installation or an unknown key's revocation changes nothing and drops no cached credential")
    func changesToWhatIsGone() async throws {
        // On SQLite: the change generation is this server's alone.
        try await withServer(.sqlite) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"])
            let other = try await s.createApp(developer: dev.token, scopes: ["read:patients"])
            let removed = try await s.install(app: other.id, clinic: clinic)
            try expectStatus(try await s.request("DELETE", "/manage/installations/\(removed)", token: clinic.adminToken), 204)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            #expect(try await s.status("GET", "/v3/patients", key: key.key, clinic: clinic) == 200)
            #expect(s.server.cachesCredential(key: key.key, organization: clinic.uuid))
            let generation = try await s.server.grants.generation()
            try await s.server.grants.uninstall(installationID: removed)
            #expect(try await s.server.grants.approve(installationID: removed, versionID: other.liveVersionId, scopes: ["read:patients"]) == nil)
            try await s.server.grants.revoke(keyID: "key_unknown")
            #expect(try await s.server.grants.generation() == generation)
            #expect(s.server.cachesCredential(key: key.key, organization: clinic.uuid))
        }
    }

    @Test("revocation is effective on the next request", arguments: Backend.allCases)
    func revocation(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"])
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            #expect(try await s.status("GET", "/v3/patients", key: key.key, clinic: clinic) == 200)  // now cached
            try expectStatus(try await s.request("DELETE", "/manage/keys/\(key.id)", token: dev.token), 204)
            let after = try await s.request("GET", "/v3/patients", token: key.key, organization: clinic.uuid)
            #expect(after.status == 401)
            #expect(after.header("WWW-Authenticate") == #"Bearer realm="caregate", error="invalid_token""#)
        }
    }

    @Test("rotation: the old key works during the grace and stops after it", arguments: Backend.allCases)
    func rotation(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"])
            let old = try await s.createKey(developer: dev.token, app: app.id, scopes: ["read:patients"])
            let rotated = try await s.request("POST", "/manage/keys/\(old.id)/rotate", token: dev.token, json: ["graceSeconds": 3600])
            try expectStatus(rotated, 201)
            let new = rotated.json!.string("key")
            #expect(new != old.key)
            #expect(rotated.json?.strings("scopes") == ["read:patients"])
            #expect(try await s.status("GET", "/v3/patients", key: new, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: old.key, clinic: clinic) == 200)
            // Rotating the new key with no grace: it stops at once, its successor works.
            let second = try await s.request("POST", "/manage/keys/\(rotated.json!.string("id"))/rotate", token: dev.token, json: ["graceSeconds": 0])
            try expectStatus(second, 201)
            #expect(try await s.status("GET", "/v3/patients", key: new, clinic: clinic) == 401)
            #expect(try await s.request("GET", "/v3/patients", token: second.json!.string("key"), organization: clinic.uuid).status == 200)
        }
    }

    @Test("keys: shown once, masked, scopes must be declared, API-key types only")
    func keyRules() async throws {
        try await withServer(.sqlite) { s in
            let dev = try await s.createDeveloper()
            let app = try await s.createApp(developer: dev.token, scopes: ["read:patients"])
            let created = try await s.request("POST", "/manage/apps/\(app.id)/keys", token: dev.token, json: ["name": "k", "environment": "sbx"])
            try expectStatus(created, 201)
            let key = created.json!.string("key")
            #expect(key.wholeMatch(of: /cg_sbx_ak_[0-9A-Za-z]{52}/) != nil)
            let display = created.json!.string("display")
            #expect(display == "cg_sbx_ak_\(key.dropFirst(10).prefix(3))...\(key.suffix(3))")
            let listed = try await s.request("GET", "/manage/apps/\(app.id)/keys", token: dev.token)
            #expect(!listed.text.contains(key))
            #expect(listed.text.contains(display))
            let undeclared = try await s.request("POST", "/manage/apps/\(app.id)/keys", token: dev.token, json: ["name": "k", "environment": "prd", "scopes": ["read:bills"]])
            #expect(undeclared.status == 400)
            #expect(undeclared.json?.string("message") == #"scopes: "read:bills" is not declared by the app"#)
            let unknown = try await s.request("POST", "/manage/apps/\(app.id)/keys", token: dev.token, json: ["name": "k", "environment": "prd", "scopes": ["read:everything"]])
            #expect(unknown.status == 400)
            #expect(unknown.json?.string("message").contains("read:everything") == true)
            let badEnv = try await s.request("POST", "/manage/apps/\(app.id)/keys", token: dev.token, json: ["name": "k", "environment": "dev"])
            #expect(badEnv.json?.string("message") == #"field "environment" must be prd or sbx"#)
            let past = try await s.request("POST", "/manage/apps/\(app.id)/keys", token: dev.token, json: ["name": "k", "environment": "prd", "expiresAt": "2001-01-01T00:00:00Z"])
            #expect(past.json?.string("message") == #"field "expiresAt" must be in the future"#)
            // RFC 3339 with fractional seconds, as JavaScript's toISOString() writes it.
            let milliseconds = try await s.request("POST", "/manage/apps/\(app.id)/keys", token: dev.token, json: ["name": "k", "environment": "prd", "expiresAt": "2099-01-01T00:00:00.250Z"])
            #expect(milliseconds.status == 201, "\(milliseconds.text)")
            #expect(milliseconds.json?.string("expiresAt").hasPrefix("2099-01-01T00:00:00") == true, "\(milliseconds.text)")
        }
    }
}
