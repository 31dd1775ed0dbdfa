@testable import CaregateServer
import Foundation
import Testing

/// The gateway's direct path (`DirectForwarding`): a request by a cached credential that the
/// pipeline would forward without a body is forwarded on its connection's event loop. These
/// tests hold it to the pipeline's answers, byte for byte where they must agree.
@Suite("Gateway direct path", .serialized)
struct DirectForwardingTests {
    /// What an answer says apart from what differs on every request (its date and trace id).
    static func comparable(_ reply: TestServer.Reply) -> [String: String] {
        reply.headers.filter { !["date", "x-trace-id"].contains($0.key.lowercased()) }
    }

    /// What the upstream received apart from the trace id; its fields sorted, as the test
    /// client sends a dictionary's fields in no fixed order.
    static func comparable(_ echoed: Echoed?) -> [String] {
        guard let echoed else { return [] }
        return [echoed.method, echoed.authority, echoed.path, echoed.query, "\(echoed.bodyBytes)"]
            + echoed.headers.filter { $0.name != "x-caregate-trace-id" }.map { "\($0.name): \($0.value)" }.sorted()
    }

    /// Waits until this instance's change watcher has applied every grant-chain change made so
    /// far: it re-applies the instance's own changes once, dropping what was cached after them.
    static func changesApplied(_ s: TestServer) async throws {
        let current = try await s.server.grants.generation()
        try #require(try await MultiInstanceTests.within(.seconds(5)) { s.server.appliedChangeGeneration >= current })
    }

    /// An app holding `cms.shl.resolve` on the platform surface, installed in a clinic, and a key
    /// of it, once this instance has applied its own changes (so that nothing it made is dropped
    /// from its cache later).
    static func shlKey(
        _ s: TestServer
    ) async throws -> (developer: (id: String, token: String), clinic: TestServer.Clinic, app: (id: String, liveVersionId: String), key: (id: String, key: String)) {
        let (developer, clinic, app, _) = try await s.installedApp(scopes: ["cms.shl.resolve"], surface: "platform", patients: 0)
        let key = try await s.createKey(developer: developer.token, app: app.id, scopes: nil)
        try await changesApplied(s)
        return (developer, clinic, app, key)
    }

    struct NeverDirect: Error {}

    /// Sends `request` until it takes the direct path, at most 10 times, counting what it sent in
    /// `sent`: on the PostgreSQL that the suites' servers share, another server's change (a
    /// signing-key rotation) may drop this server's cached credentials at any moment, and the
    /// next use (the pipeline's) caches them again.
    static func directly(
        _ s: TestServer, sent: inout Int, sourceLocation: SourceLocation = #_sourceLocation, _ request: () async throws -> TestServer.Reply
    ) async throws -> TestServer.Reply {
        for _ in 0..<10 {
            let before = s.server.forwardedDirectly
            let reply = try await request()
            sent += 1
            if s.server.forwardedDirectly == before + 1 { return reply }
        }
        Issue.record("not forwarded directly in 10 attempts", sourceLocation: sourceLocation)
        throw NeverDirect()
    }

