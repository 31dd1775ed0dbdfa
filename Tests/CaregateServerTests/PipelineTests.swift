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

    /// Metrics are process-wide and other suites' servers run beside this one, so the exact
    /// counts are of `HEAD /healthz`, which no other test sends.
    @Test("every answer is counted and timed once: in-memory answers when returned, streamed ones when written; none stays active")
    func requestMetricsTiming() async throws {
        try await withServer(.sqlite) { s in
            /// The value of the first series named `name` whose labels contain every one of `labels`, in `text`.
            func value(_ text: String, _ name: String, _ labels: [String]) -> Double {
                let line = text.split(separator: "\n").first { line in line.hasPrefix(name + "{") && labels.allSatisfy { line.contains($0) } }
                return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            }
            let healthz = [#"http_route="/healthz""#, #"http_request_method="HEAD""#, #"http_response_status_code="200""#]
            let export = [#"http_route="/manage/audit/export""#, #"http_response_status_code="200""#]
            let before = try await s.request("GET", "/metrics").text
            for _ in 0..<5 { try expectStatus(try await s.request("HEAD", "/healthz"), 200) }
            // The audit export is streamed (no length known): it is timed once its last byte is written.
            try expectStatus(try await s.request("GET", "/manage/audit/export", token: s.operatorToken), 200)
            // A refusal thrown below the metrics is counted under its status, as an error.
            try expectStatus(try await s.request("GET", "/v3/patients"), 401)
            let after = try await s.request("GET", "/metrics").text
            #expect(value(after, "hb_requests", healthz) - value(before, "hb_requests", healthz) == 5)
            #expect(value(after, "http_server_request_duration_count", healthz) - value(before, "http_server_request_duration_count", healthz) == 5)
            #expect(value(after, "http_server_request_duration_count", export) - value(before, "http_server_request_duration_count", export) >= 1)
            #expect(value(after, "hb_request_errors", [#"error_type="401""#]) >= 1)
            // Nothing stays counted as in progress: no HEAD, and of the GETs only the /metrics request
            // itself (other suites' requests come and go, so the gauges are read until they settle).
            var settled = false
            for _ in 0..<300 where !settled {
                let text = try await s.request("GET", "/metrics").text
                settled = value(text, "http_server_active_requests", [#"http_request_method="HEAD""#]) == 0
                    && value(text, "http_server_active_requests", [#"http_request_method="GET""#]) == 1
            }
            #expect(settled, "active requests did not return to the /metrics request alone")
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
