import CaregateServer
import CaregateStore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Testing

@Suite("OpenAPI, demo and migrations")
struct OpenAPIAndLifecycleTests {
    @Test("/openapi.json is valid OpenAPI 3.1 and lists every route the server serves")
    func openAPI() async throws {
        // OpenAPI paths are compared by shape: `/v3/notes/{id}` (GET) and `/v3/notes/{noteId}`
        // (PATCH) are one path to OpenAPI, documented once.
        func shape(_ path: String) -> String {
            path.split(separator: "/", omittingEmptySubsequences: false).map { $0.hasPrefix("{") ? "{}" : String($0) }.joined(separator: "/")
        }
        try await withServer(.sqlite) { s in
            let reply = try await s.request("GET", "/openapi.json")
            try expectStatus(reply, 200)
            let document = try #require(reply.json)
            #expect(document.string("openapi") == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            // Every route of the HTTP router (health, management, …).
            let router = s.server.routes()
            #expect(router.count > 15)
            // The pages for people (HTML, forms with CSRF tokens) are not the API the document describes.
            for (method, path) in router where !["/scopes", "/console", "/assets/", "/oauth2/authorize/"].contains(where: { path.hasPrefix($0) }) {
                let operations = paths[path] ?? paths.first { shape($0.key) == shape(path) }?.value
                #expect(operations?[method.lowercased()] != nil, "\(method) \(path) is missing from /openapi.json")
            }
            // Every route the clinic gateway serves: the two marketplace catalogs.
            let documented = Dictionary(paths.map { (shape($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })
            for surface in ["marketplace-v3", "marketplace-v1"] {
                let catalog = try CatalogLoader.load(file: catalogDirectory.appendingPathComponent("\(surface).json"))
                for route in catalog.routes {
                    #expect(documented[shape(route.path)]?[route.method.description.lowercased()] != nil, "\(route.template) is missing")
                }
            }
            // The built-in FHIR API: every served type's search and read, the clinical types' writes,
            // with OperationOutcome errors.
            for type in FHIRType.allCases {
                let methods = Set((paths["/fhir/R4/\(type.rawValue)"] ?? [:]).keys).union(Set((paths["/fhir/R4/\(type.rawValue)/{id}"] ?? [:]).keys))
                #expect(methods == (type.isClinical ? ["get", "post", "put", "delete"] : ["get"]), "\(type.rawValue): \(methods)")
                let search = paths["/fhir/R4/\(type.rawValue)"]?["get"] as? [String: Any]
                let forbidden = (search?["responses"] as? [String: Any])?["403"] as? [String: Any]
                #expect((forbidden?["content"] as? [String: Any])?["application/fhir+json"] != nil, "\(type.rawValue) 403")
            }
            // Nothing documented that is not served: a router route, or a method the clinic catalogs
            // (or, on /fhir/R4, the platform catalog) route on that path (`GET /v3/emails/send` is
            // served by `GET /v3/emails/{id}`).
            let served = Set(router.map { "\($0.method.lowercased()) \(shape($0.path))" })
            let platform = try CatalogLoader.load(file: catalogDirectory.appendingPathComponent("platform.json"))
            for (path, operations) in paths {
                for method in operations.keys {
                    let sample = path.split(separator: "/", omittingEmptySubsequences: false)
                        .map { $0 == "{ResourceType}" ? "Patient" : $0.hasPrefix("{") ? "x0" : String($0) }.joined(separator: "/")
                    let catalogs = path.hasPrefix("/fhir/R4") ? [platform] : [EnforcementTests.v3, EnforcementTests.v1]
                    let routed = catalogs.contains { $0.explain(.empty, method: method.uppercased(), target: sample).route != nil }
                    #expect(served.contains("\(method) \(shape(path))") || routed, "\(method) \(path) is documented but not served")
                }
            }
            // The endpoints that authenticate an OAuth client say how: HTTP Basic, or in the form
            // (the empty requirement). Without either they answer 401 (OAuthTests).
            let schemes = (document["components"] as? [String: Any])?["securitySchemes"] as? [String: [String: Any]]
            #expect(schemes?["oauthClient"]?["type"] as? String == "http" && schemes?["oauthClient"]?["scheme"] as? String == "basic")
            for path in ["/oauth2/token", "/api/2.0/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"] {
                let security = (paths[path]?["post"] as? [String: Any])?["security"] as? [[String: Any]]
                #expect(security?.count == 2 && security?.first?.keys.first == "oauthClient" && security?.last?.isEmpty == true,
                        "\(path): \(String(describing: security))")
            }
            // Links lead from each list (and each FHIR search and create) to the operations on one of
            // its records; each names an operation of the document, with path parameters it has.
            var links: [String: (operationRef: String, parameters: [String: String])] = [:]
            for (path, operations) in paths {
                for (method, operation) in operations {
                    for (status, answer) in (operation as? [String: Any])?["responses"] as? [String: [String: Any]] ?? [:] {
                        for (_, link) in answer["links"] as? [String: [String: Any]] ?? [:] {
                            let reference = try #require(link["operationRef"] as? String)
                            let parameters = try #require(link["parameters"] as? [String: String])
                            links["\(method) \(path) \(status) → \(reference)"] = (reference, parameters)
                            let pointer = reference.dropFirst("#/paths/".count).split(separator: "/")
                            let target = pointer.first.map { $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~") }
                            let targetParameters = ((target.flatMap { paths[$0] }?[String(pointer.last ?? "")] as? [String: Any])?["parameters"] as? [[String: Any]])?
                                .filter { $0["in"] as? String == "path" }.compactMap { $0["name"] as? String }
                            #expect(pointer.count == 2 && targetParameters != nil, "\(method) \(path): \(reference) names no operation")
                            #expect(Set(parameters.keys).isSubset(of: Set(targetParameters ?? [])) && !parameters.isEmpty, "\(reference): \(parameters)")
                        }
                    }
                }
            }
            #expect(links["get /v3/patients 200 → #/paths/~1v3~1patients~1{id}/get"]?.parameters == ["id": "$response.body#/data/0/id"])
            #expect(links["get /v3/notes 200 → #/paths/~1v3~1notes~1{noteId}~1images/post"]?.parameters == ["noteId": "$response.body#/data/0/id"])
            #expect(links["post /fhir/R4/Observation 201 → #/paths/~1fhir~1R4~1Observation~1{id}/put"]?.parameters == ["id": "$response.body#/id"])
            #expect(links["get /fhir/R4/Patient 200 → #/paths/~1fhir~1R4~1Patient~1{id}/get"]?.parameters == ["id": "$response.body#/entry/0/resource/id"])
            #expect(links.count >= 50, "\(links.count) links")
            // The arrays the server refuses with an item twice say so.
            let schemas = (document["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]]
            let smartClient = (schemas?["NewOAuthClient"]?["oneOf"] as? [[String: Any]])?.last?["properties"] as? [String: [String: Any]]
            for field in ["grantTypes", "redirectUris"] {
                #expect(smartClient?[field]?["uniqueItems"] as? Bool == true, "NewOAuthClient.\(field): \(String(describing: smartClient?[field]))")
            }
            try await Self.validateOpenAPI(reply.body)
        }
    }

    /// Checks a document with an independent validator (openapi-spec-validator, installed by scripts/test).
    static func validateOpenAPI(_ document: Data, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("caregate-openapi-\(UUID().uuidString).json")
        try document.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try await runProgram(
            "/usr/bin/env", ["python3", "-c", "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')", file.path])
        #expect(status == 0, "openapi-spec-validator: \(output)", sourceLocation: sourceLocation)
        #expect(output.contains("valid"), sourceLocation: sourceLocation)
    }

    @Test("caregate demo: the printed curl commands work as printed")
    func demo() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let demo = try DemoProcess(["--patients", "5", "--database", dir.appendingPathComponent("demo.sqlite").path])
        defer { demo.stop() }
        let text = demo.output
        let commands = text.split(separator: "\n").filter { $0.hasPrefix("curl ") }.map(String.init)
        #expect(commands.count == 4)
        var outputs: [String] = []
        for command in commands { outputs.append(try await runProgram("/bin/sh", ["-c", command]).output) }
        guard outputs.count == 4 else { return }
        #expect(outputs[0].hasPrefix(#"{"code":"success","data":{"app":{"id":"app_"#))
        #expect(outputs[0].contains(#""read:encounters""#))
        #expect(outputs[1].hasPrefix(#"{"code":"success","data":[{"id":"pat_"#))
        #expect(outputs[2].hasPrefix("HTTP/1.1 403"))
        #expect(outputs[2].contains(#"{"code":"forbidden","message":"Insufficient scope. Required: read:bills","trace_id":""#))
        #expect(outputs[3].contains(#""soapNote":{"subjective":"#))
    }

    @Test("migrations are idempotent and refuse a newer schema", arguments: Backend.allCases)
    func migrations(_ backend: Backend) async throws {
        let location = try backend.location()
        let logger = quietLogger
        let first = try await Database.open(location, logger: logger)
        let versions = try await first.sql.raw("SELECT COUNT(*) AS n FROM caregate_schema").first(decodingColumn: "n", as: Int.self)
        await first.shutdown()
        let second = try await Database.open(location, logger: logger)
        #expect(try await second.sql.raw("SELECT COUNT(*) AS n FROM caregate_schema").first(decodingColumn: "n", as: Int.self) == versions)
        guard backend == .sqlite else {
            await second.shutdown()
            return  // a newer schema on the shared PostgreSQL would stop the other suites; SQLite shows the refusal
        }
        try await second.sql.raw("INSERT INTO caregate_schema (version, name, applied_at) VALUES (999, 'from the future', 0)").run()
        await second.shutdown()
        await #expect(throws: DatabaseError.self) { try await Database.open(location, logger: logger) }
    }

    /// SQLite only: taking migration 15 back on the PostgreSQL the other suites share would make
    /// them migrate again. Its SQL runs on PostgreSQL whenever a suite migrates an empty database.
    @Test("migration 15 indexes an Observation's effectivePeriod.start and rewrites instants past the year 9999 in text order; a row it cannot read stays as it was")
    func dateReindex() async throws {
        let location = try Backend.sqlite.location()
        let logger = quietLogger
        let before = try await Database.open(location, logger: logger)
        let rows: [(String, String, String, String)] = [
            ("obs_period", "Observation", "", #"{"resourceType":"Observation","effectivePeriod":{"start":"2015-06-07T10:00:00+02:00"}}"#),
            ("cnd_late", "Condition", "10000-01-01T13:00:00Z", #"{"resourceType":"Condition","recordedDate":"9999-12-31T23:00:00-14:00"}"#),
            ("obs_undated", "Observation", "", #"{"resourceType":"Observation"}"#),
            ("obs_unreadable", "Observation", "", #"{"resourceType":"Observation","effectivePeriod":{"start":"June"}}"#),
            ("obs_dated", "Observation", "2026-01-01T09:00:00Z", #"{"resourceType":"Observation","effectiveDateTime":"2026-01-01T09:00:00Z"}"#),
        ]
        for (id, type, date, content) in rows {
            try await before.sql.raw("""
                INSERT INTO clinical_resources (id, organization_id, resource_type, patient_id, category, code, code_system, status, recorded_at, version,
                  updated_at, content) VALUES (\(bind: id), 'org_a', \(bind: type), 'pat_a', '', 'c', '', 'final', \(bind: date), 1, 0, \(bind: content))
                """).run()
        }
        // As a database written by the previous version: migration 15 not applied yet.
        try await before.sql.raw("DELETE FROM caregate_schema WHERE version = 15").run()
        await before.shutdown()
        let after = try await Database.open(location, logger: logger)
        var dates: [String: String] = [:]
        for row in try await after.sql.raw("SELECT id, recorded_at FROM clinical_resources").all() {
            dates[try row.decode(column: "id", as: String.self)] = try row.decode(column: "recorded_at", as: String.self)
        }
        await after.shutdown()
        #expect(dates == ["obs_period": "2015-06-07T08:00:00Z", "cnd_late": "9999-12-31T37:00:00Z", "obs_undated": "", "obs_unreadable": "",
                          "obs_dated": "2026-01-01T09:00:00Z"])
    }

    @Test("eight instances starting at once on an empty database migrate it once, and all start", arguments: Backend.allCases)
    func concurrentMigrations(_ backend: Backend) async throws {
        let logger = quietLogger
        // An empty database of its own: the shared one is migrated already.
        let location: DatabaseLocation
        var dropAfterwards: (admin: Database, name: String)?
        switch try backend.location() {
        case .sqlite(let path):
            location = .sqlite(path: path)
        case .postgres(let url):
            let name = "caregate_fresh_\(UUID().uuidString.prefix(8).lowercased())"
            var components = try #require(URLComponents(string: url))
            components.path = "/" + name
            location = .postgres(url: try #require(components.string))
            let admin = try await Database.open(.postgres(url: url), logger: logger)
            do {
                try await admin.sql.raw("CREATE DATABASE \(unsafeRaw: name)").run()
            } catch {
                await admin.shutdown()
                throw error
            }
            dropAfterwards = (admin, name)
        }
        let results = await withTaskGroup(of: Result<Database, any Error>.self) { group in
            for _ in 0..<8 {
                group.addTask { [location, logger] in
                    do { return .success(try await Database.open(location, logger: logger)) } catch { return .failure(error) }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let opened = results.compactMap { try? $0.get() }
        for case .failure(let error) in results {
            Issue.record("\(backend): an instance did not start: \(String(reflecting: error))")
        }
        // Every pool is shut down before anything is thrown: one dropped open would stop the process.
        var failure: (any Error)?
        if let database = opened.first {
            do {
                let rows = try await database.sql.raw("SELECT version FROM caregate_schema ORDER BY version").all(decodingColumn: "version", as: Int.self)
                #expect(!rows.isEmpty && rows == Array(1...rows.count), "each migration once, in order: \(rows)")
            } catch {
                failure = error
            }
        }
        for database in opened { await database.shutdown() }
        if let (admin, name) = dropAfterwards {
            do {
                try await admin.sql.raw("DROP DATABASE \(unsafeRaw: name)").run()
            } catch {
                failure = failure ?? error
            }
            await admin.shutdown()
        }
        if let failure { throw failure }
    }
}

@Suite("Graceful shutdown")
struct ShutdownTests {
    @Test("SIGTERM: the server stops and every decision it made is in the audit log")
    func sigterm() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let database = dir.appendingPathComponent("shutdown.sqlite").path
        let demo = try DemoProcess(["--patients", "2", "--database", database])
        let text = demo.output
        let me = try #require(text.split(separator: "\n").first { $0.hasPrefix("curl ") && $0.contains("/marketplace/me") })
        let base = String(me.split(separator: " ")[2]).components(separatedBy: "/v3/")[0]
        let key = String(me.split(separator: "\"")[1].dropFirst("Authorization: Bearer ".count))
        let organization = String(me.split(separator: "\"")[3].dropFirst("X-Organization-Id: ".count))
        // A burst of requests, then SIGTERM right away: the writer flushes on the way out.
        let count = 300
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<count {
                group.addTask {
                    var request = URLRequest(url: URL(string: base + "/v3/marketplace/me")!)
                    request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
                    request.setValue(organization, forHTTPHeaderField: "X-Organization-Id")
                    _ = try await URLSession.shared.data(for: request)
                }
            }
            try await group.waitForAll()
        }
        demo.stop()
        #expect(demo.process.terminationReason == .exit)
        // Reopen the database: every answered request left its decision.
        let logger = quietLogger
        let reopened = try await Database.open(.sqlite(path: database), logger: logger)
        let recorded = try await AuditStore(database: reopened).count(route: "GET /v3/marketplace/me")
        await reopened.shutdown()
        #expect(recorded == count)
    }
}
