@testable import CaregateServer
import Foundation
import Synchronization
import Testing

/// A client's `jwksUri` cannot make the server reach its own loopback, the cloud metadata
/// service or a private network: refused at registration and again before every fetch,
/// before any connection is opened, unless the host is allowlisted. Names are resolved by a
/// resolver the test controls, so no test sends traffic beyond loopback.
@Suite struct OutboundAddressTests {
    /// Host → addresses, changeable while the server runs.
    final class Names: Sendable {
        let table = Mutex<[String: [String]]>([:])
        let lookups = Mutex<[String: Int]>([:])
        func set(_ host: String, _ addresses: [String]) { table.withLock { $0[host] = addresses } }
        func resolve(_ host: String) -> [String] {
            lookups.withLock { $0[host, default: 0] += 1 }
            return table.withLock { $0[host] ?? [] }
        }
        func lookups(of host: String) -> Int { lookups.withLock { $0[host] ?? 0 } }
    }

    @Test("a name that did not resolve is not looked up again for a while; a name that resolves is looked up every time")
    func unresolvedNamesRemembered() async throws {
        let names = Names()
        names.set("public.example.test", ["93.184.216.34"])
        try await withServer(.sqlite, configure: { $0.hostResolver = { names.resolve($0) } }) { s in
            let register = try await Self.registration(s)
            for _ in 0..<3 {
                let refused = try await register("https://Nowhere.example.test/jwks.json")
                #expect(refused.status == 400 && refused.text.contains("the host nowhere.example.test does not resolve"), "\(refused.text)")
            }
            #expect(names.lookups(of: "nowhere.example.test") == 1)
            // Remembered as unresolved, even once it resolves (for 30 s, as a resolver caches a negative answer).
            names.set("nowhere.example.test", ["93.184.216.35"])
            #expect(try await register("https://nowhere.example.test/jwks.json").status == 400)
            #expect(names.lookups(of: "nowhere.example.test") == 1)
            for _ in 0..<2 { try expectStatus(try await register("https://public.example.test/jwks.json"), 201) }
            #expect(names.lookups(of: "public.example.test") == 2)
        }
    }

    /// Holds lookups until it is opened.
    actor Gate {
        private var opened = false
        private var waiting: [CheckedContinuation<Void, Never>] = []
        func wait() async {
            if opened { return }
            await withCheckedContinuation { waiting.append($0) }
        }
        func open() {
            opened = true
            for continuation in waiting { continuation.resume() }
            waiting = []
        }
    }

    @Test("checks that arrive while a name is looked up wait for that lookup instead of making their own")
    func concurrentLookupsShared() async throws {
        let names = Names(), gate = Gate()
        let policy = OutboundAddressPolicy(resolve: { host in
            let addresses = names.resolve(host)
            await gate.wait()
            return addresses
        })
        let host = "slow.example.test"
        let refusals = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    do throws(OutboundAddressPolicy.Refusal) {
                        try await policy.check(host: host)
                        return "allowed"
                    } catch {
                        return error.description
                    }
                }
            }
            // All eight wait for the one lookup before it answers.
            var turns = 0
            while policy.lookups.waiting(for: host) < 8 && turns < 10_000_000 {
                turns += 1
                await Task.yield()
            }
            #expect(policy.lookups.waiting(for: host) == 8)
            await gate.open()
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(refusals.count == 8 && refusals.allSatisfy { $0 == "the host \(host) does not resolve" }, "\(refusals)")
        #expect(names.lookups(of: host) == 1)
        #expect(policy.lookups.waiting(for: host) == 0)
    }

    @Test("loopback, link-local, private and mapped addresses are refused at registration; public ones and allowlisted hosts pass")
    func registration() async throws {
        let names = Names()
        names.set("internal.example.test", ["10.1.2.3"])
        names.set("mixed.example.test", ["93.184.216.34", "192.168.0.9"])
        names.set("metadata.example.test", ["fd00:ec2::254"])
        names.set("public.example.test", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
        names.set("allowed.example.test", ["10.9.9.9"])
        try await withServer(.sqlite, configure: { options in
            options.hostResolver = { names.resolve($0) }
            options.allowedOutboundHosts = ["allowed.example.test"]
        }) { s in
            let register = try await Self.registration(s)
            for url in [
                "https://127.0.0.1/jwks.json", "https://127.1.2.3/jwks.json", "https://169.254.169.254/latest/meta-data", "https://[::1]/jwks.json",
                "https://[fe80::1]/jwks.json", "https://[fd00::1]/jwks.json", "https://[::ffff:10.0.0.1]/jwks.json", "https://0.0.0.0/jwks.json",
                "https://100.64.0.1/jwks.json", "https://internal.example.test/jwks.json", "https://mixed.example.test/jwks.json",
                "https://metadata.example.test/jwks.json", "https://unresolvable.example.test/jwks.json", "http://127.0.0.1:9/jwks.json",
            ] {
                let reply = try await register(url)
                #expect(reply.status == 400 && reply.text.contains("jwksUri"), "\(url): \(reply.status) \(reply.text)")
            }
            for url in ["https://public.example.test/jwks.json", "https://93.184.216.34/jwks.json", "https://allowed.example.test/jwks.json"] {
                try expectStatus(try await register(url), 201)
            }
        }
    }

    @Test("a name that resolves to a private address by the time of the fetch is not fetched")
    func fetchTime() async throws {
        let names = Names()
        names.set("keys.example.test", ["93.184.216.34"])
        try await withServer(.sqlite, configure: { $0.hostResolver = { names.resolve($0) } }) { s in
            let (dev, _, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 0)
            let registered = try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                                 json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwksUri": "https://keys.example.test/jwks.json"])
            try expectStatus(registered, 201)
            let clientID = registered.json!.string("clientId")
            names.set("keys.example.test", ["169.254.169.254"])
            let keys = try await ClientAssertionTests.newKeys()
            let jwt = try await ClientAssertionTests.assertion(keys["es"]!, "ES384", claims: [
                "iss": clientID, "sub": clientID, "aud": s.server.issuer + "/oauth2/token", "jti": UUID().uuidString, "expiresIn": 120,
            ])
            let before = try await Self.refusedFetches(s)
            let refused = try await OAuthTests.form(
                s, "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=\(jwt)")
            #expect(refused.status == 401 && refused.json?.string("error") == "invalid_client")
            // The client learns nothing of why…
            #expect(refused.json?.string("error_description") == "the client's keys could not be obtained from its jwksUri", "\(refused.text)")
            // …but it was the address check, before any connection (not a failed connection).
            #expect(try await Self.refusedFetches(s) > before)
        }
    }

    /// Registers an OAuth client with a `jwksUri` for an app installed in a new clinic.
    static func registration(_ s: TestServer) async throws -> @Sendable (String) async throws -> TestServer.Reply {
        let (dev, _, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 0)
        return { url in
            try await s.request("POST", "/manage/apps/\(app.id)/oauth-clients", token: dev.token,
                                json: ["scopes": ["read:patients"], "grantTypes": ["client_credentials"], "jwksUri": url])
        }
    }

    /// `caregate_outbound_refused_total` from /metrics (one registry for the process).
    static func refusedFetches(_ s: TestServer) async throws -> Int {
        let metrics = try await s.request("GET", "/metrics").text
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("caregate_outbound_refused_total ") }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    }
}
