import CaregateServer
import Foundation
import Testing

/// OAuth 2.0 client_credentials: token endpoint, JWT access tokens, JWKS, bearer tokens on /v3.
@Suite("OAuth client credentials")
struct OAuthTests {
    static func form(_ s: TestServer, _ body: String, path: String = "/oauth2/token", basic: (String, String)? = nil) async throws -> TestServer.Reply {
        var headers = ["Content-Type": "application/x-www-form-urlencoded"]
        if let (id, secret) = basic { headers["Authorization"] = "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString() }
        return try await s.request("POST", path, body: Data(body.utf8), headers: headers)
    }

    static func curl(_ arguments: [String]) async throws -> String {
        try await runProgram("/usr/bin/curl", ["--max-time", "10"] + arguments).output
    }

    static func client(_ s: TestServer, dev: String, app: String, scopes: [String], extra: [String: Any] = [:]) async throws -> (id: String, secret: String) {
        var body: [String: Any] = ["scopes": scopes, "grantTypes": ["client_credentials"]]
        for (k, v) in extra { body[k] = v }
        let reply = try await s.request("POST", "/manage/apps/\(app)/oauth-clients", token: dev, json: body)
        try expectStatus(reply, 201)
        return (reply.json!.string("clientId"), reply.json!.string("clientSecret"))
    }

    @Test("client_credentials: tokens work on /v3 with the clinic's grants; RFC 6749 errors", arguments: Backend.allCases)
    func clientCredentials(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients", "read:bills", "read:claims"], approving: ["read:patients", "read:claims"])
            let client = try await Self.client(s, dev: dev.token, app: app.id, scopes: ["read:patients", "read:bills"])

            let issued = try await Self.form(s, "grant_type=client_credentials&scope=read:patients+read:bills", basic: (client.id, client.secret))
            try expectStatus(issued, 200)
            #expect(issued.header("Cache-Control") == "no-store")
            #expect(issued.json?.string("token_type") == "Bearer")
            #expect(issued.json?["expires_in"] as? Int == 3600)
            #expect(issued.json?.string("scope") == "read:patients read:bills")
            let token = issued.json!.string("access_token")
            // Token ∩ clinic grants: patients yes, bills (not approved) no, claims (not in the token) no.
            #expect(try await s.status("GET", "/v3/patients", key: token, clinic: clinic) == 200)
            let bills = try await s.request("GET", "/v3/bills", token: token, organization: clinic.uuid)
            #expect(bills.status == 403)
            #expect(bills.json?.string("message") == "Insufficient scope. Required: read:bills")
            #expect(try await s.status("GET", "/v3/claims", key: token, clinic: clinic) == 403)
            // client_secret_post and %20 work too.
            let posted = try await Self.form(s, "grant_type=client_credentials&scope=read:patients%20read:bills&client_id=\(client.id)&client_secret=\(client.secret)")
            try expectStatus(posted, 200)

            // Errors.
            // (curl: URLSession on Linux waits forever on a Basic challenge it cannot answer.)
            let wrongSecret = try await Self.curl(["-s", "-i", "-u", "\(client.id):nope", "-d", "grant_type=client_credentials", s.base + "/oauth2/token"])
            #expect(wrongSecret.hasPrefix("HTTP/1.1 401"))
            #expect(wrongSecret.contains(#"{"error":"invalid_client""#))
            #expect(wrongSecret.contains(#"WWW-Authenticate: Basic realm="caregate""#))
            let wrongBody = try await Self.form(s, "grant_type=client_credentials&client_id=\(client.id)&client_secret=nope")
            #expect(wrongBody.status == 401)
            #expect(wrongBody.json?.string("error") == "invalid_client")
            let grant = try await Self.form(s, "grant_type=password&username=a&password=b", basic: (client.id, client.secret))
            #expect(grant.status == 400 && grant.json?.string("error") == "unsupported_grant_type")
            let noGrant = try await Self.form(s, "scope=read:patients", basic: (client.id, client.secret))
            #expect(noGrant.json?.string("error") == "invalid_request")
            let notAllowed = try await Self.form(s, "grant_type=client_credentials&scope=read:claims", basic: (client.id, client.secret))
            #expect(notAllowed.status == 400)
            #expect(notAllowed.json?.string("error") == "invalid_scope")
            #expect(notAllowed.json?.string("error_description").contains("read:claims") == true)
            let unknown = try await Self.form(s, "grant_type=client_credentials&scope=read:everything", basic: (client.id, client.secret))
            #expect(unknown.json?.string("error") == "invalid_scope")
            #expect(unknown.json?.string("error_description").contains("read:everything") == true)
            let json = try await s.request("POST", "/oauth2/token", json: ["grant_type": "client_credentials"])
            #expect(json.status == 400 && json.json?.string("error") == "invalid_request")

            // A tampered token is refused.
            let tampered = String(token.dropLast(2)) + (token.hasSuffix("AA") ? "BB" : "AA")
            #expect(try await s.status("GET", "/v3/patients", key: tampered, clinic: clinic) == 401)
        }
    }

