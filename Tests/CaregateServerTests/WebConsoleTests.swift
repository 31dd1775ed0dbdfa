import CaregateServer
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing

/// A browser-like client: its own cookie jar (never the shared one), redirects not followed,
/// forms posted as `application/x-www-form-urlencoded`.
final class WebClient: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    let base: String
    private let jar = Mutex<[String: String]>([:])
    private var session: URLSession!

    struct Page {
        var status: Int
        var headers: [String: String]
        var html: String
        func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
        /// The value of the hidden `csrf` field of the page's (first) form.
        var csrf: String? { html.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/).map { String($0.1) } }
    }

    init(base: String) {
        self.base = base
        super.init()
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpShouldSetCookies = false
        configuration.httpCookieAcceptPolicy = .never
        session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
        completionHandler: @escaping (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }

    var cookies: [String: String] { jar.withLock { $0 } }
    func setCookie(_ name: String, _ value: String?) { jar.withLock { $0[name] = value } }

    func get(_ path: String) async throws -> Page { try await send("GET", path, form: nil) }
    func post(_ path: String, _ form: [(String, String)]) async throws -> Page { try await send("POST", path, form: form) }

    private func send(_ method: String, _ path: String, form: [(String, String)]?) async throws -> Page {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 30
        let cookieHeader = cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
        if !cookieHeader.isEmpty { request.setValue(cookieHeader, forHTTPHeaderField: "Cookie") }
        if let form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            request.httpBody = Data(form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&").utf8)
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in http.allHeaderFields { headers["\(k)"] = "\(v)" }
        if let setCookie = headers.first(where: { $0.key.lowercased() == "set-cookie" })?.value {
            for cookie in setCookie.components(separatedBy: ", ") {
                let pair = cookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                guard pair.count >= 1 else { continue }
                let value = pair.count == 2 ? String(pair[1]) : ""
                self.setCookie(String(pair[0]), value.isEmpty || cookie.contains("Max-Age=0") ? nil : value)
            }
        }
        return Page(status: http.statusCode, headers: headers, html: String(decoding: data, as: UTF8.self))
    }

    /// Signs in with a management token through the sign-in form.
    func signIn(_ token: String) async throws -> Page {
        let form = try await get("/console")
        return try await post("/console/sign-in", [("csrf", form.csrf ?? ""), ("token", token)])
    }
}

@Suite struct WebConsoleTests {
    static func catalogScopes(_ surface: String) throws -> [[String: Any]] {
        let data = try Data(contentsOf: catalogDirectory.appendingPathComponent("\(surface).json"))
        return try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["scopes"] as? [[String: Any]])
    }

    static func expectSecurityHeaders(_ page: WebClient.Page, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let csp = page.header("Content-Security-Policy") ?? ""
        #expect(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"), "\(what): CSP \(csp)",
                sourceLocation: sourceLocation)
        #expect(page.header("X-Content-Type-Options") == "nosniff", "\(what)", sourceLocation: sourceLocation)
        #expect(page.header("Referrer-Policy") != nil, "\(what)", sourceLocation: sourceLocation)
    }

    @Test("GET /scopes: 40 scopes, 10 categories, 12 SMART and 11 self-service from the catalog; the Service Key filter; every scope with its products and endpoints")
    func scopeReference() async throws {
        try await withServer(.sqlite) { s in
            let web = WebClient(base: s.base)
            let page = try await web.get("/scopes?surface=platform")
            #expect(page.status == 200)
            Self.expectSecurityHeaders(page, "/scopes")
            for (id, value) in [("count-scopes", 40), ("count-categories", 10), ("count-smart", 12), ("count-self-service", 11)] {
                #expect(page.html.contains("<strong id=\"\(id)\">\(value)</strong>"), "\(id) = \(value)")
            }
            let scopes = try Self.catalogScopes("platform")
            for scope in scopes {
                let name = try #require(scope["name"] as? String)
                #expect(page.html.contains("<article class=\"scope\" id=\"\(name)\">"), "\(name) has an anchor")
                for product in scope["products"] as? [String] ?? [] { #expect(page.html.contains(Self.escaped(product)), "\(name): \(product)") }
                for endpoint in scope["endpoints"] as? [String] ?? [] { #expect(page.html.contains("<code>\(Self.escaped(endpoint))</code>"), "\(name): \(endpoint)") }
            }
            // The filter is a GET form: the Service Key view lists exactly the scopes whose credential types include it.
            let filtered = try await web.get("/scopes?surface=platform&credentialType=service_key")
            let listed = Set(filtered.html.matches(of: /<article class="scope" id="([^"]+)">/).map { String($0.1) })
            let expected = Set(scopes.filter { ($0["credentialTypes"] as? [String] ?? []).contains("service_key") }.compactMap { $0["name"] as? String })
            #expect(!expected.isEmpty && listed == expected)
            #expect(filtered.html.contains("<strong>\(expected.count)</strong> matching scopes"))
            let selfService = try await web.get("/scopes?surface=platform&selfService=yes")
            #expect(selfService.html.matches(of: /<article class="scope"/).count == 11)
            let text = try await web.get("/scopes?surface=platform&q=merge")
            #expect(text.html.contains("id=\"identity.merge\"") && !text.html.contains("id=\"cms.fhir.r4.read\""))
            #expect(try await web.get("/scopes?surface=nope").status == 404)
            let v3 = try await web.get("/scopes?surface=marketplace-v3")
            #expect(v3.status == 200 && v3.html.contains("id=\"read:patients\""))
            let css = try await web.get("/assets/caregate.css")
            #expect(css.status == 200 && css.header("Content-Type")?.hasPrefix("text/css") == true)
        }
    }

    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    @Test("console: a developer signs in, creates a key (shown once) that answers /v3/marketplace/me, revokes it; CSRF, cookies, escaping, sign-out")
    func developerKeys() async throws {
        try await withServer(.sqlite) { s in
            let hostile = "<script>alert(1)</script>"
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients", "read:appointments"], patients: 1)
            let named = try await s.request("POST", "/manage/apps", token: dev.token, json: [
                "slug": "hostile-app", "name": hostile, "scopes": ["read:patients"], "surface": "marketplace-v3",
            ])
            try expectStatus(named, 201)
            _ = try await s.createKey(developer: dev.token, app: named.json!.string("id"), scopes: nil)

            let web = WebClient(base: s.base)
            let signInForm = try await web.get("/console")
            #expect(signInForm.status == 200 && signInForm.html.contains("name=\"token\""))
            Self.expectSecurityHeaders(signInForm, "sign-in page")
            // A wrong token: refused, no session.
            let wrong = try await web.post("/console/sign-in", [("csrf", signInForm.csrf ?? ""), ("token", "cg_dev_nope")])
            #expect(wrong.status == 401 && web.cookies["cg_session"] == nil)
            // Sign-in without the form's token: refused.
            let forged = WebClient(base: s.base)
            #expect(try await forged.post("/console/sign-in", [("token", dev.token)]).status == 403)

            let signedIn = try await web.signIn(dev.token)
            #expect(signedIn.status == 303 && signedIn.header("Location") == "/console")
            let setCookie = try #require(signedIn.header("Set-Cookie"))
            let sessionCookie = try #require(setCookie.components(separatedBy: ", ").first { $0.hasPrefix("cg_session=") })
            #expect(sessionCookie.contains("HttpOnly") && sessionCookie.contains("SameSite=Lax") && !sessionCookie.contains("Secure"))

            let home = try await web.get("/console")
            #expect(home.status == 200 && home.html.contains("/console/apps/\(app.id)"))
            Self.expectSecurityHeaders(home, "console home")
            // A name a user set is shown as text, never as markup.
            #expect(home.html.contains(Self.escaped(hostile)) && !home.html.contains(hostile))

            let appPage = try await web.get("/console/apps/\(app.id)")
            #expect(appPage.status == 200 && appPage.html.contains("My Tokens &amp; Keys"))
            let csrf = try #require(appPage.csrf)
            let keysBefore = try await s.request("GET", "/manage/apps/\(app.id)/keys", token: dev.token)
            // Without the CSRF token, or with another session's: 403, nothing created.
            #expect(try await web.post("/console/apps/\(app.id)/keys", [("name", "no-token"), ("environment", "prd")]).status == 403)
            let other = WebClient(base: s.base)
            _ = try await other.signIn(dev.token)
            let otherCSRF = try #require(try await other.get("/console/apps/\(app.id)").csrf)
            #expect(otherCSRF != csrf)
            #expect(try await web.post("/console/apps/\(app.id)/keys", [("csrf", otherCSRF), ("name", "other"), ("environment", "prd")]).status == 403)
            let keysAfterRefusals = try await s.request("GET", "/manage/apps/\(app.id)/keys", token: dev.token)
            #expect(keysAfterRefusals.body == keysBefore.body, "refused forms changed nothing")

            let created = try await web.post("/console/apps/\(app.id)/keys", [
                ("csrf", csrf), ("name", "from the console"), ("environment", "prd"), ("scopes", "read:patients"),
            ])
            #expect(created.status == 201)
            Self.expectSecurityHeaders(created, "key-created page")
            #expect(created.header("Cache-Control") == "no-store")
            let key = try #require(created.html.firstMatch(of: /id="new-key" class="secret" readonly value="([^"]+)"/).map { String($0.1) })
            let me = try await s.request("GET", "/v3/marketplace/me", token: key, organization: clinic.uuid)
            #expect(me.status == 200)
            // Shown once: the app page lists it masked.
            let listed = try await web.get("/console/apps/\(app.id)")
            #expect(!listed.html.contains(key) && listed.html.contains("from the console"))
            let keyID = try #require(listed.html.firstMatch(of: /action="\/console\/keys\/(key_[0-9a-f]+)\/revoke"/).map { String($0.1) })
            // Another developer's session cannot touch this app.
            let stranger = try await s.createDeveloper()
            let strangerWeb = WebClient(base: s.base)
            _ = try await strangerWeb.signIn(stranger.token)
            #expect(try await strangerWeb.get("/console/apps/\(app.id)").status == 404)

            let revoked = try await web.post("/console/keys/\(keyID)/revoke", [("csrf", csrf), ("appId", app.id)])
            #expect(revoked.status == 303)
            #expect(try await s.request("GET", "/v3/marketplace/me", token: key, organization: clinic.uuid).status == 401)

            // A key name a user set is shown as text too.
            _ = try await web.post("/console/apps/\(app.id)/keys", [("csrf", csrf), ("name", hostile), ("environment", "sbx")])
            let withHostileKey = try await web.get("/console/apps/\(app.id)")
            #expect(withHostileKey.html.contains(Self.escaped(hostile)) && !withHostileKey.html.contains(hostile))

            // The clinic admin's pages: the hostile app's name is text; approving without the form token changes nothing.
            let hostileInstall = try await s.install(app: named.json!.string("id"), clinic: clinic)
            let admin = WebClient(base: s.base)
            _ = try await admin.signIn(clinic.adminToken)
            let installed = try await admin.get("/console")
            #expect(installed.status == 200 && installed.html.contains(Self.escaped(hostile)) && !installed.html.contains(hostile))
            let installationPage = try await admin.get("/console/installations/\(hostileInstall)")
            #expect(installationPage.html.contains("value=\"read:patients\" checked") && !installationPage.html.contains(hostile))
            #expect(try await admin.post("/console/installations/\(hostileInstall)/approve", [("scopes", "read:patients")]).status == 403)
            #expect(try await admin.post("/console/installations/\(hostileInstall)/uninstall", [("csrf", csrf)]).status == 403, "another session's token")
            let stillInstalled = try await s.request("GET", "/manage/installations/\(hostileInstall)", token: clinic.adminToken)
            #expect(stillInstalled.status == 200 && stillInstalled.json?.strings("approvedScopes") == ["read:patients"])
            // A developer's session cannot reach a clinic admin's page.
            #expect(try await web.get("/console/installations/\(hostileInstall)").status == 403)

            // Every page carries the security headers.
            for (client, path) in [
                (web, "/console/apps/\(app.id)"), (admin, "/console/installations/\(hostileInstall)"), (admin, "/console/audit"),
                (web, "/console/apps/app_00000000000000000000000000000000"), (WebClient(base: s.base), "/scopes?surface=nope"),
            ] {
                Self.expectSecurityHeaders(try await client.get(path), path)
            }

            // Sign-out ends the session; a revoked management token ends its sessions everywhere.
            #expect(try await web.post("/console/sign-out", [("csrf", csrf)]).status == 303)
            #expect(try await web.get("/console").html.contains("name=\"token\""))
            let tokens = try await s.request("GET", "/manage/tokens", token: s.operatorToken)
            let tokenID = try #require((tokens.json?["data"] as? [[String: Any]] ?? (try? JSONSerialization.jsonObject(with: tokens.body) as? [[String: Any]]) ?? [])
                .first { $0["subjectId"] as? String == stranger.id }?["id"] as? String)
            #expect(try await s.request("DELETE", "/manage/tokens/\(tokenID)", token: s.operatorToken).status == 204)
            #expect(try await strangerWeb.get("/console").html.contains("name=\"token\""), "the revoked token's session is over")
        }
    }

    @Test("console: register an OAuth client (secret shown once), rotate a key with a grace, last-used times; the audit log filtered by day")
    func clientsRotationAndDays() async throws {
        try await withServer(.sqlite) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 1)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            #expect(try await s.status("GET", "/v3/patients", key: key.key, clinic: clinic) == 200)
            let web = WebClient(base: s.base)
            _ = try await web.signIn(dev.token)
            let page = try await web.get("/console/apps/\(app.id)")
            let csrf = try #require(page.csrf)
            // The key used a moment ago shows when; rotate it from the page.
            #expect(page.html.matches(of: /<td class="last-used">20[0-9-]+T/).count == 1)
            let rotated = try await web.post("/console/keys/\(key.id)/rotate", [("csrf", csrf), ("appId", app.id)])
            #expect(rotated.status == 201)
            let newKey = try #require(rotated.html.firstMatch(of: /id="new-key" class="secret" readonly value="([^"]+)"/).map { String($0.1) })
            #expect(try await s.status("GET", "/v3/patients", key: newKey, clinic: clinic) == 200)
            #expect(try await s.status("GET", "/v3/patients", key: key.key, clinic: clinic) == 200, "the old key works through the grace")
            #expect(try await web.get("/console/apps/\(app.id)").html.contains("replaced (works until"))
            // An OAuth client: the secret once, then only the id.
            let registered = try await web.post("/console/apps/\(app.id)/oauth-clients", [("csrf", csrf), ("credentialType", "oauth2"), ("scopes", "read:patients")])
            #expect(registered.status == 201)
            let clientID = try #require(registered.html.firstMatch(of: /id="client-id" readonly value="([^"]+)"/).map { String($0.1) })
            let secret = try #require(registered.html.firstMatch(of: /id="client-secret" class="secret" readonly value="([^"]+)"/).map { String($0.1) })
            let token = try await OAuthTests.form(s, "grant_type=client_credentials&scope=read:patients", basic: (clientID, secret))
            #expect(token.status == 200)
            let listed = try await web.get("/console/apps/\(app.id)")
            #expect(listed.html.contains(clientID) && !listed.html.contains(secret))

            // The audit log by day: today has the requests, tomorrow and yesterday nothing.
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withFullDate]
            let today = formatter.string(from: Date()), tomorrow = formatter.string(from: Date().addingTimeInterval(86_400))
            let yesterday = formatter.string(from: Date().addingTimeInterval(-86_400))
            func count(_ query: String) async throws -> Int {
                try await s.request("GET", "/manage/audit?appId=\(app.id)&" + query, token: s.operatorToken).json?.array("data").count ?? -1
            }
            #expect(try await count("since=\(today)") >= 3)
            #expect(try await count("since=\(tomorrow)") == 0)
            #expect(try await count("until=\(yesterday)") == 0)
            #expect(try await count("since=\(today)&until=\(today)") >= 3)
            let operatorWeb = WebClient(base: s.base)
            _ = try await operatorWeb.signIn(s.operatorToken)
            let filtered = try await operatorWeb.get("/console/audit?since=\(tomorrow)")
            #expect(filtered.status == 200 && filtered.html.contains("No events match.") && filtered.html.contains("value=\"\(tomorrow)\""))
        }
    }

    @Test("a session signed out on one instance is over on the other")
    func sessionsAcrossInstances() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-sessions-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let a = try await TestServer(.sqlite) { $0.database = .sqlite(path: path) }
        let b = try await TestServer(.sqlite) { $0.database = .sqlite(path: path) }
        do {
            let dev = try await a.createDeveloper()
            let onA = WebClient(base: a.base)
            _ = try await onA.signIn(dev.token)
            let onB = WebClient(base: b.base)
            onB.setCookie("cg_session", onA.cookies["cg_session"])
            #expect(try await onB.get("/console").html.contains("Your apps"), "the session works on the other instance")
            let csrf = try #require(try await onA.get("/console").csrf)
            #expect(try await onA.post("/console/sign-out", [("csrf", csrf)]).status == 303)
            #expect(try await onB.get("/console").html.contains("name=\"token\""), "signed out everywhere")
            // An operator session ends when CAREGATE_ADMIN_TOKEN changes (here: a third instance starts with another).
            let operatorWeb = WebClient(base: a.base)
            _ = try await operatorWeb.signIn(TestServer.adminToken)
            #expect(try await operatorWeb.get("/console").html.contains("Token-signing keys"))
            let c = try await TestServer(.sqlite) { $0.database = .sqlite(path: path); $0.adminToken = "another-operator-token-0123456789" }
            await c.stop()
            #expect(try await operatorWeb.get("/console").html.contains("name=\"token\""), "the old operator token's session is over")
        } catch {
            await a.stop()
            await b.stop()
            throw error
        }
        await a.stop()
        await b.stop()
    }
}
