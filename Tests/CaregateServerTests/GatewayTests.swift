import CaregateServer
import Foundation
import Synchronization
import Testing

/// `caregate-echo-upstream` as a real process on a loopback port: it answers every request
/// with what reached it.
final class EchoUpstream: Sendable {
    private let helper: ListeningHelper

    init() throws { helper = try ListeningHelper(try builtProduct("caregate-echo-upstream"), ["--port", "0"], name: "echo upstream") }

    var port: Int { helper.port }
    var url: String { helper.url }
    func stop() { helper.stop() }
}

/// What the echo upstream saw.
struct Echoed {
    var method: String
    /// The Host header as the upstream received it.
    var authority: String
    var path: String
    var query: String
    var headers: [(name: String, value: String)]
    var bodyBytes: Int
    var bodyText: String

    init?(_ reply: TestServer.Reply) {
        guard let json = reply.json, let method = json["method"] as? String, let pairs = json["headers"] as? [[String]] else { return nil }
        self.method = method
        authority = json.string("authority")
        path = json.string("path")
        query = json.string("query")
        headers = pairs.map { ($0[0], $0[1]) }
        bodyBytes = json["bodyBytes"] as? Int ?? -1
        bodyText = json.string("bodyText")
    }

    func values(_ name: String) -> [String] { headers.filter { $0.name == name.lowercased() }.map(\.value) }
}

/// Gateway mode: enforcement in front of upstreams Caregate does not host.
@Suite("Gateway mode")
struct GatewayTests {
    /// The seed 004 scopes, from the fixture that transcribes the seeds.
    static let practiceScopes: [String] = {
        let url = repositoryRoot.appendingPathComponent("Tests/ScopesTests/Fixtures/seed-endpoints.txt")
        let text = try! String(contentsOf: url, encoding: .utf8)
        var scopes: [String] = []
        for line in text.split(separator: "\n") {
            let fields: [Substring] = line.split(separator: " ")
            if fields.count == 2, fields[0] == "practice-api" { scopes.append(String(fields[1])) }
        }
        return scopes
    }()

    static func token(_ s: TestServer, client: (id: String, secret: String), scope: String?) async throws -> TestServer.Reply {
        try await OAuthTests.form(
            s, "grant_type=client_credentials" + (scope.map { "&scope=" + $0 } ?? ""), path: "/api/2.0/oauth2/token/", basic: client)
    }