    @Test("practice API: no scope means apiv2; apiv2 with a specific scope and read-only writes are invalid_scope")
    func practiceRules() async throws {
        try await withServer(.sqlite) { s in
            let dev = try await s.createDeveloper()
            let slug = "pa-" + UUID().uuidString.prefix(8).lowercased()
            let app = try await s.request("POST", "/manage/apps", token: dev.token,
                                          json: ["slug": slug, "name": "pa", "surface": "practice-api", "scopes": ["apiv2", "system/patients.read", "system/languages.read"]])
            try expectStatus(app, 201)
            let client = try await Self.client(s, dev: dev.token, app: app.json!.string("id"), scopes: ["apiv2", "system/patients.read", "system/languages.read"])
            let none = try await Self.form(s, "grant_type=client_credentials", path: "/api/2.0/oauth2/token/", basic: (client.id, client.secret))
            try expectStatus(none, 200)
            #expect(none.json?.string("scope") == "apiv2")
            let combined = try await Self.form(s, "grant_type=client_credentials&scope=apiv2+system/patients.read", path: "/api/2.0/oauth2/token/", basic: (client.id, client.secret))
            #expect(combined.json?.string("error") == "invalid_scope")
            #expect(combined.json?.string("error_description").contains("apiv2") == true)
            let readOnly = try await Self.form(s, "grant_type=client_credentials&scope=system/languages.write", path: "/api/2.0/oauth2/token/", basic: (client.id, client.secret))
            #expect(readOnly.json?.string("error") == "invalid_scope")
            #expect(readOnly.json?.string("error_description").contains("system/languages.write") == true)
            let specific = try await Self.form(s, "grant_type=client_credentials&scope=system/patients.read", path: "/api/2.0/oauth2/token/", basic: (client.id, client.secret))
            #expect(specific.json?.string("scope") == "system/patients.read")
        }
    }

    @Test("credential types: a service-key scope cannot go to an API-key-only client, and vice versa at issue time")
    func credentialTypes() async throws {
        try await withServer(.sqlite) { s in
            let dev = try await s.createDeveloper()
            let slug = "pl-" + UUID().uuidString.prefix(8).lowercased()
            let app = try await s.request("POST", "/manage/apps", token: dev.token,
                                          json: ["slug": slug, "name": "pl", "surface": "platform", "scopes": ["identity.merge", "cms.identity.match", "patient/*.read"]])
            try expectStatus(app, 201)
            let appID = app.json!.string("id")
            // identity.merge on an API key: refused when the key is created.
            let key = try await s.request("POST", "/manage/apps/\(appID)/keys", token: dev.token, json: ["name": "k", "environment": "prd", "scopes": ["identity.merge"]])
            #expect(key.status == 400)
            #expect(key.json?.string("message").contains("API Key") == true)
            // A SMART-only scope on an OAuth client: refused when the client is registered.
            let smart = try await s.request("POST", "/manage/apps/\(appID)/oauth-clients", token: dev.token,
                                            json: ["scopes": ["patient/*.read"], "grantTypes": ["client_credentials"]])
            #expect(smart.status == 400)
            _ = try await Self.client(s, dev: dev.token, app: appID, scopes: ["identity.merge"], extra: ["credentialType": "service_key"])
        }
    }

