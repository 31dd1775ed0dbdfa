import CaregateServer
import Foundation
import Testing

/// Every body has a ceiling, answered 413 in the endpoint's error shape: management and clinic
/// JSON (64 KiB), the token endpoint's form (16 KiB), and a gateway surface's `maxBodyBytes`,
/// whether the body declares its length or streams in chunks.
@Suite struct SizeLimitTests {
    static let chunked = """
        import json, sys, requests
        url, token, org, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
        def chunks():
            sent = 0
            while sent < size:
                n = min(16384, size - sent)
                sent += n
                yield b"a" * n
        r = requests.post(url, data=chunks(), headers={"Authorization": "Bearer " + token, "X-Organization-Id": org,
                          "Content-Type": "application/fhir+json"}, timeout=30)
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
        print(json.dumps({"status": r.status_code, "code": body.get("code"), "bodyBytes": body.get("bodyBytes")}))
        """

    @Test("over-limit bodies are 413 everywhere: management, clinic API, token endpoint, and gateway (declared or chunked)")
    func limits() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        let limit: Int64 = 512 * 1024
        try await withServer(.sqlite, configure: {
            $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url, maxBodyBytes: limit)]
        }) { s in
            let big = String(repeating: "a", count: 70 * 1024)
            let management = try await s.request("POST", "/manage/developers", token: s.operatorToken, json: ["name": big, "email": "a@example.com"])
            #expect(management.status == 413 && management.json?.string("code") == "payload_too_large")

            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["write:products"], patients: 0)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil).key
            let clinicAPI = try await s.request("POST", "/v3/inventory/products", token: key, organization: clinic.uuid, json: ["name": big, "sku": "S-1", "priceCents": 1])
            #expect(clinicAPI.status == 413 && clinicAPI.json?.string("code") == "payload_too_large")

            let token = try await s.request(
                "POST", "/oauth2/token", body: Data(("grant_type=client_credentials&x=" + String(repeating: "a", count: 17 * 1024)).utf8),
                headers: ["Content-Type": "application/x-www-form-urlencoded"])
            #expect(token.status == 413 && token.json?.string("error") == "invalid_request")

            let platform = try await s.createApp(developer: dev.token, scopes: ["cms.identity.match"], surface: "platform")
            _ = try await s.install(app: platform.id, clinic: clinic)
            let platformKey = try await s.createKey(developer: dev.token, app: platform.id, scopes: nil).key
            func post(_ bytes: Int) async throws -> TestServer.Reply {
                try await s.request("POST", "/api/identity/match", token: platformKey, organization: clinic.uuid, body: Data(repeating: 0x61, count: bytes),
                                    headers: ["Content-Type": "application/fhir+json"])
            }
            // Declared lengths: under the limit (read whole, or streamed past 256 KiB) pass; over it, 413 before forwarding.
            for size in [10 * 1024, 400 * 1024] {
                let passed = try await post(size)
                #expect(passed.status == 200 && Echoed(passed)?.bodyBytes == size, "\(size): \(passed.status)")
            }
            let declared = try await post(600 * 1024)
            #expect(declared.status == 413 && declared.json?.string("code") == "payload_too_large" && Echoed(declared) == nil)
            // Chunked: counted as it streams.
            for (size, status) in [(100 * 1024, 200), (600 * 1024, 413)] {
                let run = try await runProgram("/usr/bin/env", ["python3", "-c", Self.chunked, s.base + "/api/identity/match", platformKey, clinic.uuid, "\(size)"])
                try #require(run.status == 0, "\(run.output)")
                let result = try #require(try JSONSerialization.jsonObject(with: Data(run.output.split(separator: "\n").last!.utf8)) as? [String: Any])
                #expect(result["status"] as? Int == status, "chunked \(size): \(result)")
                if status == 200 { #expect(result["bodyBytes"] as? Int == size) } else { #expect(result["code"] as? String == "payload_too_large") }
            }
        }
    }
}
