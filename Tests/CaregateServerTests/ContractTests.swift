import CaregateServer
import CaregateStore
import Foundation
import Scopes
import Testing

/// The error contract, input validation, the management API's rules, the audit log.
@Suite("HTTP contract")
struct ContractTests {
    struct Setup {
        var dev: (id: String, token: String)
        var clinic: TestServer.Clinic
        var app: (id: String, liveVersionId: String)
        var key: String
    }

    static func setup(_ s: TestServer, scopes: [String] = ["read:patients", "read:notes", "read:soap_notes", "write:tasks", "read:tasks", "write:notes_images", "read:marketplace"]) async throws -> Setup {
        let dev = try await s.createDeveloper()
        let clinic = try await s.createClinic(patients: 3)
        let app = try await s.createApp(developer: dev.token, scopes: scopes)
        _ = try await s.install(app: app.id, clinic: clinic)
        return Setup(dev: dev, clinic: clinic, app: app, key: try await s.createKey(developer: dev.token, app: app.id, scopes: nil).key)
    }

    @Test("401: missing, malformed, unknown credential; every answer carries its trace id")
    func unauthorized() async throws {
        try await withServer(.sqlite) { s in
            let x = try await Self.setup(s)
            let missing = try await s.request("GET", "/v3/patients", organization: x.clinic.uuid)
            #expect(missing.status == 401)
            #expect(missing.json?.string("code") == "unauthorized")
            #expect(missing.header("WWW-Authenticate") == #"Bearer realm="caregate""#)  // no error code without credentials (RFC 6750)
            #expect(UUID(uuidString: missing.header("X-Trace-Id") ?? "") != nil)
            #expect(missing.json?.string("trace_id") == missing.header("X-Trace-Id"))
            let basic = try await s.request("GET", "/v3/patients", organization: x.clinic.uuid, headers: ["Authorization": "Basic Zm9vOmJhcg=="])
            #expect(basic.status == 401)
            let wrong = try await s.request("GET", "/v3/patients", token: String(x.key.dropLast()) + (x.key.hasSuffix("A") ? "B" : "A"), organization: x.clinic.uuid)
            #expect(wrong.status == 401)
            #expect(wrong.header("WWW-Authenticate") == #"Bearer realm="caregate", error="invalid_token""#)
            // No probing without a key: an unknown route is 401 before it is 404.
            #expect(try await s.request("GET", "/v3/nothing-here", organization: x.clinic.uuid).status == 401)
            let unknown = try await s.request("GET", "/v3/nothing-here", token: x.key, organization: x.clinic.uuid)
            #expect(unknown.status == 404)
            #expect(unknown.json?.string("code") == "not_found")
            #expect(try await s.request("DELETE", "/v3/patients", token: x.key, organization: x.clinic.uuid).status == 405)
            // The key in the query string is never read.
            #expect(try await s.request("GET", "/v3/patients?access_token=\(x.key)", organization: x.clinic.uuid).status == 401)
            // A client's trace id is kept when it is a UUID, replaced otherwise.
            let traced = try await s.request("GET", "/healthz", headers: ["X-Trace-Id": "550E8400-E29B-41D4-A716-446655440000"])
            #expect(traced.header("X-Trace-Id") == "550e8400-e29b-41d4-a716-446655440000")
            let injected = try await s.request("GET", "/healthz", headers: ["X-Trace-Id": "abc\"}{"])
            #expect(UUID(uuidString: injected.header("X-Trace-Id") ?? "") != nil)
            // Management 404s use the same shape.
            let manage404 = try await s.request("GET", "/manage/nothing", token: s.operatorToken)
            #expect(manage404.status == 404)
            #expect(manage404.json?.string("trace_id") == manage404.header("X-Trace-Id"))
        }
    }