    @Test("tokens verify against /.well-known/jwks.json with an independent JWT library (joserfc), before and after a key rotation",
          arguments: TokenAlgorithm.allCases)
    func jwks(_ algorithm: TokenAlgorithm) async throws {
        try await withServer(.sqlite, configure: { $0.tokenAlgorithm = algorithm }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 1)
            let client = try await Self.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            func issue() async throws -> String {
                try await Self.form(s, "grant_type=client_credentials", basic: (client.id, client.secret)).json!.string("access_token")
            }
            let metadata = try await s.request("GET", "/.well-known/oauth-authorization-server")
            #expect(metadata.json?.string("token_endpoint") == metadata.json!.string("issuer") + "/oauth2/token")
            // SMART discovery: the required fields, absolute URLs, S256 and never plain.
            let smart = try #require(try await s.request("GET", "/.well-known/smart-configuration").json)
            #expect(smart.string("token_endpoint") == metadata.json!.string("token_endpoint"))
            #expect(smart.string("jwks_uri").hasPrefix("http"))
            #expect(Set(smart.strings("grant_types_supported")) == ["client_credentials", "authorization_code", "refresh_token"])
            #expect(smart.strings("code_challenge_methods_supported") == ["S256"])
            #expect(smart.strings("token_endpoint_auth_methods_supported").contains("private_key_jwt"))
            #expect(Set(smart.strings("token_endpoint_auth_signing_alg_values_supported")) == ["RS384", "ES384"])
            #expect(smart.strings("capabilities").contains("client-confidential-asymmetric"))
            #expect(smart.strings("scopes_supported").contains("system/patients.read"))
            let script = """
            import json, sys
            from joserfc import jwt
            from joserfc.jwk import KeySet
            keys = KeySet.import_key_set(json.loads(sys.argv[1]))
            out = []
            for token in sys.argv[2:]:
                t = jwt.decode(token, keys, algorithms=["ES256", "RS256"])
                out.append({"alg": t.header["alg"], "kid": t.header["kid"], "typ": t.header.get("typ"), "sub": t.claims["sub"], "scope": t.claims["scope"]})
            print(json.dumps(out))
            """
            func verify(_ tokens: [String]) async throws -> [[String: Any]] {
                let keys = try await s.request("GET", "/.well-known/jwks.json")
                try expectStatus(keys, 200)
                let (status, output) = try await runProgram("/usr/bin/env", ["python3", "-c", script, keys.text] + tokens)
                #expect(status == 0, "joserfc: \(output)")
                return (try? JSONSerialization.jsonObject(with: Data(output.utf8))) as? [[String: Any]] ?? []
            }

            let first = try await issue()
            let before = try await verify([first])
            #expect(before.first?["alg"] as? String == algorithm.rawValue)
            #expect(before.first?["typ"] as? String == "at+jwt" && before.first?["sub"] as? String == client.id)
            #expect(before.first?["scope"] as? String == "read:patients")

            // Rotation (operator only): new tokens use the new key; the old key stays published
            // and its tokens keep working until they expire.
            #expect(try await s.request("POST", "/manage/signing-keys/rotate", token: dev.token).status == 403)
            let rotated = try await s.request("POST", "/manage/signing-keys/rotate", token: s.operatorToken)
            try expectStatus(rotated, 201)
            #expect(rotated.json?.string("retired") == before.first?["kid"] as? String)
            let second = try await issue()
            let after = try await verify([first, second])
            #expect(after.count == 2)
            #expect(after.last?["kid"] as? String == rotated.json?.string("kid"))
            #expect(after.first?["kid"] as? String != after.last?["kid"] as? String)
            #expect(try await s.status("GET", "/v3/patients", key: first, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: second, clinic: clinic) == 200)
            // Beside the access-token key, an RSA key signs id_tokens (the same key when access tokens are RS256).
            let listed = try await s.request("GET", "/manage/signing-keys", token: s.operatorToken)
            #expect(listed.json?.array("data").count == (algorithm == .rs256 ? 2 : 4))
            let signing = listed.json?.array("data").filter { $0["signing"] as? Bool == true }.map { $0.string("kid") } ?? []
            #expect(signing.contains(rotated.json!.string("kid")) && signing.count == (algorithm == .rs256 ? 1 : 2))
        }
    }
}