    @Test("every seed 004 scope opens exactly its resource's routes through the gateway; apiv2 opens everything")
    func practiceAPI() async throws {
        #expect(Self.practiceScopes.count == 151)
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "practice-api", url: upstream.url)] }) { s in
            let dev = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 0)
            let app = try await s.createApp(developer: dev.token, scopes: ["apiv2"] + Self.practiceScopes, surface: "practice-api")
            _ = try await s.install(app: app.id, clinic: clinic)
            let client = try await OAuthTests.client(
                s, dev: dev.token, app: app.id, scopes: ["apiv2"] + Self.practiceScopes, extra: ["organizationId": clinic.id])

            for scope in Self.practiceScopes {
                let issued = try await Self.token(s, client: client, scope: scope)
                try expectStatus(issued, 200)
                #expect(issued.json?.string("scope") == scope)
                let token = issued.json!.string("access_token")
                let resource = String(scope.dropFirst("system/".count).prefix { $0 != "." })
                let isRead = scope.hasSuffix(".read")
                let base = "/api/2.0/\(resource)"
                for path in [base + "/", base + "/17", base + "/17/policies/3/card-images"] {
                    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
                        let reply = try await s.request(method, path + "?page=2", token: token)
                        let isCollection = path == base + "/"
                        let isReadMethod = method == "GET" || method == "HEAD"
                        let routeExists = !(method == "POST" && path == base + "/17") && !(!isReadMethod && method != "POST" && isCollection)
                        if !routeExists {
                            #expect(reply.status == 405, "\(method) \(path)")
                        } else if isRead == isReadMethod {
                            // Allowed: the upstream saw exactly this request and who made it.
                            #expect(reply.status == 200, "\(scope) should open \(method) \(path): \(reply.text.prefix(200))")
                            guard method != "HEAD" else { continue }
                            let echoed = Echoed(reply)
                            #expect(echoed?.method == method && echoed?.path == path && echoed?.query == "page=2")
                            #expect(echoed?.values("X-Caregate-Scopes") == [scope])
                            #expect(echoed?.values("Authorization") == [])
                        } else if reply.status == 403 {
                            guard method != "HEAD" else { continue }
                            #expect(reply.json?.string("message") == "Insufficient scope. Required: system/\(resource).\(isRead ? "write" : "read")")
                            #expect(reply.header("WWW-Authenticate")?.contains("insufficient_scope") == true)
                        } else {
                            // Read-only reference data has no write routes at all.
                            #expect(reply.status == 405, "\(scope): \(method) \(path) → \(reply.status)")
                        }
                    }
                }
                // A neighbouring resource stays closed.
                let other = resource == "patients" ? "allergies" : "patients"
                #expect(try await s.request(isRead ? "GET" : "POST", "/api/2.0/\(other)/", token: token).status == 403)
            }

            // No scope → apiv2, which opens every resource, nested routes and signing included.
            let global = try await Self.token(s, client: client, scope: nil)
            #expect(global.json?.string("scope") == "apiv2")
            let token = global.json!.string("access_token")
            for (method, path) in [("GET", "/api/2.0/patients/"), ("DELETE", "/api/2.0/allergies/4"), ("POST", "/api/2.0/visit_notes/9/sign"),
                                   ("PUT", "/api/2.0/patients/1/policies/2/card-images")] {
                let reply = try await s.request(method, path, token: token)
                #expect(reply.status == 200 && Echoed(reply)?.path == path, "apiv2: \(method) \(path) → \(reply.status)")
            }
            // Paths that could mean something else upstream are refused, never forwarded.
            for tricky in ["/api/2.0/patients/%2E%2E/allergies/", "/api/2.0/patients/1%2F..%2F..%2Fallergies", "/api/2.0/patients/%2E/1"] {
                let reply = try await s.request("GET", tricky, token: token)
                #expect(reply.status == 400 && reply.json?.string("code") == "bad_request", "\(tricky) → \(reply.status)")
            }
            // The refusals of seed 004 at the token endpoint.
            for (scope, named) in [("apiv2+system/patients.read", "apiv2"), ("system/zz_unknown.read", "system/zz_unknown.read")] {
                let refused = try await Self.token(s, client: client, scope: scope)
                #expect(refused.status == 400 && refused.json?.string("error") == "invalid_scope")
                #expect(refused.json?.string("error_description").contains(named) == true, "\(refused.text)")
            }
            // Without a credential nothing reaches the upstream, and nothing can be probed.
            let anonymous = try await s.request("GET", "/api/2.0/patients/")
            #expect(anonymous.status == 401 && anonymous.json?.string("code") == "unauthorized")
            #expect(try await s.request("GET", "/api/2.0/no-such-resource/").status == 401)
            #expect(try await s.request("GET", "/api/2.0/no-such-resource/", token: token).status == 404)
        }
    }

    @Test("platform routes: identity headers, credential types per scope, the upstream's errors, streaming bodies", arguments: Backend.allCases)
    func platform(_ backend: Backend) async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(backend, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url + "/base")] }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["cms.identity.match", "identity.merge"], surface: "platform", patients: 0)
            // A key that inherits the app's scopes: identity.merge cannot travel on an API key.
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)

            let match = try await s.request(
                "POST", "/api/identity/match?strict=1", token: key.key, organization: clinic.uuid, body: Data(#"{"name":"Ada"}"#.utf8),
                headers: ["Content-Type": "application/json", "X-Caregate-Organization": "org_forged", "X-Caregate-Scopes": "everything"])
            try expectStatus(match, 200)
            let echoed = try #require(Echoed(match))
            #expect(echoed.path == "/base/api/identity/match" && echoed.query == "strict=1" && echoed.bodyText == #"{"name":"Ada"}"#)
            #expect(echoed.values("X-Caregate-Client") == [key.id])
            #expect(echoed.values("X-Caregate-App") == [app.id])
            #expect(echoed.values("X-Caregate-Credential-Type") == ["api_key"])
            #expect(echoed.values("X-Caregate-Organization") == [clinic.id])
            #expect(echoed.values("X-Caregate-Scopes") == ["cms.identity.match"])
            #expect(echoed.values("X-Caregate-Trace-Id") == [match.header("X-Trace-Id")!])
            #expect(echoed.values("Authorization").isEmpty && echoed.values("X-Organization-Id").isEmpty)
            #expect(echoed.values("Content-Type") == ["application/json"])
            #expect(echoed.values("X-Forwarded-For") == ["127.0.0.1"])
            let proxied = try await s.request("POST", "/api/identity/match", token: key.key, organization: clinic.uuid, headers: ["X-Forwarded-For": "203.0.113.7"])
            // The caller's own X-Forwarded-For is replaced (kept only from a trusted proxy: SecurityReviewTests).
            #expect(Echoed(proxied)?.values("X-Forwarded-For") == ["127.0.0.1"])

            let merge = try await s.request("POST", "/api/identity/merge", token: key.key, organization: clinic.uuid)
            #expect(merge.status == 403)
            #expect(merge.json?.string("message").hasPrefix("Insufficient scope. Required: identity.merge. A credential of type api_key cannot carry") == true)
            // …and a key cannot select it at issue time either.
            let refusedKey = try await s.request(
                "POST", "/manage/apps/\(app.id)/keys", token: dev.token, json: ["name": "k", "environment": "prd", "scopes": ["identity.merge"]])
            #expect(refusedKey.status == 400 && refusedKey.text.contains("identity.merge"))
            // An OAuth 2.0 client and a service key may carry it.
            for type in ["oauth2", "service_key"] {
                let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["identity.merge"], extra: ["credentialType": type])
                let issued = try await OAuthTests.form(s, "grant_type=client_credentials&scope=identity.merge", basic: client)
                try expectStatus(issued, 200)
                let merged = try await s.request("POST", "/api/identity/merge", token: issued.json!.string("access_token"), organization: clinic.uuid)
                #expect(merged.status == 200 && Echoed(merged)?.values("X-Caregate-Credential-Type") == [type])
            }

            // The upstream's own errors pass through untouched.
            let teapot = try await s.request("POST", "/api/identity/match", token: key.key, organization: clinic.uuid, headers: ["X-Echo-Status": "418"])
            #expect(teapot.status == 418 && Echoed(teapot)?.path == "/base/api/identity/match")
            // A large body streams through.
            let big = Data(repeating: 0x61, count: 5 * 1024 * 1024)
            let streamed = try await s.request("POST", "/api/identity/match", token: key.key, organization: clinic.uuid, body: big)
            #expect(streamed.status == 200 && Echoed(streamed)?.bodyBytes == big.count)
            // Large answers stream back whole, with a length or chunked; HEAD and DELETE pass.
            for chunked in ["0", "1"] {
                let large = try await s.request(
                    "POST", "/api/identity/match", token: key.key, organization: clinic.uuid, headers: ["X-Echo-Bytes": "3145728", "X-Echo-Chunked": chunked])
                #expect(large.status == 200 && large.body.count == 3_145_728 && large.body.allSatisfy { $0 == UInt8(ascii: "x") }, "chunked=\(chunked)")
            }
            let readApp = try await s.createApp(developer: dev.token, scopes: ["cms.shl.resolve"], surface: "platform")
            _ = try await s.install(app: readApp.id, clinic: clinic)
            let readKey = try await s.createKey(developer: dev.token, app: readApp.id, scopes: nil)
            for chunked in ["0", "1"] {
                let large = try await s.request(
                    "GET", "/beacon/shl/abc", token: readKey.key, organization: clinic.uuid, headers: ["X-Echo-Bytes": "3145728", "X-Echo-Chunked": chunked])
                #expect(large.status == 200 && large.body.count == 3_145_728, "GET chunked=\(chunked): \(large.status) \(large.body.count)")
            }
            let small = try await s.request("GET", "/beacon/shl/abc?x=1", token: readKey.key, organization: clinic.uuid)
            #expect(small.status == 200 && Echoed(small)?.path == "/base/beacon/shl/abc" && Echoed(small)?.query == "x=1")
            #expect(Echoed(small)?.authority == "127.0.0.1:\(upstream.port)")
            let head = try await s.request("HEAD", "/beacon/shl/abc", token: readKey.key, organization: clinic.uuid)
            #expect(head.status == 200 && head.body.isEmpty)
            // Many requests in a row reuse the pooled connections and stay correct.
            for i in 0..<50 {
                let reply = try await s.request("GET", "/beacon/shl/n\(i)", token: readKey.key, organization: clinic.uuid)
                #expect(Echoed(reply)?.path == "/base/beacon/shl/n\(i)")
            }

            // Unknown routes of the surface: 404 after authentication, 401 before.
            #expect(try await s.request("GET", "/prime/v1/nothing-here", token: key.key, organization: clinic.uuid).status == 404)
            #expect(try await s.request("GET", "/prime/v1/nothing-here").status == 401)

            // /openapi.json documents the gateway routes of this server; /fhir/R4 is the built-in FHIR
            // API's here, documented per type (OpenAPIAndLifecycleTests).
            let document = try await s.request("GET", "/openapi.json")
            let paths = try #require(document.json?["paths"] as? [String: [String: Any]])
            let platformRoutes = try CatalogLoader.load(file: catalogDirectory.appendingPathComponent("platform.json")).routes
            #expect(paths["/fhir/R4/Observation"]?["get"] != nil && paths["/fhir/R4/{ResourceType}"] == nil)
            for route in platformRoutes where !route.path.hasPrefix("/fhir/R4/") && route.path != "/fhir/R4" {
                let path = route.path.replacingOccurrences(of: "/*", with: "/{rest}")
                #expect(paths[path]?[route.method.description.lowercased()] != nil, "\(route.template) is not in /openapi.json")
            }
            try await OpenAPIAndLifecycleTests.validateOpenAPI(document.body)

            // Every decision is audited with its route and scope.
            let audit = try await s.request("GET", "/manage/audit?appId=\(app.id)&decision=denied", token: s.operatorToken)
            let denied = audit.json?.array("data") ?? []
            #expect(denied.contains { $0.string("route") == "POST /api/identity/merge" && $0.string("requiredScope") == "identity.merge" })
        }
    }

    @Test("an upstream that is down answers 502, one that is too slow 504, in the error shape; a stalled body is cut")
    func upstreamFailures() async throws {
        let slow = try EchoUpstream()
        defer { slow.stop() }
        let gone = try EchoUpstream()
        let goneURL = gone.url
        gone.stop()
        try await withServer(.sqlite, configure: {
            $0.upstreams = [
                try! UpstreamConfiguration(surface: "platform", url: goneURL),
                try! UpstreamConfiguration(surface: "practice-api", url: slow.url, timeoutSeconds: 0.5),
            ]
        }) { s in
            let dev = try await s.createDeveloper()
            let clinic = try await s.createClinic(patients: 0)
            let platformApp = try await s.createApp(developer: dev.token, scopes: ["prime.ingest.read"], surface: "platform")
            _ = try await s.install(app: platformApp.id, clinic: clinic)
            let key = try await s.createKey(developer: dev.token, app: platformApp.id, scopes: nil)
            let down = try await s.request("GET", "/prime/v1/health", token: key.key, organization: clinic.uuid)
            #expect(down.status == 502)
            #expect(down.json?.string("code") == "bad_gateway" && down.json?.string("trace_id") == down.header("X-Trace-Id"))

            let practiceApp = try await s.createApp(developer: dev.token, scopes: ["apiv2"], surface: "practice-api")
            _ = try await s.install(app: practiceApp.id, clinic: clinic)
            let client = try await OAuthTests.client(s, dev: dev.token, app: practiceApp.id, scopes: ["apiv2"], extra: ["organizationId": clinic.id])
            let token = try await Self.token(s, client: client, scope: nil).json!.string("access_token")
            let quick = try await s.request("GET", "/api/2.0/patients/", token: token, headers: ["X-Echo-Delay-Ms": "10"])
            #expect(quick.status == 200)
            let late = try await s.request("GET", "/api/2.0/patients/", token: token, headers: ["X-Echo-Delay-Ms": "3000"])
            #expect(late.status == 504)
            #expect(late.json?.string("code") == "gateway_timeout")
            // A request with a body (read whole when small, streamed when large) is held to the same
            // limit: answered long before the upstream would (8 s), even on a loaded machine.
            for size in [1_024, 300 * 1_024] {
                let posted = ContinuousClock.now
                let slowPost = try await s.request(
                    "POST", "/api/2.0/patients/", token: token, body: Data(repeating: 0x61, count: size),
                    headers: ["X-Echo-Delay-Ms": "8000", "Content-Type": "application/octet-stream"])
                #expect(slowPost.status == 504, "\(size) bytes: \(slowPost.status)")
                #expect(ContinuousClock.now - posted < .milliseconds(5_000), "\(size) bytes: \(ContinuousClock.now - posted)")
            }
            // An upstream that falls silent in the middle of a streamed body is given up: the
            // answer ends short instead of hanging.
            var stalled: TestServer.Reply?
            let started = ContinuousClock.now
            do {
                stalled = try await s.request(
                    "GET", "/api/2.0/patients/", token: token, headers: ["X-Echo-Bytes": "1048576", "X-Echo-Chunked": "1", "X-Echo-Pause-Ms": "4000"])
            } catch {
                stalled = nil  // the connection was cut mid-body: what a client sees
            }
            #expect((stalled?.body.count ?? 0) < 1_048_576)
            // Cut after about the 0.5 s limit, long before the 30 s client timeout or the 60 s stream.
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }
}
