import CaregateServer
import Foundation
import Testing

/// A real third-party OAuth 2.0 client library (Python authlib, installed by scripts/test
/// from PyPI) does client_credentials against Caregate: with a client secret (Basic and
/// post) and with private_key_jwt (RS384 and ES384), then calls the gateway with the token,
/// introspects and revokes it.
@Suite("Third-party OAuth client (authlib)")
struct ThirdPartyClientTests {
    @Test("authlib: client_secret_basic, client_secret_post and private_key_jwt; introspection and revocation")
    func authlib() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "practice-api", url: upstream.url)] }) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["system/patients.read", "system/patients.write"], surface: "practice-api", patients: 0)
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["system/patients.read"], extra: ["organizationId": clinic.id])

            let script = repositoryRoot.appendingPathComponent("Tests/CaregateServerTests/Fixtures/authlib_client.py").path
            let (status, output) = try await runProgram(
                "/usr/bin/env", ["python3", script, s.base, s.server.issuer, dev.token, app.id, clinic.id, client.id, client.secret])
            try #require(status == 0, "authlib_client.py failed: \(output)")
            let line = try #require(output.split(separator: "\n").last)
            let out = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(output)")

            for method in ["client_secret_basic", "client_secret_post"] {
                let r = try #require(out[method] as? [String: Any], "\(method) missing: \(output)")
                #expect(r["scope"] as? String == "system/patients.read", "\(method)")
                #expect(r["token_type"] as? String == "Bearer")
                #expect(r["expires_in"] as? Int == 3600)
                #expect(r["call"] as? Int == 200, "\(method): the token opens GET /api/2.0/patients/")
                #expect(r["write"] as? Int == 403, "\(method): but not POST")
                #expect(r["active"] as? Bool == true && r["introspected_scope"] as? String == "system/patients.read")
                #expect(r["revoke"] as? Int == 200)
                #expect(r["after_revoke"] as? Int == 401, "\(method): revoked → refused on the next request")
                #expect((r["introspect_after_revoke"] as? [String: Any])?.keys.sorted() == ["active"])
                #expect((r["introspect_after_revoke"] as? [String: Any])?["active"] as? Bool == false)
            }
            #expect(out["jwt_client_has_secret"] as? Bool == false)
            for alg in ["RS384", "ES384"] {
                let r = try #require(out["private_key_jwt_\(alg)"] as? [String: Any])
                #expect(r["ok"] as? Bool == true, "private_key_jwt \(alg): \(r)")
                #expect(r["call"] as? Int == 200 && r["scope"] as? String == "system/patients.read")
            }
            // authlib's default assertion lifetime (an hour) is over SMART's five minutes.
            let long = try #require(out["private_key_jwt_default_exp"] as? [String: Any])
            #expect(long["ok"] as? Bool == false && long["error"] as? String == "invalid_client")
        }
    }
}