@Suite("OAuth introspection and revocation")
struct OAuthLifecycleTests {
    @Test("introspection (RFC 7662) and revocation (RFC 7009); a revoked token is refused on the next request", arguments: Backend.allCases)
    func introspectAndRevoke(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 1)
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            let other = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            let post = { (body: String) in "\(body)&client_id=\(client.id)&client_secret=\(client.secret)" }
            let token = try await OAuthTests.form(s, post("grant_type=client_credentials")).json!.string("access_token")
            #expect(try await s.status("GET", "/v3/patients", key: token, clinic: clinic) == 200)

            let active = try await OAuthTests.form(s, post("token=\(token)"), path: "/oauth2/introspect")
            try expectStatus(active, 200)
            #expect(active.json?["active"] as? Bool == true)
            #expect(active.json?.string("scope") == "read:patients")
            #expect(active.json?.string("client_id") == client.id)
            #expect(active.json?["exp"] as? Int != nil)
            // Another client may not introspect it; garbage is inactive; both answer only {"active":false}.
            let foreign = try await OAuthTests.form(s, "token=\(token)&client_id=\(other.id)&client_secret=\(other.secret)", path: "/oauth2/introspect")
            #expect(foreign.text == #"{"active":false}"#)
            #expect(try await OAuthTests.form(s, post("token=garbage"), path: "/oauth2/introspect").text == #"{"active":false}"#)
            // Introspection needs client authentication.
            #expect(try await OAuthTests.form(s, "token=\(token)&client_id=\(client.id)&client_secret=nope", path: "/oauth2/introspect").status == 401)

            // Revocation: 200 for unknown tokens too; the revoked token stops on the next request.
            #expect(try await OAuthTests.form(s, post("token=unknown"), path: "/oauth2/revoke").status == 200)
            #expect(try await OAuthTests.form(s, post("token=\(token)"), path: "/oauth2/revoke").status == 200)
            #expect(try await s.status("GET", "/v3/patients", key: token, clinic: clinic) == 401)
            #expect(try await OAuthTests.form(s, post("token=\(token)"), path: "/oauth2/introspect").text == #"{"active":false}"#)
            // A fresh token of the same client still works.
            let fresh = try await OAuthTests.form(s, post("grant_type=client_credentials")).json!.string("access_token")
            #expect(try await s.status("GET", "/v3/patients", key: fresh, clinic: clinic) == 200)
        }
    }

    @Test("a token of a clinic-bound client works only in that clinic")
    func boundClient() async throws {
        try await withServer(.sqlite) { s in
            let dev = try await s.createDeveloper()
            let a = try await s.createClinic(patients: 1)
            let b = try await s.createClinic(patients: 1)
            let app = try await s.createApp(developer: dev.token, scopes: ["read:patients"])
            _ = try await s.install(app: app.id, clinic: a)
            _ = try await s.install(app: app.id, clinic: b)
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"], extra: ["organizationId": a.uuid])
            let token = try await OAuthTests.form(s, "grant_type=client_credentials&client_id=\(client.id)&client_secret=\(client.secret)").json!.string("access_token")
            #expect(try await s.status("GET", "/v3/patients", key: token, clinic: a) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: token, clinic: b) == 401)
            // The token names its clinic, so the header may be left out; an API key still needs it.
            #expect(try await s.request("GET", "/v3/patients", token: token).status == 200)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            let missing = try await s.request("GET", "/v3/patients", token: key.key)
            #expect(missing.status == 400 && missing.json?.string("message") == "X-Organization-Id header is required")
        }
    }
}

