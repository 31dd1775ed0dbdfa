import CaregateServer
import Foundation
import Testing

/// Guessing client secrets costs time: past a limit of failed client authentications per
/// client or per caller address, the token endpoint answers 429 with `Retry-After`. The
/// attempts are made by Python's requests (URLSession here stalls on a run of 401s carrying a
/// Basic challenge).
@Suite struct TokenRateLimitTests {
    static let script = """
        import json, sys, requests
        base, client_id, secret, other_id, other_secret = sys.argv[1:6]
        def token(cid, csecret, path="/oauth2/token"):
            r = requests.post(base + path, data={"grant_type": "client_credentials", "token": "x"}, auth=(cid, csecret), timeout=10)
            return r.status_code, r.headers.get("Retry-After"), r.json().get("error")
        out = {"first": token(client_id, secret)[0]}
        out["wrong"] = [token(client_id, "cs_wrong")[0] for _ in range(20)]
        out["limited"] = token(client_id, secret)
        out["other"] = token(other_id, other_secret)[0]
        out["unknown"] = [token("cli_unknown%d" % i, "cs_nope")[0] for i in range(40)]
        out["address"] = [token(other_id, other_secret, path) for path in ("/oauth2/token", "/oauth2/introspect")]
        print(json.dumps(out))
        """

    @Test("20 wrong secrets for a client make its next attempt 429 with Retry-After; 60 failures from an address hold back all its requests")
    func limits() async throws {
        try await withServer(.sqlite) { s in
            let (dev, _, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 0)
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            let other = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["read:patients"])
            let run = try await runProgram("/usr/bin/env", ["python3", "-c", Self.script, s.base, client.id, client.secret, other.id, other.secret])
            try #require(run.status == 0, "\(run.output)")
            let line = try #require(run.output.split(separator: "\n").last)
            let result = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(result["first"] as? Int == 200)
            #expect((result["wrong"] as? [Int]) == Array(repeating: 401, count: 20))
            // The right secret, after 20 wrong ones for this client: 429, Retry-After in seconds.
            let limited = try #require(result["limited"] as? [Any])
            #expect(limited[0] as? Int == 429 && limited[2] as? String == "temporarily_unavailable")
            #expect(Int(limited[1] as? String ?? "").map { (1...60).contains($0) } == true)
            // Another client of the same caller is not held back by this one's failures…
            #expect(result["other"] as? Int == 200)
            // …until the address has failed 60 times (20 + 40 more; a 429 is not a failure): then
            // every request from it is 429, whatever it sends.
            #expect((result["unknown"] as? [Int]) == Array(repeating: 401, count: 40))
            for answer in try #require(result["address"] as? [[Any]]) {
                #expect(answer[0] as? Int == 429 && answer[1] is String, "\(answer)")
            }
        }
    }
}