    @Test("organization header: required, either form, and a clinic without the app is refused")
    func organizationHeader() async throws {
        try await withServer(.sqlite) { s in
            let x = try await Self.setup(s)
            #expect(try await s.request("GET", "/v3/patients", token: x.key).status == 400)
            #expect(try await s.request("GET", "/v3/patients", token: x.key, organization: "not-an-org").status == 400)
            // Both forms, in any letter case, name the same clinic: /me answers the canonical id every time.
            for form in [x.clinic.uuid, x.clinic.uuid.uppercased(), x.clinic.id, "org_" + x.clinic.id.dropFirst(4).uppercased()] {
                let me = try await s.request("GET", "/v3/marketplace/me", token: x.key, organization: form)
                #expect(me.status == 200, "\(form)")
                #expect(me.json?.object("data")?.object("organization")?.string("id") == x.clinic.id, "\(form)")
            }
            // /me is answered from the credential: HEAD has no body, and it takes no query parameters.
            let head = try await s.request("HEAD", "/v3/marketplace/me", token: x.key, organization: x.clinic.uuid)
            #expect(head.status == 200 && head.text.isEmpty && head.header("Content-Type") == "application/json")
            let withQuery = try await s.request("GET", "/v3/marketplace/me?verbose=1", token: x.key, organization: x.clinic.uuid)
            #expect(withQuery.status == 400)
            #expect(withQuery.json?.string("message").contains(#"unknown query parameter "verbose""#) == true)
            let v1 = try await s.request("GET", "/v1/marketplace/me?", token: x.key, organization: x.clinic.id)
            #expect(v1.status == 200 && v1.json?.object("data")?.object("app")?.string("id") == x.app.id)
            for malformed in [x.clinic.uuid.replacingOccurrences(of: "-", with: "_"), String(x.clinic.uuid.dropLast()) + "g", "ORG_" + x.clinic.id.dropFirst(4), x.clinic.id + "0"] {
                let reply = try await s.request("GET", "/v3/marketplace/me", token: x.key, organization: malformed)
                #expect(reply.status == 400, "\(malformed)")
                #expect(reply.json?.string("message").contains("X-Organization-Id must be an organization id") == true, "\(malformed)")
            }
            let other = try await s.createClinic(patients: 0)
            let refused = try await s.request("GET", "/v3/patients", token: x.key, organization: other.uuid)
            #expect(refused.status == 401)
            #expect(refused.json?.string("message").contains("not installed") == true)
        }
    }