/// private_key_jwt (RFC 7523, SMART backend services) with keys and assertions made by joserfc.
@Suite("OAuth client assertions")
struct ClientAssertionTests {
    static let python = """
    import json, sys, time
    from joserfc import jwt
    from joserfc.jwk import ECKey, RSAKey, import_key
    if sys.argv[1] == "keys":
        es = ECKey.generate_key("P-384", parameters={"kid": "es-1", "alg": "ES384", "use": "sig"}, private=True)
        rs = RSAKey.generate_key(2048, parameters={"kid": "rs-1", "alg": "RS384", "use": "sig"}, private=True)
        print(json.dumps({"public": {"keys": [es.as_dict(private=False), rs.as_dict(private=False)]},
                          "es": es.as_dict(private=True), "rs": rs.as_dict(private=True)}))
    else:
        key = import_key(json.loads(sys.argv[2]))
        claims = json.loads(sys.argv[4])
        claims["exp"] = int(time.time()) + claims.pop("expiresIn")
        header = {"alg": sys.argv[3], "kid": key.kid, "typ": "JWT"} | claims.pop("header", {})
        print(jwt.encode(header, claims, key, algorithms=[sys.argv[3]]))
    """

    /// A client assertion signed with `key` (a private JWK); `claims` may carry `expiresIn`
    /// (seconds to `exp`) and `header` (extra header fields).
    static func assertion(_ key: Any, _ alg: String, claims: [String: Any]) async throws -> String {
        let privateKey = String(decoding: try JSONSerialization.data(withJSONObject: key), as: UTF8.self)
        return try await python(["sign", privateKey, alg, String(decoding: try JSONSerialization.data(withJSONObject: claims), as: UTF8.self)])
    }

    static func newKeys() async throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(try await python(["keys"]).utf8)) as? [String: Any])
    }

    static func python(_ arguments: [String]) async throws -> String {
        let (status, output) = try await runProgram("/usr/bin/env", ["python3", "-c", python] + arguments)
        guard status == 0 else { throw TestSetupError("joserfc: \(output)") }
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("private_key_jwt: RS384 and ES384 accepted; replay, wrong aud, long exp and unknown keys refused")
    func assertions() async throws {
        try await withServer(.sqlite) { s in
            let keys = try await Self.newKeys()
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 1)
            let registered = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                                 json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwks": keys["public"]!])
            try expectStatus(registered, 201)
            #expect(registered.json?["clientSecret"] is NSNull)
            #expect(registered.json?.string("tokenEndpointAuthMethod") == "private_key_jwt")
            let clientID = registered.json!.string("clientId")
            let audience = s.server.issuer + "/oauth2/token"
            func assertion(_ key: String, _ alg: String, aud: String = audience, expiresIn: Int = 120, jti: String = UUID().uuidString, iss: String? = nil) async throws -> String {
                try await Self.assertion(keys[key]!, alg, claims: ["iss": iss ?? clientID, "sub": clientID, "aud": aud, "jti": jti, "expiresIn": expiresIn])
            }
            func token(_ jwt: String) async throws -> TestServer.Reply {
                try await OAuthTests.form(s, "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=\(jwt)")
            }
            let es = try await assertion("es", "ES384")
            let issued = try await token(es)
            try expectStatus(issued, 200)
            #expect(try await s.status("GET", "/v3/patients", key: issued.json!.string("access_token"), clinic: clinic) == 200)
            try expectStatus(try await token(try await assertion("rs", "RS384")), 200)

            let replay = try await token(es)
            #expect(replay.status == 401)
            #expect(replay.json?.string("error") == "invalid_client")
            #expect(replay.json?.string("error_description").contains("already used") == true)
            #expect(try await token(try await assertion("es", "ES384", aud: "https://elsewhere.example/oauth2/token")).json?.string("error") == "invalid_client")
            #expect(try await token(try await assertion("es", "ES384", expiresIn: 600)).json?.string("error_description").contains("5 minutes") == true)
            #expect(try await token(try await assertion("es", "ES384", expiresIn: -30)).status == 401)
            #expect(try await token(try await assertion("es", "ES384", iss: "cli_00000000000000000000000000000000")).status == 401)
            let wrongType = try await OAuthTests.form(s, "grant_type=client_credentials&client_assertion_type=jwt&client_assertion=\(es)")
            #expect(wrongType.json?.string("error") == "invalid_request")
            let type = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
            let untyped = try await OAuthTests.form(s, "grant_type=client_credentials&client_assertion=\(es)")
            #expect(untyped.status == 400 && untyped.json?.string("error") == "invalid_request")
            let typeAlone = try await OAuthTests.form(s, "grant_type=client_credentials&\(type)")
            #expect(typeAlone.status == 400 && typeAlone.json?.string("error_description") == "client_assertion is required")
            // The limit counts characters, as the document's maxLength does.
            let oversized = try await OAuthTests.form(s, "grant_type=client_credentials&\(type)&client_assertion=\(String(repeating: "a", count: 8_193))")
            #expect(oversized.status == 400 && oversized.json?.string("error_description").contains("at most 8192 characters") == true, "\(oversized.text)")
        }
    }
}

