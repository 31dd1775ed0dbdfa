import CaregateServer
import CaregateStore
import Foundation
import Testing

/// One regression test per hole of the security review (issue #9); each failed on the main
/// it was found on.
@Suite("Security review regressions")
struct SecurityReviewTests {
    /// A platform gateway in front of the echo upstream, with an API key holding the two
    /// self-service FHIR scopes.
    static func platformGateway(
        _ backend: Backend, trustedProxies: Set<String> = [], _ body: (TestServer, EchoUpstream, TestServer.Clinic, String) async throws -> Void
    ) async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(backend, configure: {
            $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)]
            $0.fhirBackend = .upstream
            $0.trustedProxies = trustedProxies
        }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(
                scopes: ["cms.fhir.r4.read", "cms.fhir.rest.write", "cms.identity.match"], surface: "platform", patients: 0)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            try await body(s, upstream, clinic, key.key)
        }
    }

    @Test("1. FHIR operations never pass as a {ResourceType}: 403 or 404, nothing forwarded", arguments: Backend.allCases)
    func operations(_ backend: Backend) async throws {
        try await Self.platformGateway(backend) { s, _, clinic, key in
            for (method, path, expected) in [
                ("GET", "/fhir/R4/Patient/$export", 403), ("POST", "/fhir/R4/$export", 403), ("POST", "/fhir/R4/$import", 404),
                ("GET", "/fhir/R4/$Export", 404), ("GET", "/fhir/R4/$export-poll-status", 404), ("GET", "/fhir/R4/patient", 404),
                ("GET", "/fhir/R4/%24export", 403),
            ] {
                let reply = try await s.request(method, path, token: key, organization: clinic.uuid)
                #expect(reply.status == expected, "\(method) \(path): \(reply.status) \(reply.text)")
                #expect(Echoed(reply) == nil, "\(method) \(path) reached the upstream")
            }
            // The resource routes still pass.
            #expect(Echoed(try await s.request("GET", "/fhir/R4/Patient/p1", token: key, organization: clinic.uuid))?.path == "/fhir/R4/Patient/p1")
        }
    }

    @Test("3. caller-controlled headers never reach the upstream; forwarding headers are Caregate's", arguments: Backend.allCases)
    func headers(_ backend: Backend) async throws {
        try await Self.platformGateway(backend) { s, _, clinic, key in
            let forged = [
                "X_Caregate_Scopes": "everything", "X_Organization_Id": "org_forged", "X-Caregate_Client": "forged",
                "X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE",
                "Forwarded": "for=203.0.113.9;proto=https", "X-Real-IP": "203.0.113.9", "X-Forwarded-Host": "evil.example",
                "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
            ]
            let reply = try await s.request("POST", "/api/identity/match", token: key, organization: clinic.uuid, headers: forged)
            let echoed = try #require(Echoed(reply), "\(reply.status) \(reply.text)")
            for name in forged.keys where name != "X-Forwarded-For" && name != "X-Forwarded-Proto" {
                #expect(echoed.values(name).isEmpty, "\(name) reached the upstream")
            }
            #expect(!echoed.headers.contains { $0.name.contains("_") })
            #expect(echoed.values("X-Forwarded-For") == ["127.0.0.1"])
            #expect(echoed.values("X-Forwarded-Proto") == ["http"])
            #expect(echoed.values("X-Caregate-Scopes") == ["cms.fhir.r4.read cms.fhir.rest.write cms.identity.match"])
            #expect(echoed.method == "POST")
        }
        // Behind a trusted proxy its X-Forwarded-For is extended, not replaced.
        try await Self.platformGateway(backend, trustedProxies: ["127.0.0.1"]) { s, _, clinic, key in
            let reply = try await s.request("POST", "/api/identity/match", token: key, organization: clinic.uuid, headers: ["X-Forwarded-For": "203.0.113.7"])
            #expect(Echoed(reply)?.values("X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"])
        }
    }

    @Test("4. double-encoded and overlong segments are refused with 400 and never forwarded")
    func encodings() async throws {
        try await Self.platformGateway(.sqlite) { s, _, clinic, key in
            for path in ["/fhir/R4/Patient/%252e%252e", "/fhir/R4/Patient/%c0%ae%c0%ae", "/fhir/R4/Patient/%c0%ae"] {
                let reply = try await s.request("GET", path, token: key, organization: clinic.uuid)
                // Caregate's own errors on the FHIR base are OperationOutcomes, in front of an upstream too.
                #expect(reply.status == 400 && reply.json?.string("resourceType") == "OperationOutcome", "\(path): \(reply.status)")
                #expect(Echoed(reply) == nil)
            }
        }
    }

    @Test("2. a multipart boundary over 70 characters, or outside RFC 2046's set, is a 400; a 70-character one works")
    func multipartBoundary() async throws {
        try await withServer(.sqlite) { s in
            let x = try await ContractTests.setup(s)
            let note = try await s.request("GET", "/v3/notes?limit=1", token: x.key, organization: x.clinic.uuid).json!.array("data")[0]
            let path = "/v3/notes/\(note.string("id"))/images?providerId=\(note.string("providerId"))"
            func upload(boundary: String) async throws -> TestServer.Reply {
                var body = Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n".utf8)
                body.append(Data(EnforcementTests.png))
                body.append(Data("\r\n--\(boundary)--\r\n".utf8))
                return try await s.request("POST", path, token: x.key, organization: x.clinic.uuid, body: body,
                                           headers: ["Content-Type": "multipart/form-data; boundary=\"\(boundary)\""])
            }
            #expect(try await upload(boundary: String(repeating: "a", count: 70)).status == 201)
            #expect(try await upload(boundary: "b").status == 201)
            let long = try await upload(boundary: String(repeating: "a", count: 71))
            #expect(long.status == 400 && long.text.contains("1 to 70"))
            #expect(try await upload(boundary: String(repeating: "a", count: 4000)).status == 400)
            #expect(try await upload(boundary: "a\u{7F}b").status == 400)
        }
    }

    @Test("5. requests that did not authenticate are tallied by peer, never filed under the clinic they name", arguments: Backend.allCases)
    func unauthenticatedAudit(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let x = try await ContractTests.setup(s)
            let other = try await ContractTests.setup(s)  // a key whose app is not installed in x's clinic
            var traces: [String] = []
            for (token, path) in [("cg_prd_ak_000000000000" + String(repeating: "a", count: 40), "/v3/patients/<script>"),
                                  (other.key, "/v3/patients"), (nil, "/v3/bills")] as [(String?, String)] {
                let reply = try await s.request("GET", path.replacingOccurrences(of: "<", with: "%3C").replacingOccurrences(of: ">", with: "%3E"),
                                                token: token, organization: x.clinic.uuid)
                #expect(reply.status == 401)
                traces.append(reply.header("X-Trace-Id")!)
            }
            let allowed = try await s.request("GET", "/v3/patients", token: x.key, organization: x.clinic.uuid)
            let clinicLog = try await s.request("GET", "/manage/audit?limit=200", token: x.clinic.adminToken)
            try expectStatus(clinicLog, 200)
            let events = clinicLog.json!.array("data")
            #expect(events.contains { $0.string("traceId") == allowed.header("X-Trace-Id") })
            #expect(!events.contains { traces.contains($0.string("traceId")) || $0["peer"] != nil })
            #expect(!clinicLog.text.contains("script"))
            // The operator sees one tally for the peer, without the paths.
            let all = try await s.request("GET", "/manage/audit?decision=denied&limit=200", token: s.operatorToken)
            let tallies = all.json!.array("data").filter { $0["peer"] != nil }
            #expect(tallies.reduce(0) { $0 + ($1["count"] as? Int ?? 0) } >= 3)
            #expect(tallies.allSatisfy { $0.string("peer") == "127.0.0.1" && $0["organizationId"] is NSNull && $0.string("path") == "" })
        }
    }

    @Test("6. a sandbox key is refused in a production clinic (401) and works in a sandbox one", arguments: Backend.allCases)
    func sandboxKeys(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let dev = try await s.createDeveloper()
            let production = try await s.createClinic(patients: 1)
            let sandboxReply = try await s.request("POST", "/manage/organizations", token: s.operatorToken, json: ["name": "Test clinic", "environment": "sbx"])
            try expectStatus(sandboxReply, 201)
            #expect(sandboxReply.json?.string("environment") == "sbx")
            let sandbox = TestServer.Clinic(
                id: sandboxReply.json!.string("id"), uuid: sandboxReply.json!.string("uuid"), adminToken: sandboxReply.json!.string("adminToken"))
            let app = try await s.createApp(developer: dev.token, scopes: ["read:patients"])
            _ = try await s.install(app: app.id, clinic: production)
            _ = try await s.install(app: app.id, clinic: sandbox)
            let sbx = try await s.createKey(developer: dev.token, app: app.id, scopes: nil, environment: "sbx")
            let prd = try await s.createKey(developer: dev.token, app: app.id, scopes: nil, environment: "prd")
            let refused = try await s.request("GET", "/v3/patients", token: sbx.key, organization: production.uuid)
            #expect(refused.status == 401 && refused.json?.string("code") == "unauthorized")
            #expect(try await s.status("GET", "/v3/patients", key: sbx.key, clinic: sandbox) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: prd.key, clinic: production) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: prd.key, clinic: sandbox) == 401)
            #expect(try await s.request("POST", "/manage/organizations", token: s.operatorToken, json: ["name": "x", "environment": "dev"]).status == 400)
        }
    }

    @Test("7. management tokens: rotated, revoked or expired, they stop on every instance at once", arguments: Backend.allCases)
    func managementTokens(_ backend: Backend) async throws {
        let location = try backend.location()
        try await withServer(backend, configure: { $0.database = location }) { a in
            try await withServer(backend, configure: { $0.database = location }) { b in
                let dev = try await a.createDeveloper()
                #expect(try await b.request("GET", "/manage/audit", token: dev.token).status == 403)  // known to b (a developer)
                // The holder rotates: the new token works, the old one stops, on both instances.
                let rotated = try await a.request("POST", "/manage/tokens/rotate", token: dev.token)
                try expectStatus(rotated, 201)
                let newToken = rotated.json!.string("token")
                for s in [a, b] {
                    #expect(try await s.request("POST", "/manage/apps", token: dev.token, json: ["slug": "x", "name": "x", "scopes": []]).status == 401)
                }
                #expect(try await b.request("POST", "/manage/tokens/rotate", token: dev.token).status == 401)
                let app = try await b.request("POST", "/manage/apps", token: newToken, json: ["slug": "app-\(UUID().uuidString.prefix(6).lowercased())", "name": "x", "scopes": ["read:patients"]])
                try expectStatus(app, 201)
                // The operator revokes it: refused on the other instance at once.
                let listed = try await a.request("GET", "/manage/tokens?subjectId=\(dev.id)", token: a.operatorToken)
                let active = try #require(listed.json?.array("data").first { $0["revokedAt"] is NSNull })
                #expect(!listed.text.contains(newToken))
                #expect(try await a.request("DELETE", "/manage/tokens/\(active.string("id"))", token: a.operatorToken).status == 204)
                #expect(try await b.request("GET", "/manage/apps/\(app.json!.string("id"))", token: newToken).status == 401)
                #expect(try await a.request("DELETE", "/manage/tokens/\(active.string("id"))", token: a.operatorToken).status == 404)
                // An expiring token, issued by the operator: works, then stops by itself. The expiry
                // is whole seconds; 6 s leaves room for a loaded machine between here and the first use.
                let expiry = ISO8601DateFormatter().string(from: Date().addingTimeInterval(6))
                let issued = try await a.request("POST", "/manage/tokens", token: a.operatorToken, json: ["subjectId": dev.id, "expiresAt": expiry])
                try expectStatus(issued, 201)
                let shortLived = issued.json!.string("token")
                #expect(try await b.request("GET", "/manage/apps/\(app.json!.string("id"))", token: shortLived).status == 200)
                let deadline = Date().addingTimeInterval(15)
                var status = 200
                while status == 200 && Date() < deadline {
                    status = try await b.request("GET", "/manage/apps/\(app.json!.string("id"))", token: shortLived).status
                    if status == 200 { try await Task.sleep(for: .milliseconds(200)) }
                }
                #expect(status == 401)
                // Developers cannot revoke tokens; clinic admins rotate their own.
                #expect(try await a.request("GET", "/manage/tokens", token: newToken).status == 401)
                let clinic = try await a.createClinic(patients: 0)
                let clinicRotated = try await b.request("POST", "/manage/tokens/rotate", token: clinic.adminToken)
                try expectStatus(clinicRotated, 201)
                #expect(try await a.request("GET", "/manage/audit", token: clinic.adminToken).status == 401)
                #expect(try await a.request("GET", "/manage/audit", token: clinicRotated.json!.string("token")).status == 200)
            }
        }
    }

    @Test("8. two client authentication methods in one request are invalid_request; a jwks with private members is refused")
    func clientAuthentication() async throws {
        try await withServer(.sqlite) { s in
            let (dev, _, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 0)
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            let assertion = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c"
            for (body, basic) in [
                ("grant_type=client_credentials&\(assertion)", true),
                ("grant_type=client_credentials&client_id=\(client.id)&client_secret=\(client.secret)&\(assertion)", false),
                ("grant_type=client_credentials&client_secret=\(client.secret)", true),
            ] {
                let reply = try await OAuthTests.form(s, body, basic: basic ? client : nil)
                #expect(reply.status == 400 && reply.json?.string("error") == "invalid_request", "\(body): \(reply.text)")
            }
            #expect(try await OAuthTests.form(s, "grant_type=client_credentials", basic: client).status == 200)
            let keys = try await ClientAssertionTests.newKeys()
            let privateSet = ["keys": [keys["es"]!]]
            let refused = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                              json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwks": privateSet])
            #expect(refused.status == 400 && refused.text.contains("private key material"), "\(refused.text)")
            // An optional field sent as null is absent, as the document says: no keys, so a secret.
            let nullKeys = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                               json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwks": NSNull(), "jwksUri": NSNull()])
            #expect(nullKeys.status == 201 && (nullKeys.json?.raw["clientSecret"] as? String)?.isEmpty == false, "\(nullKeys.text)")
        }
    }

    @Test("9. access tokens: iat and nbf in the future refused, typ application/at+jwt accepted")
    func tokenClaims() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-claims-\(UUID().uuidString).sqlite").path
        try await withServer(.sqlite, configure: { $0.database = .sqlite(path: path) }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 1)
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            let token = try await OAuthTests.form(s, "grant_type=client_credentials", basic: client).json!.string("access_token")
            #expect(try await s.status("GET", "/v3/patients", key: token, clinic: clinic) == 200)
            // Re-signed with the server's own key, claims changed. The key is sealed at rest, but this
            // server keeps its secret in the same database file (no CAREGATE_SECRET), so the file
            // alone opens it: the case the start-up warning is about.
            let script = """
            import base64, json, sqlite3, sys, time
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
            from joserfc import jwt
            from joserfc.jwk import ECKey, RSAKey
            db = sqlite3.connect(sys.argv[1])
            row = db.execute("select kid, algorithm, private_pem from signing_keys where retired_at is null").fetchone()
            secret = db.execute("select value from caregate_meta where key = 'hmac_secret'").fetchone()[0].encode()
            sealing = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"caregate token-signing keys v1").derive(secret)
            sealed = base64.b64decode(row[2][len("sealed:v1:"):])
            pem = AESGCM(sealing).decrypt(sealed[:12], sealed[12:], row[0].encode()).decode()
            key = (ECKey if row[1] == "ES256" else RSAKey).import_key(pem)
            claims = jwt.decode(sys.argv[2], key).claims
            now = int(time.time())
            variants = {"iat": (dict(claims, iat=now + 3600), "at+jwt"), "nbf": (dict(claims, nbf=now + 3600), "at+jwt"),
                        "typ": (claims, "application/at+jwt"), "jwt": (claims, "JWT")}
            print(json.dumps({name: jwt.encode({"alg": row[1], "kid": row[0], "typ": typ}, c, key) for name, (c, typ) in variants.items()}))
            """
            let (status, output) = try await runProgram("/usr/bin/env", ["python3", "-c", script, path, token])
            #expect(status == 0, "\(output)")
            let variants = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: String])
            #expect(try await s.status("GET", "/v3/patients", key: variants["iat"]!, clinic: clinic) == 401)
            #expect(try await s.status("GET", "/v3/patients", key: variants["nbf"]!, clinic: clinic) == 401)
            #expect(try await s.status("GET", "/v3/patients", key: variants["typ"]!, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: variants["jwt"]!, clinic: clinic) == 401)
        }
    }

    @Test("9. duplicate JSON keys, Transfer-Encoding other than chunked, and parser rejections answer 400 in the error shape")
    func malformedInput() async throws {
        try await withServer(.sqlite) { s in
            let dev = try await s.createDeveloper()
            let duplicate = try await s.request("POST", "/manage/apps", token: dev.token, body: Data(#"{"slug":"a-b","name":"x","scopes":[],"slug":"c-d"}"#.utf8),
                                                headers: ["Content-Type": "application/json"])
            #expect(duplicate.status == 400 && duplicate.text.contains("appears twice"), "\(duplicate.text)")
            let escaped = try await s.request("POST", "/manage/apps", token: dev.token, body: Data(#"{"slug":"a-b","name":"x","scopes":[],"\u0073lug":"c-d"}"#.utf8),
                                              headers: ["Content-Type": "application/json"])
            #expect(escaped.status == 400)
            let nested = try await s.request("POST", "/manage/apps", token: dev.token, body: Data(#"{"slug":"a-b","name":"x","scopes":[],"x":{"a":1,"a":2}}"#.utf8),
                                             headers: ["Content-Type": "application/json"])
            #expect(nested.status == 400 && nested.text.contains("appears twice"))
            let port = String(s.base.split(separator: ":").last!)
            // Raw requests: curl would refuse to send them.
            let script = """
            import socket, sys
            def send(raw):
                c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
                c.sendall(raw)
                data = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk: break
                    data += chunk
                c.close()
                return data.decode("latin-1")
            print(send(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nBad Header: 1\\r\\n\\r\\n"))
            print("=====")
            print(send(b"POST /oauth2/token HTTP/1.1\\r\\nHost: x\\r\\nTransfer-Encoding: xchunked\\r\\nConnection: close\\r\\n\\r\\n0\\r\\n\\r\\n"))
            """
            let (status, output) = try await runProgram("/usr/bin/env", ["python3", "-c", script, port])
            #expect(status == 0, "\(output)")
            let answers = output.components(separatedBy: "=====")
            #expect(answers.count == 2)
            for answer in answers {
                #expect(answer.contains("HTTP/1.1 400"), "\(answer)")
                #expect(answer.contains(#""code":"bad_request""#) && answer.contains("trace_id"), "\(answer)")
                #expect(answer.lowercased().contains("x-trace-id"), "\(answer)")
            }
        }
    }

    @Test("9. an unknown key-shaped credential costs one database read, then none; a rotated key is not rotated again")
    func keyLookups() async throws {
        try await withServer(.sqlite) { s in
            let x = try await ContractTests.setup(s)
            let unknown = "cg_prd_ak_zzzzzzzzzzzz" + String(repeating: "b", count: 40)
            #expect(try await s.status("GET", "/v3/patients", key: unknown, clinic: x.clinic) == 401)
            let after = s.server.keyDatabaseLookups
            for _ in 0..<20 { #expect(try await s.status("GET", "/v3/patients", key: unknown, clinic: x.clinic) == 401) }
            // At most one more read: the grant-chain changes of the set-up may still empty the cache once.
            #expect(s.server.keyDatabaseLookups - after <= 1)
            // A known lookup id with a wrong secret takes the same path (cached row, constant-time comparison).
            let wrong = String(x.key.dropLast(4)) + "AAAA"
            #expect(try await s.status("GET", "/v3/patients", key: wrong, clinic: x.clinic) == 401)
            #expect(try await s.status("GET", "/v3/patients", key: x.key, clinic: x.clinic) == 200)
            // With the key's credential cached, its digest still decides: the wrong secret is refused
            // by the direct path's `/me` (which reads only the cache) and by the pipeline alike.
            #expect(try await s.status("GET", "/v3/marketplace/me", key: x.key, clinic: x.clinic) == 200)
            #expect(try await s.status("GET", "/v3/marketplace/me", key: wrong, clinic: x.clinic) == 401)
            #expect(try await s.status("GET", "/v3/patients", key: wrong, clinic: x.clinic) == 401)

            let listed = try await s.request("GET", "/manage/apps/\(x.app.id)/keys", token: x.dev.token)
            try expectStatus(listed, 200)
            let keys = try #require(try JSONSerialization.jsonObject(with: listed.body) as? [[String: Any]])
            let keyID = try #require(keys.first?["id"] as? String, "\(listed.text)")
            try expectStatus(try await s.request("POST", "/manage/keys/\(keyID)/rotate", token: x.dev.token), 201)
            let again = try await s.request("POST", "/manage/keys/\(keyID)/rotate", token: x.dev.token)
            #expect(again.status == 409 && again.json?.string("code") == "conflict", "\(again.text)")
        }
    }
}