    @Test("bad parameters and bodies are 400s naming the field, never 500s")
    func validation() async throws {
        try await withServer(.sqlite) { s in
            let x = try await Self.setup(s)
            let cases: [(String, String, Any?, String)] = [
                ("GET", "/v3/patients?limit=0", nil, "limit must be an integer from 1 to 200"),
                ("GET", "/v3/patients?limit=201", nil, "limit must be an integer from 1 to 200"),
                ("GET", "/v3/patients?limit=abc", nil, "limit must be an integer from 1 to 200"),
                ("GET", "/v3/patients?cursor=nope", nil, "cursor must be an id of the form pat_<32 hex digits>"),
                ("GET", "/v3/patients?dateOfBirth=1990-02-30", nil, "dateOfBirth must be a date, YYYY-MM-DD"),
                ("GET", "/v3/patients?color=blue", nil, #"unknown query parameter "color""#),
                ("GET", "/v3/patients?limit=1&limit=2", nil, #"query parameter "limit" is repeated"#),
                ("GET", "/v3/patients?name=%25%27%3B--", nil, "name must be 1 to 100 letters"),
                ("GET", "/v3/tasks?status=done", nil, "status must be one of cancelled, completed, open"),
                ("GET", "/v3/tasks?startDate=2026-05-01&endDate=2026-04-01", nil, "startDate must not be after endDate"),
                ("GET", "/v3/notes?includeSoapNote=maybe", nil, "includeSoapNote must be true or false"),
                ("POST", "/v3/tasks", ["description": "no title"], #"field "title" is required"#),
                ("POST", "/v3/tasks", ["title": 42], #"field "title" must be a string"#),
                ("POST", "/v3/tasks", ["title": "t", "dueDate": "tomorrow"], #"field "dueDate" must be a date, YYYY-MM-DD"#),
                ("POST", "/v3/tasks", ["title": "t", "priority": "high"], #"unknown field "priority""#),
                ("POST", "/v3/tasks", ["title": "t", "patientId": "pat_00000000000000000000000000000000"], #"field "patientId": no patients record"#),
            ]
            for (method, path, json, message) in cases {
                let reply = try await s.request(method, path, token: x.key, organization: x.clinic.uuid, json: json)
                #expect(reply.status == 400, "\(method) \(path): \(reply.status)")
                #expect(reply.json?.string("message").contains(message) == true, "\(path): \(reply.json?.string("message") ?? reply.text)")
            }
            let notJSON = try await s.request("POST", "/v3/tasks", token: x.key, organization: x.clinic.uuid, body: Data("title=x".utf8),
                                              headers: ["Content-Type": "application/x-www-form-urlencoded"])
            #expect(notJSON.status == 415)
            let big = try await s.request("POST", "/v3/tasks", token: x.key, organization: x.clinic.uuid,
                                          json: ["title": "t", "description": String(repeating: "x", count: 70_000)])
            #expect(big.status == 413)
            // Task status transitions: only open → completed | cancelled.
            let task = try await s.request("POST", "/v3/tasks", token: x.key, organization: x.clinic.uuid, json: ["title": "t"])
            let id = task.json!.object("data")!.string("id")
            #expect(try await s.request("PATCH", "/v3/tasks/\(id)", token: x.key, organization: x.clinic.uuid, json: ["status": "completed"]).status == 200)
            let again = try await s.request("PATCH", "/v3/tasks/\(id)", token: x.key, organization: x.clinic.uuid, json: ["status": "cancelled"])
            #expect(again.status == 409)
            #expect(try await s.request("PATCH", "/v3/tasks/\(id)", token: x.key, organization: x.clinic.uuid, json: ["status": "open"]).status == 400)
        }
    }

    @Test("note images: content type, magic bytes, size limit, multipart")
    func images() async throws {
        try await withServer(.sqlite) { s in
            let x = try await Self.setup(s)
            let notes = try await s.request("GET", "/v3/notes?limit=1", token: x.key, organization: x.clinic.uuid)
            let note = notes.json!.array("data")[0]
            let path = "/v3/notes/\(note.string("id"))/images?providerId=\(note.string("providerId"))"
            let png = Data(EnforcementTests.png)
            #expect(try await s.request("POST", path, token: x.key, organization: x.clinic.uuid, body: png, headers: ["Content-Type": "image/png"]).status == 201)
            let lying = try await s.request("POST", path, token: x.key, organization: x.clinic.uuid, body: Data("not a png".utf8), headers: ["Content-Type": "image/png"])
            #expect(lying.status == 400)
            #expect(try await s.request("POST", path, token: x.key, organization: x.clinic.uuid, body: png, headers: ["Content-Type": "text/plain"]).status == 415)
            let huge = Data(EnforcementTests.png + Array(repeating: 0, count: 5 * 1024 * 1024 + 100_000))
            #expect(try await s.request("POST", path, token: x.key, organization: x.clinic.uuid, body: huge, headers: ["Content-Type": "image/png"]).status == 413)
            let boundary = "XyZ123"
            var multipart = Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n".utf8)
            multipart.append(png)
            multipart.append(Data("\r\n--\(boundary)--\r\n".utf8))
            let uploaded = try await s.request("POST", path, token: x.key, organization: x.clinic.uuid, body: multipart,
                                               headers: ["Content-Type": "multipart/form-data; boundary=\(boundary)"])
            #expect(uploaded.status == 201)
            #expect(uploaded.json?.object("data")?["size"] as? Int == png.count)
            let noProvider = try await s.request("POST", "/v3/notes/\(note.string("id"))/images", token: x.key, organization: x.clinic.uuid, body: png, headers: ["Content-Type": "image/png"])
            #expect(noProvider.json?.string("message") == "providerId is required")
        }
    }

    @Test("management: who may call what, validation, tenant checks")
    func management() async throws {
        try await withServer(.sqlite) { s in
            let x = try await Self.setup(s)
            let otherDev = try await s.createDeveloper()
            // Wrong principal kinds.
            #expect(try await s.request("POST", "/manage/developers", token: x.dev.token, json: ["name": "a", "email": "a@b.co"]).status == 403)
            #expect(try await s.request("POST", "/manage/apps", token: s.operatorToken, json: ["slug": "abc", "name": "a", "scopes": []]).status == 403)
            #expect(try await s.request("POST", "/manage/developers", json: ["name": "a", "email": "a@b.co"]).status == 401)
            #expect(try await s.request("POST", "/manage/developers", token: "cg_op_0000000000000000_nope", json: ["name": "a", "email": "a@b.co"]).status == 401)
            // Another developer cannot see or touch this app.
            #expect(try await s.request("GET", "/manage/apps/\(x.app.id)", token: otherDev.token).status == 404)
            #expect(try await s.request("POST", "/manage/apps/\(x.app.id)/keys", token: otherDev.token, json: ["name": "k", "environment": "prd"]).status == 404)
            // Validation.
            let badSlug = try await s.request("POST", "/manage/apps", token: x.dev.token, json: ["slug": "Bad Slug", "name": "a", "scopes": ["read:patients"]])
            #expect(badSlug.status == 400)
            let unknownScope = try await s.request("POST", "/manage/apps", token: x.dev.token, json: ["slug": "okslug", "name": "a", "scopes": ["read:patients", "read:everything"]])
            #expect(unknownScope.status == 400)
            #expect(unknownScope.json?.string("code") == "invalid_scope")
            #expect(unknownScope.json?.string("message").contains("read:everything") == true)
            let lookalike = try await s.request("POST", "/manage/apps", token: x.dev.token, json: ["slug": "okslug", "name": "a", "scopes": ["read:p\u{0430}tients"]])
            #expect(lookalike.status == 400)
            let duplicate = try await s.request("GET", "/manage/apps/\(x.app.id)", token: x.dev.token)
            let slug = duplicate.json!.string("slug")
            #expect(try await s.request("POST", "/manage/apps", token: x.dev.token, json: ["slug": slug, "name": "a", "scopes": ["read:patients"]]).status == 409)
            // Another clinic's admin cannot touch this clinic's installation.
            let other = try await s.createClinic(patients: 0)
            let installation = try await s.request("POST", "/manage/installations", token: other.adminToken, json: ["appId": x.app.id, "scopes": ["read:bills"]])
            #expect(installation.status == 400)  // not requested by the app
        }
    }

    @Test("audit: every decision recorded with route, scope and trace id; paged; clinic admins see their own", arguments: Backend.allCases)
    func audit(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let x = try await Self.setup(s)
            let ok = try await s.request("GET", "/v3/patients", token: x.key, organization: x.clinic.uuid)
            let denied = try await s.request("GET", "/v3/bills", token: x.key, organization: x.clinic.uuid)
            #expect(denied.status == 403)
            let page = try await s.request("GET", "/manage/audit?organizationId=\(x.clinic.id)&limit=50", token: s.operatorToken)
            try expectStatus(page, 200)
            let events = page.json!.array("data")
            let allowedEvent = try #require(events.first { $0.string("traceId") == ok.header("X-Trace-Id") })
            #expect(allowedEvent.string("decision") == "allowed")
            #expect(allowedEvent.string("route") == "GET /v3/patients")
            #expect(allowedEvent.string("requiredScope") == "read:patients")
            #expect(allowedEvent.string("appId") == x.app.id)
            #expect(allowedEvent.string("keyId").hasPrefix("key_"))
            let deniedEvent = try #require(events.first { $0.string("traceId") == denied.header("X-Trace-Id") })
            #expect(deniedEvent.string("decision") == "denied")
            #expect(deniedEvent.string("requiredScope") == "read:bills")
            #expect(deniedEvent["status"] as? Int == 403)
            #expect(!page.text.contains(x.key))
            let onlyDenied = try await s.request("GET", "/manage/audit?organizationId=\(x.clinic.id)&decision=denied", token: s.operatorToken)
            #expect(onlyDenied.json!.array("data").allSatisfy { $0.string("decision") == "denied" })
            // Paging: one at a time, newest first, no repeats.
            let first = try await s.request("GET", "/manage/audit?organizationId=\(x.clinic.id)&limit=1", token: s.operatorToken)
            let cursor = first.json!.string("nextCursor")
            let second = try await s.request("GET", "/manage/audit?organizationId=\(x.clinic.id)&limit=1&cursor=\(cursor)", token: s.operatorToken)
            #expect(first.json!.array("data")[0].string("id") > second.json!.array("data")[0].string("id"))
            // Clinic admins: their own clinic only.
            let own = try await s.request("GET", "/manage/audit", token: x.clinic.adminToken)
            #expect(own.json!.array("data").allSatisfy { $0.string("organizationId") == x.clinic.id })
            let other = try await s.createClinic(patients: 0)
            #expect(try await s.request("GET", "/manage/audit?organizationId=\(x.clinic.id)", token: other.adminToken).status == 403)
        }
    }

    @Test("secrets: keys and tokens are stored only as keyed hashes", arguments: Backend.allCases)
    func storedHashed(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let x = try await Self.setup(s)
            let rows = try await s.server.database.sql.raw("SELECT key_hash, display, lookup_id FROM api_keys").all()
            #expect(!rows.isEmpty)
            for row in rows {
                let hash = try row.decode(column: "key_hash", as: String.self)
                #expect(hash.count == 64 && !x.key.contains(hash))
                #expect(!(try row.decode(column: "display", as: String.self)).contains(String(x.key.suffix(40))))
            }
            let tokens = try await s.server.database.sql.raw("SELECT token_hash FROM access_tokens").all()
            for row in tokens {
                let hash = try row.decode(column: "token_hash", as: String.self)
                #expect(hash != x.dev.token && hash != x.clinic.adminToken && hash != s.operatorToken)
            }
            #expect(Secrets.keyedHash(x.key, key: s.server.grants.secret) == s.server.grants.hash(x.key))
            // What authentication reads of a key's row: its hash as the bytes of the presented key's digest.
            let grants = s.server.grants
            let lookupID = try #require(grants.lookupID(ofPresentedKey: x.key[...]))
            let presented = try #require(try await grants.presentedKey(lookupID: lookupID))
            #expect(presented.digest == Array(grants.digest(x.key[...])))
            #expect(presented.revokedAt == nil && x.key.contains("_\(presented.environment)_ak_"))
            #expect(try await grants.presentedKey(lookupID: String(lookupID.reversed())) == nil)
            // The direct path reads a key and its clinic as the request's bytes: the same lookup id,
            // digest and clinic as from strings, and anything else is no key.
            let shapes = [x.key, "cg_sbx_ak_" + String(repeating: "a", count: 52), String(x.key.dropLast()), x.key + "x", "cg_dev_ak_" + String(repeating: "a", count: 52), ""]
            for text in shapes {
                let fromBytes = text.utf8.withContiguousStorageIfAvailable { grants.lookupID(ofPresentedKey: UnsafeRawBufferPointer($0)) }
                #expect(fromBytes == .some(grants.lookupID(ofPresentedKey: text[...])), "\(text)")
            }
            // Each byte of a key's body is base62 or the key is none of ours.
            for byte in UInt8.min...UInt8.max {
                let text = Array("cg_sbx_ak_".utf8) + [byte] + Array(repeating: UInt8(ascii: "a"), count: 51)
                let base62 = (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                #expect(text.withUnsafeBytes { grants.lookupID(ofPresentedKey: $0) != nil } == base62, "byte \(byte)")
            }
            #expect(x.key.utf8.withContiguousStorageIfAvailable { Array(grants.digest(UnsafeRawBufferPointer($0))) } == Array(grants.digest(x.key[...])))
            for organization in [x.clinic.uuid, x.clinic.uuid.uppercased(), x.clinic.id, "org_" + String(repeating: "g", count: 32), x.clinic.uuid + " "] {
                let fromBytes = organization.utf8.withContiguousStorageIfAvailable { OrganizationBits(clientForm: UnsafeRawBufferPointer($0)) }
                #expect(fromBytes == .some(OrganizationBits(clientForm: organization)), "\(organization)")
            }
            #expect(OrganizationBits(clientForm: x.clinic.uuid) != nil && OrganizationBits(clientForm: x.clinic.uuid) == OrganizationBits(clientForm: x.clinic.id))
            // A stored hash that is not one (never written so) matches no key, rather than failing the read.
            try await s.server.database.sql.raw("UPDATE api_keys SET key_hash = 'not hex' WHERE lookup_id = \(bind: lookupID)").run()
            let damaged = try #require(try await grants.presentedKey(lookupID: lookupID))
            #expect(damaged.digest == [UInt8](repeating: 0, count: 32) && damaged.id == presented.id)
        }
    }

    @Test("constant-time comparison: equal only for equal strings")
    func constantTime() {
        #expect(Secrets.constantTimeEquals("abc", "abc"))
        #expect(!Secrets.constantTimeEquals("abc", "abd"))
        #expect(!Secrets.constantTimeEquals("abc", "abcd"))
        #expect(!Secrets.constantTimeEquals("", "a"))
        #expect(Secrets.constantTimeEquals("", ""))
        // Read eight bytes at a time and then byte by byte: a difference in any byte counts.
        let key = "cg_prd_ak_" + String(repeating: "x", count: 52)
        #expect(Secrets.constantTimeEquals(key, key))
        for position in [0, 7, 8, 15, 55, 56, 61] {
            var bytes = Array(key.utf8)
            bytes[position] ^= 1
            #expect(!Secrets.constantTimeEquals(key, String(decoding: bytes, as: UTF8.self)), "byte \(position)")
        }
    }

    @Test("health, readiness and metrics")
    func operations() async throws {
        try await withServer(.sqlite) { s in
            #expect(try await s.request("GET", "/healthz").text == #"{"status":"ok"}"#)
            #expect(try await s.request("GET", "/readyz").status == 200)
            // HEAD of Caregate's own GET routes: GET's status and headers, no body (it was a 405 whose Allow named HEAD).
            // Not /healthz: PipelineTests counts its HEAD requests exactly.
            for path in ["/readyz", "/openapi.json", "/.well-known/jwks.json"] {
                let head = try await s.request("HEAD", path)
                #expect(head.status == 200, "HEAD \(path)")
                #expect(head.text.isEmpty, "HEAD \(path)")
            }
            let metrics = try await s.request("GET", "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.text.contains("hb_requests") || metrics.text.contains("http"))
        }
    }
}