    /// The sum of `hb_requests` for routes containing `route` with `status`.
    static func requestCount(_ s: TestServer, route: String, status: Int) async throws -> Double {
        let text = try await s.request("GET", "/metrics").text
        return text.split(separator: "\n").filter {
            $0.hasPrefix("hb_requests{") && $0.contains(route) && $0.contains("http_response_status_code=\"\(status)\"")
        }.compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    @Test("a path's surface is its longest prefix's, whole segments only, read from bytes as from the path's text")
    func surfaceOfPath() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)] }) { s in
            let registry = s.server.registry
            let owned = (registry.surfaces + [registry.fhir].compactMap { $0 }).flatMap { surface in surface.prefixes.map { ($0, surface) } }
            #expect(owned.count > 5)
            // The rule in words: the path is the prefix, or the prefix and a `/`; the longest such prefix wins.
            func expected(_ path: String) -> Surface? {
                owned.filter { path == $0.0 || path.hasPrefix($0.0 + "/") }.max { $0.0.utf8.count < $1.0.utf8.count }?.1
            }
            var paths = ["", "/", "/v30", "/v3x/patients", "/unknown", "/fhir/R4", "/fhir/R4/Patient/1", "/fhir/R", "/V3/patients", "/v3/marketplace/me"]
            for (prefix, _) in owned { paths += [prefix, prefix + "/", prefix + "/x/y", prefix + "x", String(prefix.dropLast())] }
            for path in paths {
                #expect(registry.surface(for: path) === expected(path), "\(path)")
            }
            #expect(registry.surface(for: "/v3/marketplace/me")?.name == "marketplace-v3")
        }
    }

    @Test("behind a trusted proxy, a request read as bytes extends the proxy's X-Forwarded-For as one NIO's parser read")
    func trustedProxy() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: {
            $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)]
            $0.trustedProxies = ["127.0.0.1"]
        }) { s in
            let (_, clinic, _, key) = try await Self.shlKey(s)
            #expect(try await s.request("GET", "/beacon/shl/warm", token: key.key, organization: clinic.uuid).status == 200)
            let auth = "Authorization: Bearer \(key.key)\r\nX-Organization-Id: \(clinic.uuid)\r\n"
            let fields = "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Custom: kept\r\nX-Trace-Id: \(UUID().uuidString.lowercased())\r\n"
            let requests = [["GET", "/beacon/shl/p", fields]]
            let fromBytes = s.server.forwardedFromBytes
            let body = "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"
            let parsed = try await Self.rawAnswers(s, before: body, requests, auth: auth)
            let read = try await Self.rawAnswers(s, before: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", requests, auth: auth)
            #expect(s.server.forwardedFromBytes == fromBytes + 1)
            #expect(read == parsed)
            #expect(read.first?.contains("[\"x-forwarded-for\",\"203.0.113.7, 127.0.0.1\"]") == true, "\(read)")
            #expect(read.first?.contains("[\"x-forwarded-proto\",\"https\"]") == true)
        }
    }

    @Test("a cached credential's request is forwarded directly, with the pipeline's headers, audit record and metrics", arguments: Backend.allCases)
    func sameAnswers(_ backend: Backend) async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(backend, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url + "/base")] }) { s in
            let (dev, clinic, app, key) = try await Self.shlKey(s)
            // The direct path reads the parser's fields (before HTTP types do): withheld names in
            // any letter case, and every other field as it came, must still match the pipeline's.
            let headers = [
                "X-Custom": "kept", "X-Caregate-Scopes": "forged", "X-Forwarded-For": "203.0.113.7", "Connection": "keep-alive",
                "x-CAREGATE-app": "forged", "X_Caregate_Client": "forged", "X-HTTP-Method-Override": "DELETE", "Cookie": "a=1; b=2",
                "Accept": "application/json, text/plain", "X-Mixed-Case-Name": "Value With  Spaces",
            ]
            // A status only this suite's upstream answers (the suite runs serially): counted exactly.
            let countBefore = try await Self.requestCount(s, route: "/beacon/shl", status: 299)

            // First use: resolved on the pipeline (a cache miss). Then the direct path.
            var sent = 0
            let before = s.server.forwardedDirectly
            let viaPipeline = try await s.request("GET", "/beacon/shl/abc?x=1&y=%20", token: key.key, organization: clinic.uuid, headers: headers)
            #expect(s.server.forwardedDirectly == before)
            let direct = try await Self.directly(s, sent: &sent) {
                try await s.request("GET", "/beacon/shl/abc?x=1&y=%20", token: key.key, organization: clinic.uuid, headers: headers)
            }
            try expectStatus(viaPipeline, 200)
            try expectStatus(direct, 200)
            #expect(Self.comparable(direct) == Self.comparable(viaPipeline))
            #expect(Self.comparable(Echoed(direct)) == Self.comparable(Echoed(viaPipeline)))
            #expect(Echoed(direct)?.values("X-Caregate-Trace-Id") == [direct.header("X-Trace-Id")!])
            #expect(Echoed(direct)?.values("X-Caregate-Scopes") == ["cms.shl.resolve"] && Echoed(direct)?.values("X-Forwarded-For") == ["127.0.0.1"])
            #expect(Echoed(direct)?.values("Authorization").isEmpty == true && Echoed(direct)?.path == "/base/beacon/shl/abc")
            #expect(Echoed(direct)?.values("X-Caregate-App") == [app.id] && Echoed(direct)?.values("X-HTTP-Method-Override").isEmpty == true)
            #expect(Echoed(direct)?.values("Cookie") == ["a=1; b=2"] && Echoed(direct)?.values("X-Custom") == ["kept"])
            #expect(direct.header("Server") == "caregate" && direct.header("Date") != nil)

            // The caller's trace id, the upstream's own status, HEAD and large answers.
            let trace = UUID().uuidString.lowercased()
            let traced = try await Self.directly(s, sent: &sent) {
                try await s.request("GET", "/beacon/shl/t", token: key.key, organization: clinic.uuid, headers: ["X-Trace-Id": trace])
            }
            #expect(traced.header("X-Trace-Id") == trace && Echoed(traced)?.values("X-Caregate-Trace-Id") == [trace])
            let teapot = try await Self.directly(s, sent: &sent) {
                try await s.request("GET", "/beacon/shl/t", token: key.key, organization: clinic.uuid, headers: ["X-Echo-Status": "418"])
            }
            #expect(teapot.status == 418 && Echoed(teapot)?.path == "/base/beacon/shl/t")
            let head = try await Self.directly(s, sent: &sent) { try await s.request("HEAD", "/beacon/shl/abc", token: key.key, organization: clinic.uuid) }
            #expect(head.status == 200 && head.body.isEmpty)
            var directReplies = [direct, traced, teapot, head]
            for chunked in ["0", "1"] {
                let large = try await Self.directly(s, sent: &sent) {
                    try await s.request(
                        "GET", "/beacon/shl/abc", token: key.key, organization: clinic.uuid, headers: ["X-Echo-Bytes": "3145728", "X-Echo-Chunked": chunked])
                }
                #expect(large.status == 200 && large.body.count == 3_145_728 && large.body.allSatisfy { $0 == UInt8(ascii: "x") }, "chunked=\(chunked)")
                directReplies.append(large)
            }
            // Refusals stay the pipeline's: same shape, and nothing forwarded.
            let forwarded = s.server.forwardedDirectly
            let refused = try await s.request("GET", "/prime/v1/health", token: key.key, organization: clinic.uuid)
            #expect(refused.status == 403 && refused.json?.string("message") == "Insufficient scope. Required: prime.ingest.read")
            let wrongClinic = try await s.request("GET", "/beacon/shl/abc", token: key.key, organization: UUID().uuidString)
            #expect(wrongClinic.status == 401)
            let wrongSecret = try await s.request(
                "GET", "/beacon/shl/abc", token: String(key.key.dropLast()) + (key.key.hasSuffix("0") ? "1" : "0"), organization: clinic.uuid)
            #expect(wrongSecret.status == 401)
            #expect(s.server.forwardedDirectly == forwarded)

            // An access token takes the direct path once cached too.
            let client = try await OAuthTests.client(s, dev: dev.token, app: app.id, scopes: ["cms.shl.resolve"])
            let token = try await OAuthTests.form(s, "grant_type=client_credentials&scope=cms.shl.resolve", basic: client).json!.string("access_token")
            let first = try await s.request("GET", "/beacon/shl/o", token: token, organization: clinic.uuid)
            #expect(first.status == 200)
            let second = try await Self.directly(s, sent: &sent) { try await s.request("GET", "/beacon/shl/o", token: token, organization: clinic.uuid) }
            #expect(second.status == 200)
            #expect(Echoed(second)?.values("X-Caregate-Credential-Type") == ["oauth2"] && Echoed(second)?.values("X-Caregate-Client") == [client.id])
            directReplies.append(second)
            #expect(sent >= directReplies.count)

            // Every request is audited (with its status) and counted under its route, as on the pipeline.
            let audit = try await s.request("GET", "/manage/audit?appId=\(app.id)&decision=allowed&limit=100", token: s.operatorToken)
            let events = audit.json?.array("data") ?? []
            for reply in directReplies {
                #expect(events.contains { $0.string("traceId") == reply.header("X-Trace-Id") && $0["status"] as? Int == reply.status && $0.string("route").contains("/beacon/shl") })
            }
            var sent299 = 0
            for _ in 0..<3 {
                let reply = try await Self.directly(s, sent: &sent299) {
                    try await s.request("GET", "/beacon/shl/m", token: key.key, organization: clinic.uuid, headers: ["X-Echo-Status": "299"])
                }
                #expect(reply.status == 299)
            }
            let countAfter = try await Self.requestCount(s, route: "/beacon/shl", status: 299)
            #expect(Int(countAfter - countBefore) == sent299, "hb_requests moved by \(countAfter - countBefore) for \(sent299) requests")
            // An upstream's own answer is not an error of Caregate's: no error series for it.
            #expect(!(try await s.request("GET", "/metrics").text.contains("error_type=\"299\"")))
        }
    }

    @Test("answers leave in the order requests came, across the direct path and the pipeline, also after the client stops sending")
    func pipelining() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)] }) { s in
            let (_, clinic, _, key) = try await Self.shlKey(s)
            #expect(try await s.request("GET", "/beacon/shl/warm", token: key.key, organization: clinic.uuid).status == 200)
            let before = s.server.forwardedDirectly
            let answered = s.server.answeredDirectly
            // Four requests in one write: direct (slow upstream), pipeline, answered directly,
            // direct; then the client half-closes.
            let auth = "Authorization: Bearer \(key.key)\r\nX-Organization-Id: \(clinic.uuid)\r\n"
            let requests = "GET /beacon/shl/one HTTP/1.1\r\nHost: x\r\n\(auth)X-Echo-Delay-Ms: 300\r\n\r\n"
                + "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /beacon/shl/three HTTP/1.1\r\nHost: x\r\n\(auth)\r\n"
            let script = """
                import json, socket, sys
                sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
                sock.sendall(sys.argv[2].encode())
                sock.shutdown(socket.SHUT_WR)
                data = b""
                answers = []
                while len(answers) < 4:
                    while b"\\r\\n\\r\\n" not in data:
                        chunk = sock.recv(65536)
                        if not chunk:
                            print(json.dumps(answers + [["closed early", data.decode()]])); sys.exit(0)
                        data += chunk
                    head, data = data.split(b"\\r\\n\\r\\n", 1)
                    lines = head.decode().split("\\r\\n")
                    length = int(next(l.split(":", 1)[1] for l in lines if l.lower().startswith("content-length:")))
                    while len(data) < length:
                        data += sock.recv(65536)
                    answers.append([lines[0], data[:length].decode()])
                    data = data[length:]
                print(json.dumps(answers))
                """
            let port = s.base.split(separator: ":").last.map(String.init)!
            let run = try await runProgram("/usr/bin/env", ["python3", "-c", script, port, requests])
            let answers = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [[String]], "\(run.output)")
            #expect(answers.count == 4, "\(answers)")
            guard answers.count == 4 else { return }
            #expect(answers[0][0].hasPrefix("HTTP/1.1 200") && answers[0][1].contains("\"/beacon/shl/one\""))
            #expect(answers[1][0].hasPrefix("HTTP/1.1 200") && answers[1][1].contains("\"ready\""))
            #expect(answers[2][0].hasPrefix("HTTP/1.1 200") && answers[2][1] == "{\"status\":\"ok\"}")
            #expect(answers[3][0].hasPrefix("HTTP/1.1 200") && answers[3][1].contains("\"/beacon/shl/three\""), "\(answers)")
            #expect(s.server.forwardedDirectly == before + 2 && s.server.answeredDirectly == answered + 1)
        }
    }

    /// Sends `before`, then `requests` (each `[method, target, extra header lines]`, with the
    /// same credential), in one write, half-closes, and returns every answer after the first
    /// as it came but for its `Date` line and its chunk sizes (which follow the upstream's reads).
    static func rawAnswers(_ s: TestServer, before: String, _ requests: [[String]], auth: String) async throws -> [String] {
        let script = """
            import json, socket, sys
            before, requests, auth = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
            sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
            data = before + "".join(f"{m} {t} HTTP/1.1\\r\\nHost: x\\r\\n{auth}{extra}\\r\\n" for m, t, extra in requests)
            sock.sendall(data.encode())
            sock.shutdown(socket.SHUT_WR)
            stream = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                stream += chunk
            def take(n):
                global stream
                assert len(stream) >= n, ("cut short", stream)
                part, stream = stream[:n], stream[n:]
                return part
            def line():
                return take(stream.index(b"\\r\\n") + 2)
            answers = []
            for method in ["GET"] + [m for m, _, _ in requests]:
                head = take(stream.index(b"\\r\\n\\r\\n") + 4)
                lines = head.decode().split("\\r\\n")
                fields = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if l}
                status = int(lines[0].split(" ")[1])
                body = b""
                if method != "HEAD" and status not in (204, 304):
                    if "content-length" in fields:
                        body = take(int(fields["content-length"]))
                    elif fields.get("transfer-encoding") == "chunked":
                        # Chunk sizes follow the upstream's reads: the data is compared, and that it ends well.
                        body = b"<chunks>"
                        while True:
                            n = int(line().split(b";")[0], 16)
                            body += take(n)
                            assert take(2) == b"\\r\\n", "chunk data longer than its size"
                            if n == 0:
                                break
                        body += b"<end>"
                kept = "\\r\\n".join(l for l in lines if not l.lower().startswith("date:"))
                answers.append(kept + "|" + body.decode())
            assert stream == b"", ("left over", stream)
            print(json.dumps(answers[1:]))
            """
        let port = s.base.split(separator: ":").last.map(String.init)!
        let encoded = String(decoding: try JSONSerialization.data(withJSONObject: requests), as: UTF8.self)
        let run = try await runProgram("/usr/bin/env", ["python3", "-c", script, port, before, encoded, auth])
        return try #require(try? JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String], "\(run.output)")
    }

    @Test("a request read from the connection's bytes is forwarded and answered as one NIO's parser read, byte for byte")
    func bytesAsParsed() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: {
            $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url + "/base", timeoutSeconds: 1)]
        }) { s in
            let (_, clinic, _, key) = try await Self.shlKey(s)
            #expect(try await s.request("GET", "/beacon/shl/warm", token: key.key, organization: clinic.uuid).status == 200)
            let auth = "Authorization: Bearer \(key.key)\r\nX-Organization-Id: \(clinic.uuid)\r\n"
            // Every framing an answer can have, Caregate's own 504 (with and without a body), and
            // fields as a client may space them; each with its own trace id, so that both runs agree.
            var requests: [[String]] = [
                ["GET", "/beacon/shl/abc?x=1&y=%20", "X-Custom:   kept  \r\nX-Mixed-Case-Name: Value With  Spaces\r\nConnection: keep-alive\r\nContent-Length: 0\r\n"],
                ["HEAD", "/beacon/shl/abc", ""],
                ["GET", "/beacon/shl/c", "X-Echo-Bytes: 70000\r\nX-Echo-Chunked: 1\r\n"],
                ["HEAD", "/beacon/shl/c", "X-Echo-Bytes: 10\r\nX-Echo-Chunked: 1\r\n"],
                ["GET", "/beacon/shl/s", "X-Echo-Status: 204\r\n"],
                ["GET", "/beacon/shl/s", "X-Echo-Status: 418\r\n"],
                ["GET", "/beacon/shl/late", "X-Echo-Delay-Ms: 1500\r\n"],
                ["HEAD", "/beacon/shl/late", "X-Echo-Delay-Ms: 1500\r\n"],
                // Short fields without a space after the colon: each grows by a byte on its way.
                ["GET", "/beacon/shl/tight", (0..<59).map { "f\($0):v\r\n" }.joined()],
            ]
            for index in requests.indices { requests[index][2] += "X-Trace-Id: \(UUID().uuidString.lowercased())\r\n" }

            // A first request with a body: NIO's parser reads every request of that connection.
            let direct = s.server.forwardedDirectly
            let fromBytes = s.server.forwardedFromBytes
            let body = "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"
            let parsed = try await Self.rawAnswers(s, before: body, requests, auth: auth)
            #expect(s.server.forwardedDirectly == direct + requests.count && s.server.forwardedFromBytes == fromBytes)
            // A first request for Caregate itself: the parser reads its head, the rest are read as bytes.
            let read = try await Self.rawAnswers(s, before: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", requests, auth: auth)
            #expect(s.server.forwardedDirectly == direct + 2 * requests.count && s.server.forwardedFromBytes == fromBytes + requests.count)

            #expect(read.count == requests.count)
            #expect(read == parsed)
            guard read.count == requests.count else { return }
            #expect(read[0].hasPrefix("HTTP/1.1 200 OK") && read[0].contains("\"/base/beacon/shl/abc\"") && read[0].contains("[\"x-custom\",\"kept\"]"))
            #expect(read[0].contains("[\"x-mixed-case-name\",\"Value With  Spaces\"]"))
            #expect(read[1].hasPrefix("HTTP/1.1 200 OK") && read[1].hasSuffix("|") && read[1].contains("Content-Length: "))
            #expect(read[2].contains("transfer-encoding: chunked") && read[2].hasSuffix("|<chunks>" + String(repeating: "x", count: 70_000) + "<end>"))
            #expect(read[3].contains("transfer-encoding: chunked") && read[3].hasSuffix("|"))
            #expect(read[4].hasPrefix("HTTP/1.1 204 No Content") && !read[4].lowercased().contains("content-length") && read[4].hasSuffix("|"))
            #expect(read[5].hasPrefix("HTTP/1.1 418 I'm a teapot"))
            #expect(read[6].hasPrefix("HTTP/1.1 504 Gateway Timeout") && read[6].contains("\"code\":\"gateway_timeout\""))
            #expect(read[7].hasPrefix("HTTP/1.1 504 Gateway Timeout") && read[7].hasSuffix("|"))
        }
    }

    @Test("GET /healthz and a cached credential's GET …/marketplace/me are answered on the event loop as the pipeline answers them, audited and counted")
    func localAnswers() async throws {
        try await withServer(.sqlite) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 0)
            let key = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            try await Self.changesApplied(s)
            #expect(try await s.request("GET", "/v3/marketplace/me", token: key.key, organization: clinic.uuid).status == 200)
            let auth = "Authorization: Bearer \(key.key)\r\nX-Organization-Id: \(clinic.uuid)\r\n"
            var requests = [
                ["GET", "/healthz", ""],
                ["GET", "/v3/marketplace/me", ""],
                // Not answered here: a refusal (this app has no v1 scope), a query (the pipeline refuses
                // it), an organization the credential is not cached for, HEAD.
                ["GET", "/v1/marketplace/me", ""],
                ["GET", "/v3/marketplace/me?x=1", ""],
                ["GET", "/v3/marketplace/me", "X-Organization-Id: org_00000000000000000000000000000000\r\n"],
                ["HEAD", "/readyz", ""],
            ]
            // Each with its own trace id, so that both runs agree.
            let traces = requests.map { _ in UUID().uuidString.lowercased() }
            for index in requests.indices { requests[index][2] += "X-Trace-Id: \(traces[index])\r\n" }
            let healthBefore = try await Self.requestCount(s, route: "/healthz", status: 200)
            let meBefore = try await Self.requestCount(s, route: "/v3/marketplace/me", status: 200)
            let answered = s.server.answeredDirectly
            let body = "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"
            let parsed = try await Self.rawAnswers(s, before: body, requests, auth: auth)
            #expect(s.server.answeredDirectly == answered)
            let read = try await Self.rawAnswers(s, before: "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", requests, auth: auth)
            #expect(s.server.answeredDirectly == answered + 2)
            #expect(read == parsed)
            guard read.count == requests.count else { return }
            #expect(read[0].hasPrefix("HTTP/1.1 200 OK") && read[0].hasSuffix("|{\"status\":\"ok\"}") && read[0].contains("X-Trace-Id: \(traces[0])"))
            #expect(read[1].hasPrefix("HTTP/1.1 200 OK") && read[1].contains("\"code\":\"success\"") && read[1].contains(app.id))
            #expect(read[2].hasPrefix("HTTP/1.1 403") && read[3].hasPrefix("HTTP/1.1 400") && read[4].hasPrefix("HTTP/1.1 400"))
            #expect(read[5].hasPrefix("HTTP/1.1 200 OK") && read[5].hasSuffix("|"))

            // Audited as the pipeline's: one event in each run.
            let audit = try await s.request("GET", "/manage/audit?appId=\(app.id)&decision=allowed&limit=100", token: s.operatorToken)
            let matching = (audit.json?.array("data") ?? []).filter { $0.string("traceId") == traces[1] }
            #expect(matching.count == 2 && matching.allSatisfy { $0["status"] as? Int == 200 && $0.string("route").contains("/v3/marketplace/me") })
            // Counted under the same routes as the pipeline's answers (the metrics are the process's:
            // other suites' servers answer these routes meanwhile, so at least these two each).
            #expect(try await Self.requestCount(s, route: "/healthz", status: 200) - healthBefore >= 2)
            #expect(try await Self.requestCount(s, route: "/v3/marketplace/me", status: 200) - meBefore >= 2)
        }
    }

    @Test("a connection's remembered credential: a wrong secret or another clinic is refused, and a revocation or the end of a rotation's grace ends it at once", arguments: Backend.allCases)
    func rememberedCredential(_ backend: Backend) async throws {
        try await withServer(backend) { s in
            let (dev, clinic, app, _) = try await s.installedApp(scopes: ["read:patients"], patients: 0)
            let other = try await s.createClinic(patients: 0)
            let revoked = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            let rotated = try await s.createKey(developer: dev.token, app: app.id, scopes: nil)
            try await Self.changesApplied(s)
            let answered = s.server.answeredDirectly
            // One keep-alive connection for every `/me`; the key changes go on another. Each line
            // printed: the step, the status, the connection's local port.
            let script = """
                import http.client, json, sys, time
                port, org, other, dev = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
                revoked_id, revoked, rotated_id, rotated = sys.argv[5:9]
                client = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                def me(step, key, clinic=org):
                    client.request("GET", "/v3/marketplace/me", headers={"Authorization": "Bearer " + key, "X-Organization-Id": clinic})
                    answer = client.getresponse()
                    answer.read()
                    print(json.dumps([step, answer.status, client.sock.getsockname()[1]]), flush=True)
                    return answer.status
                def manage(method, path, body=None):
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                    c.request(method, path, body=json.dumps(body) if body is not None else None,
                              headers={"Authorization": "Bearer " + dev, "Content-Type": "application/json"})
                    answer = c.getresponse()
                    answer.read()
                    c.close()
                    return answer.status
                wrong = revoked[:-4] + ("AAAA" if not revoked.endswith("AAAA") else "BBBB")
                for step in ["first", "cached", "remembered"]:
                    me(step, revoked)
                me("wrong secret", wrong)
                me("after the wrong one", revoked)
                me("other clinic", revoked, other)
                me("own clinic again", revoked)
                print(json.dumps(["revoke", manage("DELETE", "/manage/keys/" + revoked_id), 0]), flush=True)
                me("revoked", revoked)
                for step in ["rotated key", "rotated key cached", "rotated key remembered"]:
                    me(step, rotated)
                print(json.dumps(["rotate", manage("POST", "/manage/keys/" + rotated_id + "/rotate", {"graceSeconds": 1}), 0]), flush=True)
                rotated_at = time.monotonic()
                # The old key works for its grace (1 s), then stops: asked until it does, at most 10 s.
                while me("in grace", rotated) == 200 and time.monotonic() - rotated_at < 10:
                    pass
                print(json.dumps(["grace ended after", 0, round(time.monotonic() - rotated_at, 3)]), flush=True)
                """
            let port = s.base.split(separator: ":").last.map(String.init)!
            let run = try await runProgram(
                "/usr/bin/env", ["python3", "-c", script, port, clinic.uuid, other.uuid, dev.token, revoked.id, revoked.key, rotated.id, rotated.key])
            #expect(run.status == 0, "\(run.output)")
            let lines = run.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [Any] }
            var status: [String: Int] = [:]
            var ports = Set<Int>()
            var grace: Double?
            for line in lines {
                guard let step = line[0] as? String, let code = line[1] as? Int else { continue }
                if step == "grace ended after" {
                    grace = (line[2] as? NSNumber)?.doubleValue
                } else if step == "in grace" {
                    #expect(code == 200 || code == 401, "\(line)")
                    status[step] = code
                } else {
                    status[step] = code
                }
                if !["revoke", "rotate", "grace ended after"].contains(step), let port = line[2] as? Int { ports.insert(port) }
            }
            #expect(ports.count == 1, "every /me on one connection: \(ports)")
            for step in ["first", "cached", "remembered", "after the wrong one", "own clinic again", "rotated key", "rotated key cached", "rotated key remembered"] {
                #expect(status[step] == 200, "\(step): \(run.output)")
            }
            #expect(status["wrong secret"] == 401, "\(run.output)")
            #expect(status["other clinic"].map { $0 != 200 } == true, "\(run.output)")
            #expect(status["revoke"] == 204 && status["revoked"] == 401, "\(run.output)")
            #expect(status["rotate"] == 201 && status["in grace"] == 401, "\(run.output)")
            let ended = try #require(grace, "\(run.output)")
            #expect(ended >= 0.9 && ended < 3, "the rotated key stopped \(ended) s after the rotation")
            // The cached and remembered requests were answered on the event loop (the first of each key by the pipeline).
            #expect(s.server.answeredDirectly - answered >= 6)
        }
    }

    @Test("a request that waited behind an answer is read to its end")
    func readsResume() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)] }) { s in
            // A request, and the head and half the body of a second one, in one write: the second
            // waits while the first is answered. Once the first answer is in, the rest of the body:
            // it must be read, and the second request answered.
            let script = """
                import socket, sys
                sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
                def answers(n):
                    data = b""
                    while data.count(b"HTTP/1.1 ") < n:
                        try:
                            chunk = sock.recv(65536)
                        except socket.timeout:
                            break
                        if not chunk:
                            break
                        data += chunk
                    return data.count(b"HTTP/1.1 ")
                body = b"grant_type=client_credentials&scope=x"
                sock.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
                    + b"POST /oauth2/token HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/x-www-form-urlencoded\\r\\n"
                    + b"Content-Length: " + str(len(body)).encode() + b"\\r\\n\\r\\n" + body[:10])
                first = answers(1)
                sock.sendall(body[10:])
                print(first, answers(1))
                """
            let port = s.base.split(separator: ":").last.map(String.init)!
            let run = try await runProgram("/usr/bin/env", ["python3", "-c", script, port])
            #expect(run.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1 1", "\(run.output)")
        }
    }

    @Test("on the direct path an unreachable upstream is a 502 and a slow one a 504, in the error shape, audited")
    func failures() async throws {
        let slow = try EchoUpstream()
        defer { slow.stop() }
        let gone = try EchoUpstream()
        try await withServer(.sqlite, configure: {
            $0.upstreams = [
                try! UpstreamConfiguration(surface: "platform", url: gone.url),
                try! UpstreamConfiguration(surface: "practice-api", url: slow.url, timeoutSeconds: 0.5),
            ]
        }) { s in
            let (dev, clinic, app, key) = try await Self.shlKey(s)
            #expect(try await s.request("GET", "/beacon/shl/warm", token: key.key, organization: clinic.uuid).status == 200)
            #expect(try await s.request("GET", "/beacon/shl/warm", token: key.key, organization: clinic.uuid).status == 200)
            gone.stop()
            let before = s.server.forwardedDirectly
            // The pooled connection is found closed, a new one refused: 502.
            let down = try await s.request("GET", "/beacon/shl/abc", token: key.key, organization: clinic.uuid)
            #expect(s.server.forwardedDirectly == before + 1)
            #expect(down.status == 502 && down.json?.string("code") == "bad_gateway")
            #expect(down.json?.string("trace_id") == down.header("X-Trace-Id") && down.header("Content-Type") == "application/json")
            let metrics = try await s.request("GET", "/metrics").text
            #expect(metrics.split(separator: "\n").contains {
                $0.hasPrefix("hb_request_errors{") && $0.contains("/beacon/shl") && $0.contains("error_type=\"502\"") && !$0.hasSuffix(" 0")
            })

            let practiceApp = try await s.createApp(developer: dev.token, scopes: ["apiv2"], surface: "practice-api")
            _ = try await s.install(app: practiceApp.id, clinic: clinic)
            let client = try await OAuthTests.client(s, dev: dev.token, app: practiceApp.id, scopes: ["apiv2"], extra: ["organizationId": clinic.id])
            let token = try await GatewayTests.token(s, client: client, scope: nil).json!.string("access_token")
            try await Self.changesApplied(s)
            #expect(try await s.request("GET", "/api/2.0/patients/", token: token).status == 200)
            let started = ContinuousClock.now
            let late = try await s.request("GET", "/api/2.0/patients/", token: token, headers: ["X-Echo-Delay-Ms": "8000"])
            #expect(late.status == 504 && late.json?.string("code") == "gateway_timeout")
            #expect(ContinuousClock.now - started < .seconds(5))
            #expect(s.server.forwardedDirectly == before + 2)
            // An upstream that falls silent in the middle of a body: the answer ends short.
            var stalled: TestServer.Reply?
            do {
                stalled = try await s.request(
                    "GET", "/api/2.0/patients/", token: token, headers: ["X-Echo-Bytes": "1048576", "X-Echo-Chunked": "1", "X-Echo-Pause-Ms": "4000"])
            } catch {
                stalled = nil
            }
            #expect((stalled?.body.count ?? 0) < 1_048_576)
            #expect(s.server.forwardedDirectly == before + 3)
            // The connection of the cut answer is not reused: the next request is answered whole.
            #expect(try await s.request("GET", "/api/2.0/patients/", token: token).status == 200)

            let audit = try await s.request("GET", "/manage/audit?appId=\(app.id)&limit=100", token: s.operatorToken)
            #expect((audit.json?.array("data") ?? []).contains { $0["status"] as? Int == 502 && $0.string("traceId") == down.header("X-Trace-Id") })
        }
    }

    /// An upstream that answers `…/bad` with a head framed two ways, `…/extra` with bytes after
    /// the answer's end, and anything else with how many `…/bad` requests it has had.
    static let misframingUpstream = """
        import socketserver, threading
        bad = 0
        lock = threading.Lock()
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                global bad
                data = b""
                while True:
                    while b"\\r\\n\\r\\n" not in data:
                        chunk = self.request.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head, data = data.split(b"\\r\\n\\r\\n", 1)
                    path = head.split(b" ")[1].decode()
                    if path.endswith("/bad"):
                        with lock:
                            bad += 1
                        self.request.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n2\\r\\nok\\r\\n0\\r\\n\\r\\n")
                    elif path.endswith("/extra"):
                        self.request.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nokHTTP/1.1 200 OK\\r\\n")
                    else:
                        body = ('{"bad": %d}' % bad).encode()
                        self.request.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        print("listening on", server.server_address[1], flush=True)
        server.serve_forever()
        """

    @Test("on the direct path a misframed answer is a 502 and is not asked for again; bytes after an answer close its connection")
    func misframedAnswers() async throws {
        let upstream = try ListeningHelper(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", Self.misframingUpstream], name: "misframing upstream")
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: { $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)] }) { s in
            let (_, clinic, _, key) = try await Self.shlKey(s)
            var sent = 0
            let count = { try await s.request("GET", "/beacon/shl/count", token: key.key, organization: clinic.uuid) }
            #expect(try await count().json?["bad"] as? Int == 0)
            for _ in 0..<3 { #expect(try await Self.directly(s, sent: &sent, count).json?["bad"] as? Int == 0) }
            // Over the connection the last answer left idle: a reused one, which a closed connection
            // would have the request sent again on a new one; a misframed answer must not.
            let bad = try await Self.directly(s, sent: &sent) { try await s.request("GET", "/beacon/shl/bad", token: key.key, organization: clinic.uuid) }
            #expect(bad.status == 502 && bad.json?.string("code") == "bad_gateway" && bad.json?.string("trace_id") == bad.header("X-Trace-Id"))
            #expect(try await Self.directly(s, sent: &sent, count).json?["bad"] as? Int == 1)
            // Bytes after the end: the answer is whole, its connection is not used again.
            let extra = try await Self.directly(s, sent: &sent) { try await s.request("GET", "/beacon/shl/extra", token: key.key, organization: clinic.uuid) }
            #expect(extra.status == 200 && String(decoding: extra.body, as: UTF8.self) == "ok")
            for _ in 0..<3 { #expect(try await Self.directly(s, sent: &sent, count).json?["bad"] as? Int == 1) }
        }
    }

    @Test("turned off, every request takes the pipeline")
    func off() async throws {
        let upstream = try EchoUpstream()
        defer { upstream.stop() }
        try await withServer(.sqlite, configure: {
            $0.upstreams = [try! UpstreamConfiguration(surface: "platform", url: upstream.url)]
            $0.directForwarding = false
        }) { s in
            let (_, clinic, _, key) = try await Self.shlKey(s)
            for _ in 0..<3 { #expect(try await s.request("GET", "/beacon/shl/abc", token: key.key, organization: clinic.uuid).status == 200) }
            #expect(s.server.forwardedDirectly == 0)
        }
    }
}