/// A static file server on loopback (Python's http.server) that counts the requests it serves.
final class FileServer: Sendable {
    let directory: URL
    let port: Int
    private let process: Process
    private let log: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        log = directory.appendingPathComponent("requests.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let (process, line) = try startHelper(
            URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", directory.path],
            standardError: try FileHandle(forWritingTo: log))
        // "Serving HTTP on 127.0.0.1 port 43123 (http://127.0.0.1:43123/) ..."
        guard let range = line.range(of: "port "), let port = Int(line[range.upperBound...].prefix { $0.isNumber }) else {
            stopHelper(process)
            throw TestSetupError("http.server said \(line)")
        }
        self.port = port
        self.process = process
    }

    func url(_ name: String) -> String { "http://127.0.0.1:\(port)/\(name)" }

    func write(_ name: String, json: Any) throws {
        try JSONSerialization.data(withJSONObject: json).write(to: directory.appendingPathComponent(name), options: .atomic)
    }

    /// How many GET requests for `name` it has served.
    func requests(_ name: String) throws -> Int {
        try String(contentsOf: log, encoding: .utf8).components(separatedBy: "\"GET /\(name) ").count - 1
    }

    func stop() {
        stopHelper(process)
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("OAuth client JWKS by URL")
struct ClientJWKSURLTests {
    @Test("private_key_jwt with keys fetched from the client's jwksUri: cached, refetched for a new kid, jku checked")
    func jwksByURL() async throws {
        let files = try FileServer()
        defer { files.stop() }
        let keys = try await ClientAssertionTests.newKeys()
        let publicKeys = try #require((keys["public"] as? [String: Any])?["keys"] as? [[String: Any]])
        // The client publishes its EC key first; the RSA key comes with a later rotation.
        try files.write("jwks.json", json: ["keys": publicKeys.filter { $0["kid"] as? String == "es-1" }])
        try await withServer(.sqlite, configure: { $0.jwksRefetchInterval = .zero; $0.allowedOutboundHosts = ["127.0.0.1"] }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 1)
            // Only https (or http on loopback) URLs, and not together with inline keys.
            for bad in ["http://example.com/jwks.json", "ftp://127.0.0.1/jwks.json", "https://u@example.com/jwks.json"] {
                let refused = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                                  json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwksUri": bad])
                #expect(refused.status == 400 && refused.text.contains("jwksUri"), "\(bad)")
            }
            let registered = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                                 json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwksUri": files.url("jwks.json")])
            try expectStatus(registered, 201)
            #expect(registered.json?["clientSecret"] is NSNull)
            #expect(registered.json?.string("tokenEndpointAuthMethod") == "private_key_jwt")
            let clientID = registered.json!.string("clientId")
            let audience = s.server.issuer + "/oauth2/token"
            func token(_ key: String, _ alg: String, header: [String: Any] = [:]) async throws -> TestServer.Reply {
                let jwt = try await ClientAssertionTests.assertion(keys[key]!, alg, claims: [
                    "iss": clientID, "sub": clientID, "aud": audience, "jti": UUID().uuidString, "expiresIn": 120, "header": header,
                ])
                return try await OAuthTests.form(s, "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=\(jwt)")
            }

            try expectStatus(try await token("es", "ES384"), 200)
            try expectStatus(try await token("es", "ES384"), 200)
            #expect(try files.requests("jwks.json") == 1, "a known kid is served from the cache")
            #expect(s.server.clientKeySetParses == 1, "the set is parsed once, not per assertion")
            // jku may only name the registered URL.
            try expectStatus(try await token("es", "ES384", header: ["jku": files.url("jwks.json")]), 200)
            let elsewhere = try await token("es", "ES384", header: ["jku": "https://attacker.example/jwks.json"])
            #expect(elsewhere.status == 401 && elsewhere.json?.string("error") == "invalid_client")
            #expect(elsewhere.json?.string("error_description").contains("jku") == true)
            // The client rotates to its RSA key: the unknown kid makes the server fetch again.
            try files.write("jwks.json", json: ["keys": publicKeys.filter { $0["kid"] as? String == "rs-1" }])
            let rotated = try await token("rs", "RS384")
            try expectStatus(rotated, 200)
            #expect(try files.requests("jwks.json") == 2)
            #expect(s.server.clientKeySetParses == 2, "a changed set is parsed again")
            #expect(try await s.status("GET", "/v3/patients", key: rotated.json!.string("access_token"), clinic: clinic) == 200)
            // The retired EC key no longer verifies.
            #expect(try await token("es", "ES384").status == 401)

            // A URL that cannot be used: a 404, an answer that is not a key set, a redirect (never
            // followed) and a closed port are all invalid_client, in the same words: a jwksUri
            // cannot be used to find out what answers where behind the server.
            try files.write("not-a-key-set.json", json: ["hello": "world"])
            try FileManager.default.createDirectory(at: files.directory.appendingPathComponent("moved"), withIntermediateDirectories: true)
            try files.write("moved/index.html", json: ["keys": publicKeys])
            let closedPort = try OAuthTests.closedPort()
            var descriptions: Set<String> = []
            for url in [files.url("missing.json"), files.url("not-a-key-set.json"), files.url("moved"), "http://127.0.0.1:\(closedPort)/jwks.json"] {
                let unreachable = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                                      json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwksUri": url])
                try expectStatus(unreachable, 201)
                let unusableID = unreachable.json!.string("clientId")
                let jwt = try await ClientAssertionTests.assertion(keys["es"]!, "ES384", claims: [
                    "iss": unusableID, "sub": unusableID, "aud": audience, "jti": UUID().uuidString, "expiresIn": 120,
                ])
                let refused = try await OAuthTests.form(s, "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=\(jwt)")
                #expect(refused.status == 401 && refused.json?.string("error") == "invalid_client", "\(url): \(refused.text)")
                descriptions.insert(refused.json?.string("error_description") ?? "")
            }
            #expect(descriptions == ["the client's keys could not be obtained from its jwksUri"])
            #expect(try files.requests("moved") == 1 && files.requests("moved/") == 0, "the redirect is not followed")
        }
    }
}

extension OAuthTests {
    /// A loopback port nothing listens on (bound, then closed).
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestSetupError("bind() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
