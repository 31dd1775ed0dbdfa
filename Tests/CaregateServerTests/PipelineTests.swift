import CaregateServer
import Foundation
import Testing

/// The one enforcement pipeline, seen from outside: the same refusals on every surface,
/// per-route metrics, and `Allow` on every 405.
@Suite struct PipelineTests {
    @Test("/metrics counts requests per route template of /v3, /v1 and the gateway")
    func perRouteMetrics() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)] }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 2)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            let patients = try await s.request("GET", "/v3/patients", token: key.key, organization: clinic.uuid)
            try expectStatus(patients, 200)
            let id = try #require(patients.json?.array("data").first?.string("id"))
            try expectStatus(try await s.request("GET", "/v3/patients/\(id)", token: key.key, organization: clinic.uuid), 200)
            // A refusal is filed under its route and its own status, not as an unknown endpoint or a 500.
            #expect(try await s.request("GET", "/v1/patients", token: key.key, organization: clinic.uuid).status == 200)
            #expect(try await s.request("GET", "/v3/bills", token: key.key, organization: clinic.uuid).status == 403)

            let (pdev, pclinic, papp, _) = try await s.installedApp(scopes: ["cms.identity.match"], surface: "platform", patients: 0)
            let pkey = try await s.createKey(developer: pdev.token, app: papp.id, scopes: nil)
            try expectStatus(try await s.request("POST", "/api/identity/match", token: pkey.key, organization: pclinic.uuid), 200)

            let metrics = try await s.request("GET", "/metrics").text
            let lines = metrics.split(separator: "\n").filter { $0.hasPrefix("hb_requests") }
            func count(_ route: String, _ status: Int) -> Bool {
                lines.contains { $0.contains(#"http_route="\#(route)""#) && $0.contains(#"http_response_status_code="\#(status)""#) }
            }
            #expect(count("/v3/patients", 200), "\(lines)")
            #expect(count("/v3/patients/{id}", 200))
            #expect(count("/v1/patients", 200))
            #expect(count("/v3/bills", 403))
            #expect(count("/api/identity/match", 200))
            #expect(!lines.contains { $0.contains(#"http_route="Unknown""#) })
        }
    }

    @Test("every 405 carries Allow: the clinic API, the gateway and Caregate's own routes")
    func allowHeader() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)] }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients", "write:products"], patients: 0)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            for (method, path, allow) in [
                ("DELETE", "/v3/patients", "GET, HEAD"), ("PROPFIND", "/v3/patients", "GET, HEAD"),
                ("DELETE", "/v3/inventory/products/prd_00000000000000000000000000000000", "GET, HEAD, PUT"),
            ] {
                let reply = try await s.request(method, path, token: key.key, organization: clinic.uuid)
                #expect(reply.status == 405, "\(method) \(path)")
                #expect(reply.header("Allow") == allow, "\(method) \(path)")
                #expect(reply.json?.string("code") == "method_not_allowed")
            }
            let (pdev, pclinic, papp, _) = try await s.installedApp(scopes: ["cms.identity.match"], surface: "platform", patients: 0)
            let pkey = try await s.createKey(developer: pdev.token, app: papp.id, scopes: nil)
            let gateway = try await s.request("GET", "/api/identity/match", token: pkey.key, organization: pclinic.uuid)
            #expect(gateway.status == 405 && gateway.header("Allow") == "POST")
            // Without a credential the method is not even looked at; a method no route table
            // knows is a 404 on a path that does not exist.
            #expect(try await s.request("DELETE", "/v3/patients").status == 401)
            #expect(try await s.request("PROPFIND", "/v3/nothing-here", token: key.key, organization: clinic.uuid).status == 404)

            for (method, path, allow) in [("GET", "/manage/developers", "POST"), ("PUT", "/manage/apps/app_1", "GET, HEAD"), ("GET", "/oauth2/token", "POST")] {
                let reply = try await s.request(method, path, token: s.operatorToken)
                #expect(reply.status == 405, "\(method) \(path)")
                #expect(reply.header("Allow") == allow, "\(method) \(path)")
                #expect(reply.json?.string("code") == "method_not_allowed")
            }
        }
    }
}
